# Copyright: fleetscale.split contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hosts of a plan: names and addresses for every planned node.

Names come from a pattern and the node's index in its tier, and addresses from the
tier's first address plus that index, so growing a plan only appends hosts: no
existing host is renamed or re-addressed. A tier may instead list its hosts
explicitly (an existing fleet); then the list is the tier and must hold at least the
planned number of nodes.

Database nodes are numbered within their shard: index 1 is the shard's planned primary,
the next ones its replicas, so adding a shard or a replica only appends hosts too. Each
shard owns a block of SHARD_BLOCK addresses from the tier's first address on: the block's
first address is the shard's writer address (held by whichever node is the writable
primary), node N of the shard takes the block's address N.

A generated tier may also retire indices: a node replaced by a rolling replacement
keeps its index out of use for good, so its successor takes the next free index (a
new name and address) and the plan's later runs see the replacement. The database
tier retires indices per shard ({shard: [indices]}), as its nodes are numbered.
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
    "database": "db-{shard:02d}-{index:02d}",
}
# Fields every pattern of a tier must contain: a database node is named within its shard.
PATTERN_FIELDS = {"database": ("shard", "index")}
SHARD_BLOCK = 32
# Node N of a shard takes address N of the block (address 0 is the writer address).
MAX_SHARD_INDEX = SHARD_BLOCK - 1
DATABASE_ROLES = ("primary", "replica")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# Matched whole (fullmatch): with re.match, '$' would also accept a name ending in a newline.
# A trailing dot (a fully qualified 'web1.') is refused, so 'web1.' and 'web1' cannot be two hosts.
HOSTNAME_RE = re.compile(r"%s(\.%s)*" % (_LABEL, _LABEL))
HOST_KEYS = ("name", "address", "shard", "role", "replica_of")
DATABASE_HOST_KEYS = ("shard", "role", "replica_of")
# Tiers whose nodes are replaced by adding a new node and retiring the old one (a
# database node joins as a replica; a primary hands over before it leaves).
REPLACEABLE_TIERS = ("proxy", "web_agent", "web_user", "app", "database")
# The highest node index of a generated tier that retired and adding accept: no node is ever given a higher one.
MAX_INDEX = 99999
NETWORK_KEYS = ("subnet", "first_address", "writer_addresses")
# IPv4 addresses written as IPv6 (::ffff:10.0.0.5): the same host as 10.0.0.5 under another spelling.
_IPV4_MAPPED = ipaddress.ip_network("::ffff:0:0/96")


def _host_name(field, pattern, what, **values):
    """The host name a naming pattern gives for these values; refused when it is not a valid host name.

    Checked for every node, not only for a sample: a pattern valid for node 1 can give a label
    longer than 63 characters for a larger index.
    """
    try:
        name = pattern.format(**values)
    except (KeyError, IndexError, ValueError, TypeError, AttributeError) as ex:
        raise PlanError(field, pattern, "is not a valid pattern: %s" % ex) from ex
    if not HOSTNAME_RE.fullmatch(name):
        raise PlanError(field, pattern, "gives %r for %s, not a valid host name" % (name, what))
    return name


def _name_key(name):
    """What two host names are compared by: DNS names are case-insensitive, so Web1 and web1 are one host."""
    return name.lower()


def _parse_address(field, value):
    """An IP address in its one normal spelling; an IPv4-mapped IPv6 address is refused for its IPv4 form."""
    try:
        address = ipaddress.ip_address(str(value))
    except ValueError as ex:
        raise PlanError(field, value, "is not an IP address") from ex
    if address.version == 6 and address.ipv4_mapped is not None:
        raise PlanError(field, value, "is an IPv4-mapped IPv6 address: use the IPv4 address %s" % address.ipv4_mapped)
    return address


def _unusable(address, subnet):
    """Why no host may have this address in the subnet, or None when one may."""
    if address not in subnet:
        return "outside network.subnet %s" % subnet
    # /31 and /32 have no network or broadcast address (RFC 3021); IPv6 has no broadcast.
    if subnet.version == 4 and subnet.prefixlen < 31:
        if address == subnet.network_address:
            return "the network address of network.subnet %s" % subnet
        if address == subnet.broadcast_address:
            return "the broadcast address of network.subnet %s" % subnet
    return None


