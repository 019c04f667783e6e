# Copyright: fleetscale.split contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Node filters for replacements: thin wrappers over module_utils/topology.py.

Documentation of each filter lives in its sidecar YAML file (next_nodes.yml, node_addresses.yml).
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.fleetscale.split.plugins.module_utils import topology
from ansible_collections.fleetscale.split.plugins.module_utils.errors import PlanError, short_repr


def next_nodes(fleet_plan, tier, count=1, taken=None, shard=None):
    """The next new nodes of a tier, named and addressed by the plan's own rule."""
    try:
        return topology.next_nodes(fleet_plan, tier, count, taken or (), shard)
    except PlanError as ex:
        raise AnsibleFilterError(ex.describe(source="fleetscale.split.next_nodes")) from ex


def node_addresses(hosts, hostvars, what="hosts"):
    """The address of each host: its fleet_address, else the default IPv4 address its facts give.

    A host with neither is refused by name: a list of allowed or peer addresses with a hole in it
    would shut that host out (or let nobody in) without a word.
    """
    if isinstance(hosts, str) or not isinstance(hosts, (list, tuple)):
        raise AnsibleFilterError("fleetscale.split.node_addresses: field '_input': must be a list of inventory hosts "
                                 "(got %s)" % short_repr(hosts))
    addresses = []
    for host in hosts:
        if host not in hostvars:
            raise AnsibleFilterError("fleetscale.split.node_addresses: %s: %s is not an inventory host"
                                     % (what, short_repr(host)))
        found = hostvars[host]
        address = found.get("fleet_address") or (found.get("ansible_default_ipv4") or {}).get("address")
        if not address:
            raise AnsibleFilterError("fleetscale.split.node_addresses: %s: host %s has no fleet_address and no "
                                     "gathered default IPv4 address" % (what, host))
        addresses.append(str(address))
    return addresses


class FilterModule:
    """fleetscale.split node filters."""

    def filters(self):
        return {"next_nodes": next_nodes, "node_addresses": node_addresses}
