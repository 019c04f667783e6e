# Copyright: fleetscale.split contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rolling replacement's plan and its record, as data.

plan_batches() turns the nodes to replace into batches of (old node, new node) pairs: web nodes
`surge` at a time, user tier first; proxies and app nodes one at a time whatever the surge (a proxy's
traffic is kept by the others, the singleton hands over from one holder to one). New nodes are named
by the plan's own rule (topology.next_nodes) with the lab provider, or taken from a pool of spare hosts
with the static one.

play_hosts() lays the batches out as the hosts of one play with `serial`: per batch a controller step
host (a local alias that runs the batch's steps on the controller) followed by the batch's new nodes,
and the size of each batch, so that each batch of the play is one batch of the replacement.

record_step() is the replacements record after one step of a batch (adding, retire, drop): the file
playbooks/rolling_replace.yml writes and the fleetscale.split.fleet inventory plugin reads
(`retired` and `adding` node indices of generated tiers, `hosts` of explicit tiers).
"""

from __future__ import annotations

from ansible_collections.fleetscale.split.plugins.module_utils import topology
from ansible_collections.fleetscale.split.plugins.module_utils.errors import PlanError

# Tiers replaced add-then-remove, in the order their batches run.
REPLACEABLE_TIERS = ("web_user", "web_agent", "app", "proxy")
# Tiers whose batches hold `surge` nodes; the others go one node at a time.
SURGE_TIERS = ("web_user", "web_agent")
PROVIDERS = ("lab", "static")
STEPS = ("adding", "retire", "drop")
# The batch play's controller step hosts are named CONTROLLER_PREFIX + the batch's number.
CONTROLLER_PREFIX = "rolling-batch-"
# The group of every host of the batch play, and the group of the new nodes of each kind of tier
# (for the steps that prepare the databases and proxies for them before the batches start).
BATCH_GROUP = "rolling_batches"
PLANNED_GROUPS = {"web_user": "rolling_planned_web", "web_agent": "rolling_planned_web",
                  "app": "rolling_planned_app", "proxy": "rolling_planned_proxy"}


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


def _check_replaceable(olds, groups):
    databases = [host for host in olds if host in groups.get("database", ())]
    if databases:
        raise PlanError("rolling_targets", databases, "database nodes are not replaced by add-then-remove; replacing "
                        "a database is a replica promotion, a separate operation: leave them out")
    fleet = {host for tier in REPLACEABLE_TIERS for host in groups.get(tier, ())}
    strays = [host for host in olds if host not in fleet]
    if strays:
        raise PlanError("rolling_targets", strays,
                        "not a %s host of the fleet inventory" % ", ".join(REPLACEABLE_TIERS))


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


def plan_batches(olds, groups, indices, fleet_plan, surge=1, provider="lab", pool=()):
    """Batches of {'tier', 'pairs': [{'old', 'old_index', 'new', 'new_index', 'address'}]}.

    olds: hosts to replace; groups: the inventory's groups; indices: fleet_index of each old host.
    """
    if isinstance(surge, str) and surge.strip().isdigit():
        surge = int(surge)  # -e rolling_surge=2 passes a string
    if isinstance(surge, bool) or not isinstance(surge, int) or surge < 1:
        raise PlanError("rolling_surge", surge, "must be a whole number >= 1")
    if provider not in PROVIDERS:
        raise PlanError("rolling_provider", provider, "must be one of %s" % ", ".join(PROVIDERS))
    _check_replaceable(olds, groups)
    if provider == "static":
        _check_pool(pool, len(olds), set(groups.get("all", ())))
    spares = list(pool)
    batches = []
    for tier in REPLACEABLE_TIERS:
        in_tier = [host for host in olds if host in groups.get(tier, ())]
        size = surge if tier in SURGE_TIERS else 1
        taken = []
        for start in range(0, len(in_tier), size):
            chunk = in_tier[start:start + size]
            if provider == "lab":
                news = topology.next_nodes(fleet_plan, tier, len(chunk), taken)
            else:
                taken_spares, spares = spares[:len(chunk)], spares[len(chunk):]
                news = [{"name": spare["name"], "address": spare["address"], "index": None} for spare in taken_spares]
            taken.extend(new["name"] for new in news)
            batches.append({"tier": tier, "pairs": [
                {"old": old, "old_index": indices.get(old), "new": new["name"], "new_index": new["index"],
                 "address": new["address"]} for old, new in zip(chunk, news, strict=True)]})
    return batches


def play_hosts(batches, known=()):
    """The batch play's hosts in order, and its serial batch sizes: {'hosts': [...], 'sizes': [...]}.

    Per batch: {'name': 'rolling-batch-N', 'controller': True, 'number': N, 'batch': batch}, then per pair
    {'name': new, 'controller': False, 'number': N, 'tier', 'pair', 'groups'}. known: the inventory's hosts,
    which no controller step host may shadow.
    """
    if not isinstance(batches, (list, tuple)) or not all(
            isinstance(batch, dict) and batch.get("tier") in PLANNED_GROUPS and batch.get("pairs")
            for batch in batches):
        raise PlanError("batches", batches, "must be the batches of fleetscale.split.rolling_batches")
    hosts, sizes = [], []
    for number, batch in enumerate(batches, 1):
        name = "%s%d" % (CONTROLLER_PREFIX, number)
        if name in known:
            raise PlanError("inventory", name, "the name of a rolling replacement step host: rename that host")
        hosts.append({"name": name, "controller": True, "number": number, "batch": batch,
                      "groups": [BATCH_GROUP]})
        for pair in batch["pairs"]:
            hosts.append({"name": pair["new"], "controller": False, "number": number, "tier": batch["tier"],
                          "pair": pair, "groups": [BATCH_GROUP, PLANNED_GROUPS[batch["tier"]]]})
        sizes.append(1 + len(batch["pairs"]))
    return {"hosts": hosts, "sizes": sizes}


def _tiers(state, key):
    value = (state or {}).get(key) or {}
    if not isinstance(value, dict):
        raise PlanError(key, value, "must be a mapping of tiers")
    return {tier: list(entries) for tier, entries in value.items()}


def record_step(state, batch, step, explicit, listed=()):
    """The replacements record after `step` of `batch`.

    state: the record as read (None when there is none); explicit: whether the batch's tier lists its
    hosts in the spec; listed: that tier's hosts as {name, address}, used when the record has none yet.
    Empty tiers are left out, so a finished replacement leaves only what it retired.
    """
    if step not in STEPS:
        raise PlanError("step", step, "must be one of %s" % ", ".join(STEPS))
    retired, adding, hosts = _tiers(state, "retired"), _tiers(state, "adding"), _tiers(state, "hosts")
    tier = batch["tier"]
    olds = [pair["old"] for pair in batch["pairs"]]
    news = [pair["new"] for pair in batch["pairs"]]
    if explicit:
        current = hosts.get(tier) or [dict(host) for host in listed]
        gone = olds if step == "retire" else news
        current = [host for host in current if host["name"] not in gone]
        if step == "adding":
            current.extend({"name": pair["new"], "address": pair["address"]} for pair in batch["pairs"])
        hosts[tier] = current
    else:
        new_indices = [pair["new_index"] for pair in batch["pairs"]]
        adding[tier] = [index for index in adding.get(tier, []) if index not in new_indices]
        if step == "adding":
            adding[tier] += new_indices
        if step == "retire":
            done = retired.get(tier, [])
            retired[tier] = done + [pair["old_index"] for pair in batch["pairs"] if pair["old_index"] not in done]
    return {"retired": {t: v for t, v in retired.items() if v}, "adding": {t: v for t, v in adding.items() if v},
            "hosts": {t: v for t, v in hosts.items() if v}}