def _shard_key(shard):
    """A shard number written as a mapping key: YAML and JSON give '1' where a play gave 1."""
    # ASCII digits only: '²'.isdigit() is true, but int('²') fails.
    return int(shard) if isinstance(shard, str) and shard.isascii() and shard.isdigit() else shard


def _check_naming(naming):
    naming = naming or {}
    if not isinstance(naming, dict):
        raise PlanError("naming", naming, "must map tiers to name patterns")
    patterns = dict(DEFAULT_NAMING)
    for tier, pattern in naming.items():
        field = "naming.%s" % tier
        if tier not in DEFAULT_NAMING:
            raise PlanError(field, pattern, "unknown tier; tiers: %s" % ", ".join(TIER_NAMES))
        needed = PATTERN_FIELDS.get(tier, ("index",))
        if not isinstance(pattern, str) or not all("{%s" % name in pattern for name in needed):
            example = DEFAULT_NAMING[tier]
            raise PlanError(field, pattern, "must be a string containing %s (e.g. %r)"
                            % (" and ".join("{%s}" % name for name in needed), example))
        _host_name(field, pattern, "node 1", **{name: 1 for name in needed})
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
    if subnet.version == 6 and subnet.subnet_of(_IPV4_MAPPED):
        raise PlanError("network.subnet", network.get("subnet"),
                        "is IPv4-mapped IPv6 (::ffff:0:0/96): use the IPv4 network")
    firsts = network.get("first_address") or {}
    if not isinstance(firsts, dict):
        raise PlanError("network.first_address", firsts, "must map tiers to the tier's first address")
    starts = {}
    for tier, address in firsts.items():
        field = "network.first_address.%s" % tier
        if tier not in DEFAULT_NAMING:
            raise PlanError(field, address, "unknown tier; tiers: %s" % ", ".join(TIER_NAMES))
        start = _parse_address(field, address)
        problem = _unusable(start, subnet)
        if problem:
            raise PlanError(field, address, "is %s" % problem)
        starts[tier] = start
    return subnet, starts


def _check_writer_addresses(network, shard_numbers, explicit):
    """{shard: address} of network.writer_addresses: the writer address of each shard of explicit hosts."""
    listed = (network or {}).get("writer_addresses") or {}
    if not listed:
        return {}
    field = "network.writer_addresses"
    if not isinstance(listed, dict):
        raise PlanError(field, listed, "must map shard numbers to addresses")
    if not explicit:
        raise PlanError(field, sorted(listed), "only for database hosts listed explicitly (hosts.database); "
                        "generated shards take the first address of their block")
    subnet = ipaddress.ip_network(str(network["subnet"]))
    result = {}
    for shard, address in listed.items():
        number = _shard_key(shard)
        if number not in shard_numbers:
            raise PlanError(field, shard, "the plan has shards %s" % shard_numbers)
        parsed = _parse_address("%s.%s" % (field, number), address)
        problem = _unusable(parsed, subnet)
        if problem:
            raise PlanError("%s.%s" % (field, number), address, "is %s" % problem)
        result[number] = str(parsed)
    return result


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
                if key not in HOST_KEYS or (key in DATABASE_HOST_KEYS and tier != "database"):
                    raise PlanError("%s.%s" % (where, key), entry[key], "unknown key")
            name = entry.get("name")
            if not isinstance(name, str) or not HOSTNAME_RE.fullmatch(name):
                raise PlanError(where + ".name", name, "must be a valid host name (letters, digits, '-' and inner "
                                "dots; no trailing dot)")
            address = entry.get("address")
            if address is not None:
                # The normal spelling: 2001:DB8:0::1 and 2001:db8::1 are compared as the one address they are.
                address = str(_parse_address(where + ".address", address))
            shard = entry.get("shard")
            role = entry.get("role")
            if tier == "database":
                shard = position + 1 if shard is None else shard
                if isinstance(shard, bool) or not isinstance(shard, int) or shard < 1:
                    raise PlanError(where + ".shard", shard, "must be a shard number >= 1")
                if role is not None and role not in DATABASE_ROLES:
                    raise PlanError(where + ".role", role, "must be one of %s" % ", ".join(DATABASE_ROLES))
                replica_of = entry.get("replica_of")
                if replica_of is not None and (role != "replica" or not isinstance(replica_of, str)):
                    raise PlanError(where + ".replica_of", replica_of,
                                    "only a host with role: replica names its primary (a host name)")
            checked.append({"name": name, "address": address, "shard": shard, "field": where, "role": role,
                            "replica_of": entry.get("replica_of")})
        result[tier] = checked
    return result


