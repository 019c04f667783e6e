# Copyright: fleetscale.split contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tenant placement on database shards.

A tenant is never split across shards. New tenants go largest-first onto the
least-loaded shard that still has room; a tenant already placed (a pin, from the spec
or from an earlier placement) stays where it is, so adding tenants never moves anyone.
Only an explicit rebalance computes a fresh placement, and then every move is listed.
A tenant larger than one shard is refused unless it is marked dedicated, in which
case it gets a shard of its own.

Load is agents x weight: a weight above 1 marks a tenant whose agents cost more.
"""

from __future__ import annotations

import math

from ansible_collections.fleetscale.split.plugins.module_utils.errors import PlanError


def tenant_load(tenant):
    return tenant["agents"] * tenant.get("weight", 1.0)


# Loads are floats: a load a hair above a whole number of shards from rounding is that number.
_EPSILON = 1e-9


def shards_for_load(load, agents_per_db):
    """Shards that carry `load` with none above agents_per_db (0 for no load): the one sharding rule."""
    return math.ceil(load / agents_per_db - _EPSILON) if load else 0


class _Shard:
    __slots__ = ("agents", "dedicated", "index", "load", "tenants")

    def __init__(self, index):
        self.index = index
        self.load = 0.0
        self.agents = 0
        self.tenants = []
        self.dedicated = False

    def take(self, tenant):
        self.load += tenant_load(tenant)
        self.agents += tenant["agents"]
        self.tenants.append(tenant["name"])


def _pins(tenants, existing, agents_per_db):
    """Merge spec pins (tenant.shard) with an earlier placement; they must agree."""
    existing = existing or {}
    if not isinstance(existing, dict):
        raise PlanError("existing", existing, "must map tenant names to shard numbers")
    pins = {}
    names = {t["name"] for t in tenants}
    for name, shard in existing.items():
        if name not in names:
            continue  # a tenant that left the fleet frees its room
        if isinstance(shard, bool) or not isinstance(shard, int) or shard < 1:
            raise PlanError("existing.%s" % name, shard, "must be a shard number >= 1")
        pins[name] = shard
    # Shards are numbered without gaps, so a pin to shard N builds shards 1..N: more than one
    # shard per tenant plus the shards the load needs is a typo, not a placement.
    total_load = sum(tenant_load(t) for t in tenants)
    highest = len(tenants) + shards_for_load(total_load, agents_per_db)
    for position, tenant in enumerate(tenants):
        shard = tenant.get("shard")
        if shard is None:
            continue
        if shard > highest:
            raise PlanError("tenants[%d].shard" % position, shard,
                            "beyond the %d shards this plan can ever need (%d tenants, load %g at %d agents per "
                            "shard): pin tenants to the shards they are on, or place them afresh (rebalance)"
                            % (highest, len(tenants), total_load, agents_per_db))
        if tenant["name"] in pins and pins[tenant["name"]] != shard:
            raise PlanError("tenants[%d].shard" % position, shard,
                            "tenant %s is already placed on shard %d: a tenant lives on one shard"
                            % (tenant["name"], pins[tenant["name"]]))
        pins[tenant["name"]] = shard
    return pins


def _place(tenants, agents_per_db, pins):
    """Place every tenant; returns (shards by index, warnings)."""
    shards = {}
    warnings = []
    by_name = {t["name"]: t for t in tenants}

    def shard_at(index):
        if index not in shards:
            shards[index] = _Shard(index)
        return shards[index]

    for name in sorted(pins, key=lambda n: (pins[n], n)):
        tenant = by_name[name]
        shard = shard_at(pins[name])
        if shard.tenants and (tenant["dedicated"] or shard.dedicated):
            lone, other = (name, shard.tenants[0]) if tenant["dedicated"] else (shard.tenants[0], name)
            raise PlanError("tenants.%s.shard" % name, pins[name],
                            "shard %d would hold dedicated tenant %s together with tenant %s"
                            % (pins[name], lone, other))
        shard.take(tenant)
        shard.dedicated = tenant["dedicated"]

    for index in range(1, max(shards, default=0) + 1):
        shard_at(index)

    unplaced = [t for t in tenants if t["name"] not in pins]
    for tenant in unplaced:
        if not tenant["dedicated"] and tenant_load(tenant) > agents_per_db:
            raise PlanError("tenants.%s.agents" % tenant["name"], tenant["agents"],
                            "tenant %s (load %g) does not fit one shard of %d agents; "
                            "mark it dedicated: true to give it a shard of its own"
                            % (tenant["name"], tenant_load(tenant), agents_per_db))

    # Open enough shared shards for the shared load before placing, so placement balances
    # instead of filling shard 1 first.
    shared_load = sum(s.load for s in shards.values() if not s.dedicated)
    shared_load += sum(tenant_load(t) for t in unplaced if not t["dedicated"])
    wanted = shards_for_load(shared_load, agents_per_db)
    shared = [s for s in shards.values() if not s.dedicated]
    next_index = max(shards, default=0) + 1
    while len(shared) < wanted:
        shared.append(shard_at(next_index))
        next_index += 1

    for tenant in sorted(unplaced, key=lambda t: (-tenant_load(t), t["name"])):
        if tenant["dedicated"]:
            shard = shard_at(next_index)
            next_index += 1
            shard.dedicated = True
        else:
            fitting = [s for s in shared if s.load + tenant_load(tenant) <= agents_per_db + _EPSILON]
            if fitting:
                shard = min(fitting, key=lambda s: (s.load, s.index))
            else:
                shard = shard_at(next_index)
                next_index += 1
                shared.append(shard)
        shard.take(tenant)
        if tenant["dedicated"]:
            warnings.append("tenant %s has dedicated shard %d" % (tenant["name"], shard.index))

    for shard in shards.values():
        if not shard.dedicated and shard.load > agents_per_db + _EPSILON:
            warnings.append("shard %d carries load %g, above agents_per_db %d (pinned tenants: rebalance)"
                            % (shard.index, shard.load, agents_per_db))
        if not shard.tenants:
            warnings.append("shard %d holds no tenant" % shard.index)
    return shards, warnings


def _relabel(fresh, previous, loads):
    """Number fresh shards so each keeps the index it shares most load with before."""
    load_by = {}
    for index, shard in fresh.items():
        for name in shard.tenants:
            if name in previous:
                key = (index, previous[name])
                load_by[key] = load_by.get(key, 0) + loads[name]
    mapping = {}
    used = set()
    for (new, old), _load in sorted(load_by.items(), key=lambda kv: (-kv[1], kv[0])):
        if new not in mapping and old not in used:
            mapping[new] = old
            used.add(old)
    free = (i for i in range(1, len(fresh) + len(previous) + 2) if i not in used)
    for index in sorted(fresh):
        if index not in mapping:
            mapping[index] = next(free)
    relabelled = {}
    for index, shard in fresh.items():
        shard.index = mapping[index]
        relabelled[shard.index] = shard
    return relabelled


def place_tenants(tenants, agents_per_db, existing=None, rebalance=False):
    """Place tenants on shards.

    tenants: checked tenant dicts (name, agents, weight, dedicated, shard).
    existing: optional {tenant: shard} of an earlier placement; kept unless rebalance.
    Returns {'shards': [...], 'placement': {tenant: shard}, 'moves': [...], 'warnings': [...]}.
    """
    if isinstance(agents_per_db, bool) or not isinstance(agents_per_db, int) or agents_per_db < 1:
        raise PlanError("agents_per_db", agents_per_db, "must be a whole number >= 1")
    pins = _pins(tenants, existing, agents_per_db)
    moves = []
    if rebalance:
        shards, warnings = _place(tenants, agents_per_db, {})
        shards = _relabel(shards, pins, {t["name"]: tenant_load(t) for t in tenants})
        for index in sorted(shards):
            for name in shards[index].tenants:
                if name in pins and pins[name] != index:
                    moves.append({"tenant": name, "from": pins[name], "to": index})
    else:
        shards, warnings = _place(tenants, agents_per_db, pins)

    placement = {}
    result = []
    for index in sorted(shards):
        shard = shards[index]
        for name in shard.tenants:
            placement[name] = index
        result.append({
            "shard": index,
            "agents": shard.agents,
            "load": round(shard.load, 6),
            "utilisation": round(shard.load / agents_per_db, 6),
            "dedicated": shard.dedicated,
            "tenants": sorted(shard.tenants),
        })
    moves.sort(key=lambda m: m["tenant"])
    return {"shards": result, "placement": placement, "moves": moves, "warnings": warnings}
