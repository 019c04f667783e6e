# Copyright: fleetscale.split contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The split plan: every tier of a 3-way split sized from one spec.

Tiers:
- proxy: reverse proxies, an active/backup pair at the least, more only past one
  proxy's capacity;
- web_agent: agent check-ins, N+1 at the target utilisation;
- web_user: dedicated user and integration nodes; a single one falls back onto the
  agent nodes (which are sized to carry it), more than one are N+1 among themselves;
- app: the singleton application service, one active plus standbys, never two actives;
- database: one shard per agents_per_db agents, tenants placed on shards; each shard is
  a primary and database_replicas replicas (copies, not capacity: every write goes to
  the primary).
"""

from __future__ import annotations

from ansible_collections.fleetscale.split.plugins.module_utils import placement, rate, spec, tiers

TIER_NAMES = ("proxy", "web_agent", "web_user", "app", "database")


def _agent_headroom(tier, extra_load_rps, model):
    """Agents that can join before the tier needs another node."""
    active_limit = tier["active_needed"] * tier["capacity_rps"] * model["target_utilisation"]
    ceiling = rate.agents_at(active_limit - extra_load_rps, model["checkin_ratio"], model["poll_interval"])
    return ceiling


def _web_agent_tier(agents, agent_rps, fallback_rps, model):
    """Agent nodes: N+1 at the target, and enough to carry the user load if it falls back."""
    tier = tiers.size_tier(agent_rps, model["web_agent_capacity_rps"], model["target_utilisation"],
                           model["redundancy"])
    carry = tiers.active_nodes(agent_rps + fallback_rps, model["web_agent_capacity_rps"], 1.0)
    if carry > tier["nodes"]:
        tier = tiers.size_tier(agent_rps, model["web_agent_capacity_rps"], model["target_utilisation"],
                               model["redundancy"], minimum=carry - (1 if model["redundancy"] else 0))
        tier["warnings"].append("sized to carry the user traffic that falls back onto it")
    tier["headroom_agents"] = max(0, _agent_headroom(tier, 0.0, model) - agents)
    return tier


def _web_user_tier(user_rps, model):
    """User nodes: one needs no spare of its own (the agent nodes are its backup); more are N+1."""
    capacity = model["web_user_capacity_rps"]
    needed = tiers.active_nodes(user_rps, capacity, model["target_utilisation"])
    if needed == 1 or not model["redundancy"]:
        nodes = max(model["web_user_nodes"], needed)
    else:
        nodes = max(model["web_user_nodes"], needed + 1)
    return {
        "nodes": nodes,
        "active_needed": needed,
        "spare": nodes - needed,
        "capacity_rps": capacity,
        "planned_rps": round(user_rps, 6),
        "per_node_rps": round(user_rps / nodes, 6),
        "utilisation": tiers.utilisation(user_rps, capacity, nodes),
        "utilisation_after_loss": tiers.utilisation(user_rps, capacity, nodes - 1),
        "fallback": "web_agent" if nodes == 1 else None,
        "headroom_rps": round(max(0.0, needed * capacity * model["target_utilisation"] - user_rps), 6),
        # User load does not grow with agents.
        "headroom_agents": None,
        "warnings": [],
    }


def _with_fallback(web_user, web_agent, agent_rps, user_rps):
    """A lone user node's loss sends its load to the agent nodes: that is its after-loss figure."""
    if web_user["fallback"]:
        web_user["utilisation_after_loss"] = round(
            (agent_rps + user_rps) / (web_agent["capacity_rps"] * web_agent["nodes"]), 6)
    return web_user


def _proxy_tier(agents, agent_rps, user_rps, model):
    total = agent_rps + user_rps
    capacity = model["proxy_capacity_rps"]
    minimum_active = max(1, model["min_proxies"] - 1) if model["redundancy"] else model["min_proxies"]
    tier = tiers.size_tier(total, capacity, model["target_utilisation"], model["redundancy"], minimum_active)
    tier["headroom_agents"] = max(0, _agent_headroom(tier, user_rps, model) - agents)
    return tier


def _app_tier(model):
    nodes = model["app_active"] + model["app_standbys"]
    warnings = []
    if model["app_standbys"] == 0:
        warnings.append("no standby for the singleton application service: losing its node stops it")
    return {
        "nodes": nodes,
        "active": model["app_active"],
        "standbys": model["app_standbys"],
        "active_needed": model["app_active"],
        "spare": model["app_standbys"],
        "capacity_rps": None,
        "planned_rps": None,
        "per_node_rps": None,
        "utilisation": None,
        "utilisation_after_loss": None,
        "headroom_rps": None,
        "headroom_agents": None,
        "warnings": warnings,
    }


def _shards_at_least(tenants, model):
    """Shards the placement opens at the least: the shared load's and one per dedicated tenant.

    Pins are bounded by the placement itself (placement.place_tenants).
    """
    shared_load = sum(placement.tenant_load(t) for t in tenants if not t["dedicated"])
    dedicated = sum(1 for t in tenants if t["dedicated"])
    return placement.shards_for_load(shared_load, model["agents_per_db"]) + dedicated