def _check_indices(indices, field, highest=MAX_INDEX):
    if not isinstance(indices, list):
        raise PlanError(field, indices, "must be a list of node indices")
    for position, index in enumerate(indices):
        if isinstance(index, bool) or not isinstance(index, int) or not 1 <= index <= highest:
            raise PlanError("%s[%d]" % (field, position), index, "must be a node index from 1 to %d" % highest)
    if len(set(indices)) != len(indices):
        raise PlanError(field, indices, "lists an index twice")
    return sorted(indices)


def _check_shard_indices(value, field):
    """{shard: [indices]} of the database tier, whose nodes are numbered within their shard."""
    if not isinstance(value, dict):
        raise PlanError(field, value, "database nodes are numbered per shard: map shard numbers to lists of node "
                        "indices (for example {1: [1]})")
    result = {}
    for shard, indices in value.items():
        number = _shard_key(shard)
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise PlanError(field, shard, "must be a shard number (1 or more)")
        if number in result:
            raise PlanError(field, shard, "names shard %d twice" % number)
        result[number] = _check_indices(indices, "%s.%d" % (field, number), MAX_SHARD_INDEX)
    return result


def _check_retired(retired, name="retired"):
    retired = retired or {}
    if not isinstance(retired, dict):
        raise PlanError(name, retired, "must be a mapping of tiers to lists of node indices")
    result = {}
    for tier, indices in retired.items():
        field = "%s.%s" % (name, tier)
        if tier not in REPLACEABLE_TIERS:
            raise PlanError(field, indices, "only nodes of %s are retired by replacement"
                            % ", ".join(REPLACEABLE_TIERS))
        if tier == "database":
            result[tier] = _check_shard_indices(indices, field)
        else:
            result[tier] = _check_indices(indices, field)
    return result


def merge_retired(first, second, names=("retired", "retired")):
    """Both records of retired indices in one (the spec's and a replacements file's), each checked."""
    merged = _check_retired(first, names[0])
    for tier, indices in _check_retired(second, names[1]).items():
        if tier == "database":
            shards = merged.setdefault(tier, {})
            for number, listed in indices.items():
                shards[number] = sorted(set(shards.get(number, [])) | set(listed))
        else:
            merged[tier] = sorted(set(merged.get(tier, [])) | set(indices))
    return merged


def _address(tier, start, offset, subnet, what):
    """The tier's first address plus offset; refused where no host may have it (see _unusable)."""
    if start is None:
        return None
    try:
        candidate = start + offset
    except ipaddress.AddressValueError as ex:
        raise PlanError("network.first_address.%s" % tier, str(start), "the %s tier's %s would get an address "
                        "past the end of the address space" % (tier, what)) from ex
    problem = _unusable(candidate, subnet)
    if problem:
        raise PlanError("network.first_address.%s" % tier, str(start),
                        "the %s tier's %s would get %s, %s" % (tier, what, candidate, problem))
    return str(candidate)


def node_identity(tier, index, pattern, start, subnet):
    """Name and address of the node with this index in its tier: the one formula for both."""
    field = "naming.%s" % tier
    if not 1 <= index <= MAX_INDEX:
        # retired and adding refuse a higher index, so such a node could never be replaced or retired.
        raise PlanError(field, index, "the %s tier has no node index left: %d is outside 1-%d, the indices "
                        "retired and adding accept" % (tier, index, MAX_INDEX))
    name = _host_name(field, pattern, "node %d" % index, index=index)
    address = _address(tier, start, index - 1, subnet, "node %d" % index)
    return {"name": name, "address": address, "index": index, "field": field}


