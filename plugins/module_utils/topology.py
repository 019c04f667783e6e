# Copyright: fleetscale.split contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hosts of a plan: names and addresses for every planned node.

Names come from a pattern and the node's index in its tier, and addresses from the
tier's first address plus that index, so growing a plan only appends hosts: no
existing host is renamed or re-addressed. A tier may instead list its hosts
explicitly (an existing fleet); then the list is the tier and must hold at least the
planned number of nodes.
"""

from __future__ import annotations

import ipaddress
import re

from ansible_collections.fleetscale.split.plugins.module_utils.errors import PlanError
from ansible_collections.fleetscale.split.plugins.module_utils.plan import TIER_NAMES

DEFAULT_NAMING = {
    "proxy": "proxy-{index:02d}",
    "web_agent": "web-agent-{index:02d}",
    "web_user": "web-user-{index:02d}",
    "app": "app-{index:02d}",
    "database": "db-{index:02d}",
}
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOSTNAME_RE = re.compile(r"^%s(\.%s)*$" % (_LABEL, _LABEL))
HOST_KEYS = ("name", "address", "shard")
NETWORK_KEYS = ("subnet", "first_address")


def _check_naming(naming):
    naming = naming or {}
    if not isinstance(naming, dict):
        raise PlanError("naming", naming, "must map tiers to name patterns")
    patterns = dict(DEFAULT_NAMING)
    for tier, pattern in naming.items():
        field = "naming.%s" % tier
        if tier not in DEFAULT_NAMING:
            raise PlanError(field, pattern, "unknown tier; tiers: %s" % ", ".join(TIER_NAMES))
        if not isinstance(pattern, str) or "{index" not in pattern:
            raise PlanError(field, pattern, "must be a string containing {index} (e.g. 'web-{index:02d}')")
        try:
            sample = pattern.format(index=1)
        except (KeyError, IndexError, ValueError) as ex:
            raise PlanError(field, pattern, "is not a valid pattern: %s" % ex) from ex
        if not HOSTNAME_RE.match(sample):
            raise PlanError(field, pattern, "gives %r, not a valid host name" % sample)
        patterns[tier] = pattern
    return patterns


def _check_network(network):
    if network is None:
        return None, {}
    if not isinstance(network, dict):
        raise PlanError("network", network, "must be a mapping with subnet and first_address")
    for key in network:
        if key not in NETWORK_KEYS:
            raise PlanError("network.%s" % key, network[key], "unknown key; allowed: %s" % ", ".join(NETWORK_KEYS))
    try:
        subnet = ipaddress.ip_network(str(network.get("subnet")), strict=True)
    except ValueError as ex:
        raise PlanError("network.subnet", network.get("subnet"), "is not a network in CIDR form: %s" % ex) from ex
    firsts = network.get("first_address") or {}
    if not isinstance(firsts, dict):
        raise PlanError("network.first_address", firsts, "must map tiers to the tier's first address")
    starts = {}
    for tier, address in firsts.items():
        field = "network.first_address.%s" % tier
        if tier not in DEFAULT_NAMING:
            raise PlanError(field, address, "unknown tier; tiers: %s" % ", ".join(TIER_NAMES))
        try:
            start = ipaddress.ip_address(str(address))
        except ValueError as ex:
            raise PlanError(field, address, "is not an IP address") from ex
        if start not in subnet:
            raise PlanError(field, address, "is outside network.subnet %s" % subnet)
        starts[tier] = start
    return subnet, starts


def _check_explicit(hosts):
    hosts = hosts or {}
    if not isinstance(hosts, dict):
        raise PlanError("hosts", hosts, "must map tiers to lists of hosts")
    result = {}
    for tier, entries in hosts.items():
        field = "hosts.%s" % tier
        if tier not in DEFAULT_NAMING:
            raise PlanError(field, entries, "unknown tier; tiers: %s" % ", ".join(TIER_NAMES))
        if not isinstance(entries, list) or not entries:
            raise PlanError(field, entries, "must be a non-empty list of {name, address}")
        checked = []
        for position, listed in enumerate(entries):
            where = "%s[%d]" % (field, position)
            entry = {"name": listed} if isinstance(listed, str) else listed
            if not isinstance(entry, dict):
                raise PlanError(where, entry, "must be a host name or a mapping with name and address")
            for key in entry:
                if key not in HOST_KEYS or (key == "shard" and tier != "database"):
                    raise PlanError("%s.%s" % (where, key), entry[key], "unknown key")
            name = entry.get("name")
            if not isinstance(name, str) or not HOSTNAME_RE.match(name):
                raise PlanError(where + ".name", name, "must be a valid host name")
            address = entry.get("address")
            if address is not None:
                try:
                    address = str(ipaddress.ip_address(str(address)))
                except ValueError as ex:
                    raise PlanError(where + ".address", address, "is not an IP address") from ex
            shard = entry.get("shard")
            if tier == "database":
                shard = position + 1 if shard is None else shard
                if isinstance(shard, bool) or not isinstance(shard, int) or shard < 1:
                    raise PlanError(where + ".shard", shard, "must be a shard number >= 1")
            checked.append({"name": name, "address": address, "shard": shard, "field": where})
        result[tier] = checked
    return result


def _generated(tier, count, pattern, start, subnet):
    hosts = []
    for index in range(1, count + 1):
        address = None
        if start is not None:
            candidate = start + (index - 1)
            if candidate not in subnet:
                raise PlanError("network.first_address.%s" % tier, str(start),
                                "the %s tier needs %d addresses; %s is past network.subnet %s"
                                % (tier, count, candidate, subnet))
            address = str(candidate)
        hosts.append({"name": pattern.format(index=index), "address": address, "index": index,
                      "field": "naming.%s" % tier})
    return hosts


def build_topology(plan, naming=None, network=None, hosts=None):
    """Return {tier: [{name, address, index, ...}]} for every tier of the plan."""
    patterns = _check_naming(naming)
    subnet, starts = _check_network(network)
    explicit = _check_explicit(hosts)
    planned = {name: plan["tiers"][name]["nodes"] for name in TIER_NAMES}
    redundancy = plan["model"]["redundancy"]
    shard_numbers = [s["shard"] for s in plan["shards"]]
    topology = {}
    for tier in TIER_NAMES:
        if tier in explicit:
            listed = explicit[tier]
            if tier == "database":
                by_shard = {}
                for entry in listed:
                    if entry["shard"] in by_shard:
                        raise PlanError(entry["field"] + ".shard", entry["shard"],
                                        "shard %d already has host %s" % (entry["shard"], by_shard[entry["shard"]]))
                    by_shard[entry["shard"]] = entry["name"]
                missing = [n for n in shard_numbers if n not in by_shard]
                if missing:
                    raise PlanError("hosts.database", len(listed),
                                    "the plan has shards %s; no host is listed for shard(s) %s"
                                    % (shard_numbers, missing))
            elif len(listed) < planned[tier]:
                need = "N+1 " if redundancy and tier != "app" else ""
                raise PlanError("hosts.%s" % tier, len(listed),
                                "the plan needs %s%d %s hosts for %d agents; %d listed"
                                % (need, planned[tier], tier, plan["agents"], len(listed)))
            topology[tier] = [dict(entry, index=position + 1) for position, entry in enumerate(listed)]
        elif tier == "database":
            start = starts.get(tier)
            topology[tier] = []
            for number in shard_numbers:
                host = _generated(tier, number, patterns[tier], start, subnet or ipaddress.ip_network("::/0"))[-1]
                host["shard"] = number
                topology[tier].append(host)
        else:
            topology[tier] = _generated(tier, planned[tier], patterns[tier], starts.get(tier),
                                        subnet or ipaddress.ip_network("::/0"))
    _check_unique(topology)
    return topology


def _check_unique(topology):
    names = {}
    addresses = {}
    for tier in TIER_NAMES:
        for host in topology[tier]:
            if host["name"] in names:
                raise PlanError(host["field"], host["name"], "two hosts named %s (also in tier %s)"
                                % (host["name"], names[host["name"]]))
            names[host["name"]] = tier
            address = host.get("address")
            if address is None:
                continue
            if address in addresses:
                raise PlanError(host["field"], address, "two hosts with address %s: %s and %s"
                                % (address, addresses[address], host["name"]))
            addresses[address] = host["name"]