def _check_sizes(tier_map, model):
    """Refuse any stateless tier planned beyond model.max_nodes_per_tier, naming its figures."""
    for name in ("proxy", "web_agent", "web_user", "app"):
        tier = tier_map[name]
        basis = ("%g requests/s at %g per node and target utilisation %g"
                 % (tier["planned_rps"], tier["capacity_rps"], model["target_utilisation"])
                 if tier["planned_rps"] is not None else "model.app_standbys")
        spec.check_tier_size(name, tier["nodes"], model, basis)


def _over_capacity_warnings(tier_map, shards, model):
    """Warn for every tier and every dedicated shard planned above 100 % of its capacity."""
    warnings = []
    for name in ("proxy", "web_agent", "web_user"):
        tier = tier_map[name]
        if tier["utilisation"] is not None and tier["utilisation"] > 1.0:
            warnings.append("%s: planned at %.0f %% of its capacity" % (name, tier["utilisation"] * 100))
    for shard in shards:
        # Shared shards over their size are warned about by the placement (pinned tenants).
        if shard["dedicated"] and shard["utilisation"] > 1.0 + 1e-9:
            warnings.append("database: dedicated shard %d (tenant %s) is planned at %.0f %% of agents_per_db %d: "
                            "one shard cannot carry it unless a node of this size was measured to"
                            % (shard["shard"], shard["tenants"][0], shard["utilisation"] * 100,
                               model["agents_per_db"]))
    return warnings


def _database_tier(agents, placed, model):
    shards = placed["shards"]
    per_db = model["agents_per_db"]
    shared = [s for s in shards if not s["dedicated"]]
    free = sum(max(0.0, per_db - s["load"]) for s in shared)
    largest_free = max((per_db - s["load"] for s in shared), default=0)
    replicas = model["database_replicas"]
    warnings = list(placed["warnings"])
    if replicas == 0:
        warnings.append("no replica (model.database_replicas is 0): losing a shard's only node loses its data")
    return {
        "nodes": len(shards) * (1 + replicas),
        "shards": len(shards),
        "replicas": replicas,
        "active_needed": len(shards),
        "spare": len(shards) * replicas,
        "capacity_agents": per_db,
        "capacity_rps": None,
        "planned_rps": None,
        "per_node_rps": None,
        "utilisation": round(max((s["utilisation"] for s in shards), default=0.0), 6),
        # A shard is not a spare of another: losing one is an outage of its tenants.
        "utilisation_after_loss": None,
        "headroom_rps": None,
        "headroom_agents": int(free),
        "largest_free_agents": int(max(0, largest_free)),
        "warnings": warnings,
    }


def build_plan(raw_spec, existing_placement=None, rebalance=False):
    """Validate a spec and size every tier; returns the plan mapping.

    Raises PlanError naming the field and value for anything the model refuses.
    """
    checked = spec.check_spec(raw_spec)
    model = checked["model"]
    agents = checked["agents"]
    checkins = rate.checkin_rate(agents, model["checkin_ratio"], model["poll_interval"])
    agent_rps = checkins["per_second"]
    user_rps = model["concurrent_users"] * model["user_request_rate"] + model["integration_rps"]

    web_user = _web_user_tier(user_rps, model)
    fallback_rps = user_rps if web_user["fallback"] else 0.0
    web_agent = _web_agent_tier(agents, agent_rps, fallback_rps, model)
    web_user = _with_fallback(web_user, web_agent, agent_rps, user_rps)
    proxy = _proxy_tier(agents, agent_rps, user_rps, model)
    app = _app_tier(model)
    _check_sizes({"proxy": proxy, "web_agent": web_agent, "web_user": web_user, "app": app}, model)
    # Before placing: the placement opens its shards one by one.
    spec.check_tier_size("database", _shards_at_least(checked["tenants"], model) * (1 + model["database_replicas"]),
                         model, "%d agents at agents_per_db %d, %d dedicated tenants"
                         % (agents, model["agents_per_db"], sum(1 for t in checked["tenants"] if t["dedicated"])))
    placed = placement.place_tenants(checked["tenants"], model["agents_per_db"], existing_placement, rebalance)
    database = _database_tier(agents, placed, model)
    spec.check_tier_size("database", database["nodes"], model,
                         "%d shards of %d nodes" % (database["shards"], 1 + model["database_replicas"]))

    tenants = [dict(t, shard=placed["placement"][t["name"]]) for t in checked["tenants"]]
    tier_map = {"proxy": proxy, "web_agent": web_agent, "web_user": web_user, "app": app, "database": database}
    warnings = ["%s: %s" % (name, w) for name in TIER_NAMES for w in tier_map[name]["warnings"]]
    warnings += _over_capacity_warnings(tier_map, placed["shards"], model)
    return {
        "agents": agents,
        "rate": checkins,
        "user_rps": round(user_rps, 6),
        "model": model,
        "tiers": tier_map,
        "tenants": tenants,
        "synthetic_tenants": checked["synthetic_tenants"],
        "shards": placed["shards"],
        "moves": placed["moves"],
        "warnings": warnings,
    }