def database_identity(shard, index, pattern, start, subnet):
    """Name and address of node `index` of a shard (index 0 is the shard's writer address)."""
    if not 1 <= index <= MAX_SHARD_INDEX:
        raise PlanError("naming.database", index, "shard %d's node index %d is outside 1-%d (a shard's block "
                        "holds %d addresses)" % (shard, index, MAX_SHARD_INDEX, SHARD_BLOCK))
    what = "shard %d node %d" % (shard, index)
    name = _host_name("naming.database", pattern, what, shard=shard, index=index)
    address = _address("database", start, (shard - 1) * SHARD_BLOCK + index, subnet, what)
    return {"name": name, "address": address, "index": index, "shard": shard, "field": "naming.database"}


def writer_address(shard, start, subnet):
    """The floating address of a shard's writable primary: the first of the shard's block."""
    return _address("database", start, (shard - 1) * SHARD_BLOCK, subnet, "shard %d writer address" % shard)


def _explicit_database(listed, shard_numbers, replicas):
    """Explicit database hosts by shard, each with its role; refuses shards without exactly one primary."""
    by_shard = {}
    for entry in listed:
        by_shard.setdefault(entry["shard"], []).append(entry)
    missing = [n for n in shard_numbers if n not in by_shard]
    if missing:
        raise PlanError("hosts.database", len(listed), "the plan has shards %s; no host is listed for shard(s) %s"
                        % (shard_numbers, missing))
    hosts = []
    for number in sorted(by_shard):
        members = by_shard[number]
        if len(members) == 1 and members[0]["role"] is None:
            members[0]["role"] = "primary"
        primaries = [m for m in members if m["role"] == "primary"]
        if len(primaries) > 1:
            raise PlanError(primaries[1]["field"] + ".role", "primary", "shard %d already has primary %s"
                            % (number, primaries[0]["name"]))
        if not primaries:
            raise PlanError("hosts.database", [m["name"] for m in members],
                            "shard %d has no primary: give one of its hosts role: primary" % number)
        if len(members) < 1 + replicas:
            raise PlanError("hosts.database", [m["name"] for m in members],
                            "the plan needs a primary and %d replica(s) (model.database_replicas) per shard; "
                            "shard %d lists %d host(s)" % (replicas, number, len(members)))
        primary = primaries[0]["name"]
        for position, member in enumerate([primaries[0]] + [m for m in members if m is not primaries[0]]):
            if member["role"] is None:
                member["role"] = "replica"
            if member["replica_of"] is not None and member["replica_of"] != primary:
                raise PlanError(member["field"] + ".replica_of", member["replica_of"],
                                "shard %d's primary is %s: a replica follows the primary of its own shard"
                                % (number, primary))
            hosts.append(dict(member, index=position + 1, database_role=member["role"]))
    return hosts


def _indices(count, retired=(), adding=()):
    """The first `count` indices not retired, then the new nodes of a replacement in progress."""
    # Sets: retired and adding may list up to MAX_INDEX indices, and list lookups made that quadratic.
    retired = set(retired)
    indices = []
    index = 0
    while len(indices) < count:
        index += 1
        if index not in retired:
            indices.append(index)
    planned = set(indices)
    return indices + [i for i in adding if i not in planned]


def _generated(tier, count, pattern, start, subnet, retired=(), adding=()):
    return [node_identity(tier, i, pattern, start, subnet) for i in _indices(count, retired, adding)]


