# Copyright: fleetscale.split contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A fleet: the plan plus its hosts, groups and host variables.

This is everything the inventory plugin shows, computed without Ansible so the same
result can be tested and benchmarked directly.
"""

from __future__ import annotations

from ansible_collections.fleetscale.split.plugins.module_utils import plan as plan_module
from ansible_collections.fleetscale.split.plugins.module_utils import topology as topology_module
from ansible_collections.fleetscale.split.plugins.module_utils.errors import PlanError

# Group of each tier, and the parent group it sits under.
TIER_GROUPS = {
    "proxy": ("proxy", None),
    "web_agent": ("web_agent", "web"),
    "web_user": ("web_user", "web"),
    "app": ("app", None),
    "database": ("database", None),
}
SCHEMA_PATTERN = "fleet_shard_%d"
# server_id must differ between the nodes of a shard, and reads well as shard and node.
SERVER_ID_SHARD_FACTOR = 1000


def _host_vars(tier, host, tier_plan, count):
    hostvars = {
        "fleet_role": tier,
        "fleet_index": host["index"],
        "fleet_address": host.get("address"),
    }
    if tier_plan.get("planned_rps") is not None:
        hostvars["fleet_capacity_rps"] = tier_plan["capacity_rps"]
        hostvars["fleet_planned_rps"] = round(tier_plan["planned_rps"] / count, 6)
        hostvars["fleet_utilisation"] = round(tier_plan["planned_rps"] / count / tier_plan["capacity_rps"], 6)
    return hostvars


def _add_member(shard, host, writer):
    """Record a database host on its shard; the primary also gives the shard its host and address."""
    shard.setdefault("members", []).append(host["name"])
    if host["database_role"] == "primary":
        shard.update({"host": host["name"], "schema": SCHEMA_PATTERN % shard["shard"],
                      "writer_address": writer,
                      # What clients connect to: the floating writer address, else the primary itself.
                      "address": writer or host.get("address")})


def build_fleet(raw_spec, naming=None, network=None, hosts=None, existing_placement=None, rebalance=False,
                retired=None, adding=None):
    """Return {'plan': ..., 'hosts': [{'name', 'groups', 'vars'}], 'groups': {child: parent}}."""
    plan = plan_module.build_plan(raw_spec, existing_placement, rebalance)
    topology = topology_module.build_topology(plan, naming, network, hosts, retired, adding)
    shards_by_number = {s["shard"]: s for s in plan["shards"]}
    records = []
    for tier in plan_module.TIER_NAMES:
        tier_plan = plan["tiers"][tier]
        tier_hosts = topology[tier]
        group = TIER_GROUPS[tier][0]
        for host in tier_hosts:
            hostvars = _host_vars(tier, host, tier_plan, len(tier_hosts))
            groups = [group]
            if tier == "app":
                # Index 1 is the planned active; the singleton's lock decides at run time.
                hostvars["fleet_app_role"] = "active" if host["index"] == 1 else "standby"
            if tier == "database":
                shard = shards_by_number.get(host["shard"])
                if shard is None:
                    raise PlanError("hosts.database", host["name"],
                                    "host is listed for shard %d, which the plan does not have" % host["shard"])
                _add_member(shard, host, topology["database_writers"].get(shard["shard"]))
                hostvars.update({"fleet_shard": shard["shard"], "fleet_tenants": shard["tenants"],
                                 "fleet_shard_agents": shard["agents"],
                                 "fleet_utilisation": shard["utilisation"],
                                 "fleet_database_role": host["database_role"],
                                 "fleet_database_server_id": shard["shard"] * SERVER_ID_SHARD_FACTOR + host["index"]})
                groups.append("db_shard_%d" % shard["shard"])
            records.append({"name": host["name"], "groups": groups, "vars": hostvars})
    for record in records:
        if record["vars"]["fleet_role"] == "database":
            shard = shards_by_number[record["vars"]["fleet_shard"]]
            record["vars"]["fleet_database_primary"] = shard["host"]
    plan["hosts"] = {tier: [h["name"] for h in topology[tier]] for tier in plan_module.TIER_NAMES}
    plan["layout"] = topology_module.layout(naming, network, hosts, retired, adding)
    parents = {TIER_GROUPS[t][0]: TIER_GROUPS[t][1] for t in TIER_GROUPS if TIER_GROUPS[t][1]}
    parents.update({"db_shard_%d" % s["shard"]: "database" for s in plan["shards"]})
    return {"plan": plan, "hosts": records, "parents": parents}
