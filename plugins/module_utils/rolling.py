# Copyright: fleetscale.split contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rolling replacement's plan and its record, as data.

plan_batches() turns the nodes to replace into batches of (old node, new node) pairs: web nodes
`surge` at a time, user tier first; proxies, app and database nodes one at a time whatever the surge (a
proxy's traffic is kept by the others, the singleton hands over from one holder to one, a new database
node is seeded and catches up before an old one goes). A shard's primary is replaced last, after a
handover: its batch runs once the switchover to a node that stays made it a replica. New nodes are named
by the plan's own rule (topology.next_nodes) with the lab provider, or taken from a pool of spare hosts
with the static one.

play_hosts() lays the batches out as the hosts of the batch plays with `serial`: per batch a controller
step host (a local alias that runs the batch's steps on the controller) followed by the batch's new
nodes, and the size of each batch, so that each batch of a play is one batch of the replacement. The
batches that replace a primary form a second batch play, after the handover play.

record_step() is the replacements record after one step of a batch (adding, retire, drop): the file
playbooks/rolling_replace.yml writes and the fleetscale.split.fleet inventory plugin reads
(`retired` and `adding` node indices of generated tiers, per shard for the database tier, `hosts` of
explicit tiers).
"""

from __future__ import annotations

from ansible_collections.fleetscale.split.plugins.module_utils import topology
from ansible_collections.fleetscale.split.plugins.module_utils.errors import PlanError

# Tiers replaced add-then-remove, in the order their batches run.
REPLACEABLE_TIERS = ("web_user", "web_agent", "app", "proxy", "database")
# Tiers whose batches hold `surge` nodes; the others go one node at a time.
SURGE_TIERS = ("web_user", "web_agent")
PROVIDERS = ("lab", "static")
STEPS = ("adding", "retire", "drop")
# The batch play's controller step hosts are named CONTROLLER_PREFIX + the batch's number.
CONTROLLER_PREFIX = "rolling-batch-"
# The group of every host of the batch play, that of the batch play after the handover (the batches
# of shard primaries), and the group of the new nodes of each kind of tier (for the steps that
# prepare the databases and proxies for them before the batches start).
BATCH_GROUP = "rolling_batches"
HANDED_OVER_GROUP = "rolling_batches_handed_over"
PLANNED_GROUPS = {"web_user": "rolling_planned_web", "web_agent": "rolling_planned_web",
                  "app": "rolling_planned_app", "proxy": "rolling_planned_proxy",
                  "database": "rolling_planned_database"}


def expand_targets(targets, groups, skip=()):
    """The hosts named by rolling_targets (groups or hosts), in order, each once, `skip` left out."""
    listed = [targets] if isinstance(targets, str) else targets
    if not isinstance(listed, (list, tuple)) or not listed or not all(isinstance(t, str) for t in listed):
        raise PlanError("rolling_targets", targets, "must name one or more groups or hosts of the inventory")
    known = set(groups.get("all", ()))
    unknown = [target for target in listed if target not in groups and target not in known]
    if unknown:
        raise PlanError("rolling_targets", targets, "unknown: %s" % ", ".join(unknown))
    hosts = []
    for target in listed:
        for host in groups.get(target, [target]):
            if host not in hosts and host not in skip:
                hosts.append(host)
    return hosts


def _shard_of(host, groups):
    """The shard number of a database host, from its db_shard_N group."""
    for name, members in groups.items():
        number = name[len("db_shard_"):]
        if name.startswith("db_shard_") and number.isascii() and number.isdigit() and host in members:
            return int(number)
    raise PlanError("rolling_targets", host, "a database host in no db_shard_N group of the fleet inventory")


def _check_replaceable(olds, groups, fleet_plan):
    fleet = {host for tier in REPLACEABLE_TIERS for host in groups.get(tier, ())}
    strays = [host for host in olds if host not in fleet]
    if strays:
        raise PlanError("rolling_targets", strays,
                        "not a %s host of the fleet inventory" % ", ".join(REPLACEABLE_TIERS))
    writers = {shard.get("shard"): shard.get("writer_address") for shard in fleet_plan.get("shards") or []}
    alone = [host for host in olds if host in groups.get("database", ()) and not writers.get(_shard_of(host, groups))]
    if alone:
        raise PlanError("rolling_targets", alone,
                        "their shard has no writer address (no replica is planned, or its explicit hosts have no "
                        "network.writer_addresses entry): its clients connect to the node itself, which cannot be "
                        "replaced under them. Plan a replica (model.database_replicas) and run site.yml first")


def _check_pool(pool, count, known):
    if not isinstance(pool, (list, tuple)) or not all(
            isinstance(spare, dict) and isinstance(spare.get("name"), str) and isinstance(spare.get("address"), str)
            for spare in pool):
        raise PlanError("rolling_static_pool", pool, "must be a list of {name, address}")
    taken = [spare["name"] for spare in pool if spare["name"] in known]
    if taken:
        raise PlanError("rolling_static_pool", taken, "spare hosts must not be in the inventory already")
    if len(pool) < count:
        raise PlanError("rolling_static_pool", [spare["name"] for spare in pool],
                        "the static provider takes one spare host per replaced node: %d needed" % count)


def plan_batches(olds, groups, indices, fleet_plan, surge=1, provider="lab", pool=(), primaries=()):
    """Batches of {'tier', 'handover', 'pairs': [{'old', 'old_index', 'new', 'new_index', 'address', 'shard'}]}.

    olds: hosts to replace; groups: the inventory's groups; indices: fleet_index of each old host;
    primaries: the database hosts that take writes now (their batches come last, with handover true).
    """
    # -e rolling_surge=2 passes a string; ASCII digits only ('²'.isdigit() is true, int('²') fails).
    if isinstance(surge, str) and surge.strip().isascii() and surge.strip().isdigit():
        surge = int(surge)
    if isinstance(surge, bool) or not isinstance(surge, int) or surge < 1:
        raise PlanError("rolling_surge", surge, "must be a whole number >= 1")
    if provider not in PROVIDERS:
        raise PlanError("rolling_provider", provider, "must be one of %s" % ", ".join(PROVIDERS))
    if not isinstance(primaries, (list, tuple)) or not all(isinstance(host, str) for host in primaries):
        raise PlanError("primaries", primaries, "must list the database hosts that take writes")
    _check_replaceable(olds, groups, fleet_plan)
    if provider == "static":
        _check_pool(pool, len(olds), set(groups.get("all", ())))
    spares = list(pool)
    batches = []
    for tier in REPLACEABLE_TIERS:
        in_tier = [host for host in olds if host in groups.get(tier, ())]
        if tier == "database":
            # Replicas first; a primary once the handover made it a replica of a node that stays.
            in_tier = [host for host in in_tier if host not in primaries] + [h for h in in_tier if h in primaries]
        size = surge if tier in SURGE_TIERS else 1
        taken = {}
        for start in range(0, len(in_tier), size):
            chunk = in_tier[start:start + size]
            shard = _shard_of(chunk[0], groups) if tier == "database" else None
            if provider == "lab":
                news = topology.next_nodes(fleet_plan, tier, len(chunk), taken.get(shard, []), shard=shard)
            else:
                taken_spares, spares = spares[:len(chunk)], spares[len(chunk):]
                news = [{"name": spare["name"], "address": spare["address"], "index": None} for spare in taken_spares]
            taken.setdefault(shard, []).extend(new["index"] if tier == "database" else new["name"] for new in news)
            batches.append({"tier": tier, "handover": any(old in primaries for old in chunk), "pairs": [
                {"old": old, "old_index": indices.get(old), "new": new["name"], "new_index": new["index"],
                 "address": new["address"], "shard": shard} for old, new in zip(chunk, news, strict=True)]})
    return batches


def play_hosts(batches, known=()):
    """The batch plays' hosts in order, and their serial batch sizes.

    {'hosts': [...], 'sizes': [...], 'sizes_handed_over': [...], 'handover_shards': [...]}: per batch
    {'name': 'rolling-batch-N', 'controller': True, 'number': N, 'batch': batch}, then per pair {'name': new,
    'controller': False, 'number': N, 'tier', 'pair', 'groups'}. The batches with handover true are in the
    second batch play (HANDED_OVER_GROUP, sizes_handed_over), after the handover of handover_shards.
    known: the inventory's hosts, which no controller step host may shadow.
    """
    if not isinstance(batches, (list, tuple)) or not all(
            isinstance(batch, dict) and batch.get("tier") in PLANNED_GROUPS and batch.get("pairs")
            and isinstance(batch["pairs"], list)
            and all(isinstance(pair, dict) and isinstance(pair.get("new"), str) for pair in batch["pairs"])
            for batch in batches):
        raise PlanError("batches", batches, "must be the batches of fleetscale.split.rolling_batches")
    hosts, sizes = [], {False: [], True: []}
    shards = []
    for number, batch in enumerate(batches, 1):
        name = "%s%d" % (CONTROLLER_PREFIX, number)
        if name in known:
            raise PlanError("inventory", name, "the name of a rolling replacement step host: rename that host")
        handover = bool(batch.get("handover"))
        group = HANDED_OVER_GROUP if handover else BATCH_GROUP
        hosts.append({"name": name, "controller": True, "number": number, "batch": batch, "groups": [group]})
        for pair in batch["pairs"]:
            hosts.append({"name": pair["new"], "controller": False, "number": number, "tier": batch["tier"],
                          "pair": pair, "groups": [group, PLANNED_GROUPS[batch["tier"]]]})
            if handover and pair.get("shard") not in shards:
                shards.append(pair.get("shard"))
        sizes[handover].append(1 + len(batch["pairs"]))
    return {"hosts": hosts, "sizes": sizes[False], "sizes_handed_over": sizes[True], "handover_shards": shards}


def _tiers(state, key):
    value = (state or {}).get(key) or {}
    if not isinstance(value, dict):
        raise PlanError(key, value, "must be a mapping of tiers")
    copied = {}
    for tier, entries in value.items():
        if tier == "database" and isinstance(entries, dict):
            copied[tier] = {int(shard): list(indices) for shard, indices in entries.items()}
        else:
            copied[tier] = list(entries)
    return copied


def _explicit_hosts(current, batch, step):
    """An explicit tier's host list after `step`; a database primary's role passes to its shard's next node."""
    olds = [pair["old"] for pair in batch["pairs"]]
    gone = olds if step == "retire" else [pair["new"] for pair in batch["pairs"]]
    kept = [dict(host) for host in current if host["name"] not in gone]
    if step == "adding":
        for pair in batch["pairs"]:
            entry = {"name": pair["new"], "address": pair["address"]}
            if batch["tier"] == "database":
                entry.update(shard=pair["shard"], role="replica")
            kept.append(entry)
    if batch["tier"] == "database" and step == "retire":
        for shard in {host.get("shard") for host in current if host["name"] in olds}:
            members = [host for host in kept if host.get("shard") == shard]
            if members and not any(host.get("role") == "primary" for host in members):
                members[0]["role"] = "primary"
                for host in members:
                    host.pop("replica_of", None)
    return kept


def _generated_step(retired, adding, batch, step):
    """The retired and adding indices of a generated tier after `step` (database: per shard)."""
    tier = batch["tier"]
    for pair in batch["pairs"]:
        if tier == "database":
            adds = adding.setdefault(tier, {}).setdefault(pair["shard"], [])
            gone = retired.setdefault(tier, {}).setdefault(pair["shard"], [])
        else:
            adds = adding.setdefault(tier, [])
            gone = retired.setdefault(tier, [])
        if pair["new_index"] in adds:
            adds.remove(pair["new_index"])
        if step == "adding":
            adds.append(pair["new_index"])
        if step == "retire" and pair["old_index"] not in gone:
            gone.append(pair["old_index"])


def _non_empty(record):
    out = {}
    for tier, entries in record.items():
        kept = {shard: indices for shard, indices in entries.items() if indices} if isinstance(entries, dict) \
            else entries
        if kept:
            out[tier] = kept
    return out


def record_step(state, batch, step, explicit, listed=()):
    """The replacements record after `step` of `batch`.

    state: the record as read (None when there is none); explicit: whether the batch's tier lists its
    hosts in the spec; listed: that tier's hosts as {name, address} (database: also shard and role), used
    when the record has none yet. Empty tiers are left out, so a finished replacement leaves only what it
    retired.
    """
    if step not in STEPS:
        raise PlanError("step", step, "must be one of %s" % ", ".join(STEPS))
    retired, adding, hosts = _tiers(state, "retired"), _tiers(state, "adding"), _tiers(state, "hosts")
    tier = batch["tier"]
    if explicit:
        hosts[tier] = _explicit_hosts(hosts.get(tier) or [dict(host) for host in listed], batch, step)
    else:
        _generated_step(retired, adding, batch, step)
    return {"retired": _non_empty(retired), "adding": _non_empty(adding), "hosts": _non_empty(hosts)}