def build_topology(plan, naming=None, network=None, hosts=None, retired=None, adding=None):
    """Return {tier: [{name, address, index, ...}]} for every tier of the plan.

    `adding` lists indices of new nodes a replacement has brought up and not yet swapped in: they
    join their tier on top of the planned count until the old node they replace is retired.
    """
    patterns = _check_naming(naming)
    subnet, starts = _check_network(network)
    explicit = _check_explicit(hosts)
    retired = _check_retired(retired)
    adding = _check_retired(adding, "adding")
    for name, record in (("retired", retired), ("adding", adding)):
        for tier in record:
            if tier in explicit:
                raise PlanError("%s.%s" % (name, tier), record[tier], "the tier lists its hosts explicitly "
                                "(hosts.%s): a replacement edits that list instead" % tier)
    for tier, indices in adding.items():
        if tier == "database":
            for number, listed in indices.items():
                both = sorted(set(listed) & set(retired.get(tier, {}).get(number, [])))
                if both:
                    raise PlanError("adding.database.%d" % number, listed, "node(s) %s are also retired" % both)
            continue
        both = sorted(set(indices) & set(retired.get(tier, [])))
        if both:
            raise PlanError("adding.%s" % tier, indices, "node(s) %s are also retired" % both)
    planned = {name: plan["tiers"][name]["nodes"] for name in TIER_NAMES}
    redundancy = plan["model"]["redundancy"]
    shard_numbers = [s["shard"] for s in plan["shards"]]
    replicas = plan["tiers"]["database"]["replicas"]
    topology = {}
    writers = {}
    for tier in TIER_NAMES:
        if tier == "database" and tier in explicit:
            topology[tier] = _explicit_database(explicit[tier], shard_numbers, replicas)
            # A shard without a writer address (network.writer_addresses) is reached at its primary's own address.
            given = _check_writer_addresses(network, shard_numbers, True)
            writers.update({number: given.get(number) for number in shard_numbers})
        elif tier in explicit:
            listed = explicit[tier]
            if len(listed) < planned[tier]:
                need = "N+1 " if redundancy and tier != "app" else ""
                raise PlanError("hosts.%s" % tier, len(listed),
                                "the plan needs %s%d %s hosts for %d agents; %d listed"
                                % (need, planned[tier], tier, plan["agents"], len(listed)))
            topology[tier] = [dict(entry, index=position + 1) for position, entry in enumerate(listed)]
        elif tier == "database":
            _check_writer_addresses(network, shard_numbers, False)
            start = starts.get(tier)
            everywhere = subnet or ipaddress.ip_network("::/0")
            topology[tier] = []
            for number in shard_numbers:
                # A lone node needs no floating address: its clients use its own.
                writers[number] = writer_address(number, start, everywhere) if replicas else None
                # The first node in service is the planned primary (the servers say who the primary is).
                indices = _indices(1 + replicas, retired.get(tier, {}).get(number, ()),
                                   adding.get(tier, {}).get(number, ()))
                for position, index in enumerate(indices):
                    host = database_identity(number, index, patterns[tier], start, everywhere)
                    host["database_role"] = "primary" if position == 0 else "replica"
                    topology[tier].append(host)
        else:
            topology[tier] = _generated(tier, planned[tier], patterns[tier], starts.get(tier),
                                        subnet or ipaddress.ip_network("::/0"), retired.get(tier, ()),
                                        adding.get(tier, ()))
    _check_unique(topology, writers)
    topology["database_writers"] = writers
    return topology


def layout(naming=None, network=None, hosts=None, retired=None, adding=None):
    """What a later replacement needs to name and address new nodes the same way (kept in the plan)."""
    patterns = _check_naming(naming)
    subnet, starts = _check_network(network)
    return {
        "naming": patterns,
        "subnet": str(subnet) if subnet is not None else None,
        "first_address": {tier: str(start) for tier, start in sorted(starts.items())},
        "explicit": sorted(_check_explicit(hosts)),
        "retired": _check_retired(retired),
        "adding": _check_retired(adding, "adding"),
    }


def next_nodes(plan, tier, count=1, taken=(), shard=None):
    """The next `count` new nodes of a tier: indices above every index in use, retired or already taken.

    `plan` is a fleet plan with its `layout` and `hosts`; `taken` lists indices (or host names) already
    given to new nodes that the plan does not know yet (the current batch of a replacement). Database
    nodes are numbered within their shard: `shard` names it, and `taken` holds that shard's indices.
    """
    if tier not in REPLACEABLE_TIERS:
        raise PlanError("tier", tier, "new nodes are made for %s only" % ", ".join(REPLACEABLE_TIERS))
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 100:
        raise PlanError("count", count, "must be a whole number from 1 to 100")
    if not isinstance(plan, dict) or not isinstance(plan.get("layout"), dict) or "hosts" not in plan:
        raise PlanError("plan", type(plan).__name__, "must be a fleet plan with layout and hosts "
                        "(the fleet_plan of the fleetscale.split.fleet inventory plugin)")
    info = plan["layout"]
    if tier in info["explicit"]:
        raise PlanError("tier", tier, "the tier lists its hosts explicitly: new nodes come from a spare pool "
                        "(the static provider), not from the naming pattern")
    pattern = info["naming"][tier]
    subnet = ipaddress.ip_network(info["subnet"]) if info["subnet"] else ipaddress.ip_network("::/0")
    start = ipaddress.ip_address(info["first_address"][tier]) if tier in info["first_address"] else None
    retired = _check_retired(info["retired"], "layout.retired")
    if tier == "database":
        return _next_database_nodes(plan, pattern, start, subnet, retired.get(tier, {}), count, taken, shard)
    index_of = _index_parser(pattern, tier)
    used = set(retired.get(tier, []))
    used.update(index_of(name) for name in plan["hosts"].get(tier, []) + list(taken or ()))
    first = max(used, default=0) + 1
    # node_identity refuses an index past MAX_INDEX: the tier has none left to give.
    return [dict(node_identity(tier, index, pattern, start, subnet), tier=tier)
            for index in range(first, first + count)]


def _next_database_nodes(plan, pattern, start, subnet, retired, count, taken, shard):
    shards = {entry.get("shard"): entry for entry in plan.get("shards") or [] if isinstance(entry, dict)}
    # True == 1 as a key: a boolean would pass for shard 1.
    if isinstance(shard, bool) or not isinstance(shard, int) or shard not in shards:
        raise PlanError("shard", shard, "a new database node joins one shard of the plan: %s"
                        % sorted(number for number in shards if number is not None))
    # Names of the shard's nodes by index, from the one naming rule (a shard holds MAX_SHARD_INDEX nodes).
    names = {pattern.format(shard=shard, index=index): index for index in range(1, MAX_SHARD_INDEX + 1)}
    members = shards[shard].get("members") or []
    strays = [name for name in members if name not in names]
    if strays:
        raise PlanError("shards[%d].members" % shard, strays, "not named by the pattern %r" % pattern)
    index_of = _index_reader(names.get, MAX_SHARD_INDEX, "shard %d's nodes (pattern %r)" % (shard, pattern))
    used = set(retired.get(shard, [])) | {names[name] for name in members}
    used.update(index_of(item) for item in taken or ())
    first = max(used, default=0) + 1
    # database_identity refuses an index past the shard's block: the shard has none left to give.
    return [dict(database_identity(shard, index, pattern, start, subnet), tier="database")
            for index in range(first, first + count)]


def _index_parser(pattern, tier):
    """name (or index) -> index, the inverse of the naming pattern."""
    head, _sep, rest = pattern.partition("{index")
    regex = re.compile("%s([0-9]+)%s" % (re.escape(head), re.escape(rest.partition("}")[2])))

    def parse(name):
        match = regex.fullmatch(name)
        return int(match.group(1)) if match else None

    return _index_reader(parse, MAX_INDEX, "the %s tier (pattern %r)" % (tier, pattern))


def _index_reader(parse, highest, what):
    """item -> index: an index from 1 to highest as it is, a host name through parse (None: not one of `what`)."""

    def index_of(item):
        if isinstance(item, int) and not isinstance(item, bool):
            index = item
        else:
            index = parse(item) if isinstance(item, str) else None
        if index is None or not 1 <= index <= highest:
            raise PlanError("taken", item, "is neither a host name of %s nor a node index from 1 to %d"
                            % (what, highest))
        return index

    return index_of


def _position(host):
    """Where a host comes from: its entry in hosts.<tier>, or its tier's naming rule and its index."""
    if not host["field"].startswith("naming."):
        return host["field"]
    if host.get("shard") is not None:
        return "%s shard %d node %d" % (host["field"], host["shard"], host["index"])
    return "%s node %d" % (host["field"], host["index"])


def _check_unique(topology, writers):
    """Refuse two hosts with one name (compared without regard to case) or one address (normal spelling)."""
    names = {}
    addresses = {address: "shard %d's writer address" % number for number, address in writers.items() if address}
    for tier in TIER_NAMES:
        for host in topology[tier]:
            key = _name_key(host["name"])
            if key in names:
                first = names[key]
                raise PlanError(host["field"], host["name"], "two hosts named %s: %s is %s, %s is %s (host names "
                                "are compared without regard to case)" % (host["name"], _position(first),
                                                                          first["name"], _position(host),
                                                                          host["name"]))
            names[key] = host
            address = host.get("address")
            if address is None:
                continue
            if address in addresses:
                raise PlanError(host["field"], address, "two hosts with address %s: %s and %s (%s)"
                                % (address, addresses[address], host["name"], _position(host)))
            addresses[address] = "%s (%s)" % (host["name"], _position(host))
