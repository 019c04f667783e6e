"""The rolling replacement's plan and record as data: batches, resume, explicit hosts, static pool, refusals.

The record is checked against its reader: what record_step() writes, fleet.build_fleet() (the inventory
plugin's model) reads back as the fleet the replacement left.
"""

import pytest

from ansible_collections.fleetscale.split.plugins.filter import rolling as rolling_filters
from ansible_collections.fleetscale.split.plugins.module_utils import fleet, rolling
from ansible_collections.fleetscale.split.plugins.module_utils.errors import PlanError

NETWORK = {"subnet": "10.50.0.0/16", "first_address": {
    "proxy": "10.50.1.10", "web_agent": "10.50.2.10", "web_user": "10.50.3.10",
    "app": "10.50.4.10", "database": "10.50.5.10"}}


def lab(retired=None, adding=None, hosts=None, model=None, network=None):
    """The 20,000-agent plan: its fleet plan, groups and each host's index."""
    built = fleet.build_fleet({"agents": 20_000, "model": model or {}}, network=network or NETWORK, retired=retired,
                              adding=adding, hosts=hosts)
    groups = {"all": [h["name"] for h in built["hosts"]]}
    for host in built["hosts"]:
        for group in host["groups"]:
            groups.setdefault(group, []).append(host["name"])
    for child, parent in built["parents"].items():
        groups.setdefault(parent, []).extend(groups.get(child, []))
    indices = {h["name"]: h["vars"].get("fleet_index") for h in built["hosts"]}
    addresses = {h["name"]: h["vars"]["fleet_address"] for h in built["hosts"]}
    return built["plan"], groups, indices, addresses


def pairs(batches):
    return [(b["tier"], [(p["old"], p["new"], p["address"]) for p in b["pairs"]]) for b in batches]


def test_targets_expand_in_order_each_host_once():
    _, groups, _, _ = lab()
    assert rolling.expand_targets(["web_user", "web", "proxy-02"], groups) == [
        "web-user-01", "web-agent-01", "web-agent-02", "proxy-02"]
    assert rolling.expand_targets("web_agent", groups, skip=["web-agent-01"]) == ["web-agent-02"]


@pytest.mark.parametrize("targets", [[], "", None, [3], {"web": 1}])
def test_no_targets_is_refused(targets):
    _, groups, _, _ = lab()
    with pytest.raises(PlanError) as refused:
        rolling.expand_targets(targets, groups)
    assert refused.value.field == "rolling_targets"


def test_an_unknown_target_is_named():
    _, groups, _, _ = lab()
    with pytest.raises(PlanError, match="unknown: web-agent-09, nope"):
        rolling.expand_targets(["web_agent", "web-agent-09", "nope"], groups)


def test_web_nodes_go_surge_at_a_time_user_tier_first():
    plan, groups, indices, _ = lab()
    olds = rolling.expand_targets(["web"], groups)
    assert pairs(rolling.plan_batches(olds, groups, indices, plan, surge=2)) == [
        ("web_user", [("web-user-01", "web-user-02", "10.50.3.11")]),
        ("web_agent", [("web-agent-01", "web-agent-03", "10.50.2.12"), ("web-agent-02", "web-agent-04", "10.50.2.13")]),
    ]


@pytest.mark.parametrize("tier", ["proxy", "app"])
def test_proxies_and_app_nodes_go_one_at_a_time_whatever_the_surge(tier):
    plan, groups, indices, _ = lab()
    batches = rolling.plan_batches(groups[tier], groups, indices, plan, surge=3)
    assert [(b["tier"], [(p["old"], p["new"]) for p in b["pairs"]]) for b in batches] == [
        (tier, [(f"{tier}-01", f"{tier}-03")]), (tier, [(f"{tier}-02", f"{tier}-04")])]


def test_a_pair_carries_both_indices():
    plan, groups, indices, _ = lab()
    (batch,) = rolling.plan_batches(["web-agent-02"], groups, indices, plan)
    assert batch["pairs"] == [{"old": "web-agent-02", "old_index": 2, "new": "web-agent-03", "new_index": 3,
                               "address": "10.50.2.12", "shard": None}]


def test_a_surge_given_as_text_counts():
    plan, groups, indices, _ = lab()
    assert len(rolling.plan_batches(groups["web_agent"], groups, indices, plan, surge="2")) == 1


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"surge": 0}, "rolling_surge"), ({"surge": "two"}, "rolling_surge"), ({"surge": True}, "rolling_surge"),
    # A digit to str.isdigit() that int() cannot read: refused, not a ValueError.
    ({"surge": "\u00b2"}, "rolling_surge"), ({"surge": 2.0}, "rolling_surge"),
    ({"provider": "cloud"}, "rolling_provider"),
])
def test_bad_settings_are_refused_naming_the_field(kwargs, field):
    plan, groups, indices, _ = lab()
    with pytest.raises(PlanError) as refused:
        rolling.plan_batches(["web-agent-01"], groups, indices, plan, **kwargs)
    assert refused.value.field == field


def test_database_nodes_go_one_at_a_time_replicas_first_the_primary_after_its_handover():
    plan, groups, indices, _ = lab()
    batches = rolling.plan_batches(["db-01-01", "db-01-02", "web-user-01"], groups, indices, plan, surge=3,
                                   primaries=["db-01-01"])
    assert pairs(batches) == [("web_user", [("web-user-01", "web-user-02", "10.50.3.11")]),
                              ("database", [("db-01-02", "db-01-03", "10.50.5.13")]),
                              ("database", [("db-01-01", "db-01-04", "10.50.5.14")])]
    assert [b["handover"] for b in batches] == [False, False, True]
    assert batches[2]["pairs"][0]["shard"] == 1 and batches[2]["pairs"][0]["old_index"] == 1
    layout = rolling.play_hosts(batches)
    assert layout["sizes"] == [2, 2] and layout["sizes_handed_over"] == [2]
    assert layout["handover_shards"] == [1]
    assert layout["hosts"][-1]["groups"] == ["rolling_batches_handed_over", "rolling_planned_database"]


def test_a_database_node_is_recorded_per_shard_and_read_back_as_the_new_shard():
    plan, groups, indices, _ = lab()
    (batch,) = rolling.plan_batches(["db-01-01"], groups, indices, plan, primaries=["db-01-01"])
    adding = rolling.record_step(None, batch, "adding", explicit=False)
    assert adding == {"retired": {}, "adding": {"database": {1: [3]}}, "hosts": {}}
    retired = rolling.record_step(adding, batch, "retire", explicit=False)
    assert retired == {"retired": {"database": {1: [1]}}, "adding": {}, "hosts": {}}
    _, groups_after, _, _ = lab(retired=retired["retired"])
    assert groups_after["db_shard_1"] == ["db-01-02", "db-01-03"]


def test_an_explicit_database_primary_passes_its_role_to_the_shards_next_node():
    hosts = {"database": [{"name": "sql-a", "address": "10.50.5.20", "shard": 1, "role": "primary"},
                          {"name": "sql-b", "address": "10.50.5.21", "shard": 1, "role": "replica",
                           "replica_of": "sql-a"}]}
    plan, groups, indices, _ = lab(hosts=hosts, network=dict(NETWORK, writer_addresses={1: "10.50.5.9"}))
    pool = [{"name": "sql-c", "address": "10.50.5.22"}]
    (batch,) = rolling.plan_batches(["sql-a"], groups, indices, plan, provider="static", pool=pool,
                                    primaries=["sql-a"])
    assert batch["handover"] and batch["pairs"][0]["shard"] == 1
    adding = rolling.record_step({}, batch, "adding", explicit=True, listed=hosts["database"])
    assert adding["hosts"]["database"][-1] == {"name": "sql-c", "address": "10.50.5.22", "shard": 1,
                                               "role": "replica"}
    retired = rolling.record_step(adding, batch, "retire", explicit=True, listed=hosts["database"])
    assert retired["hosts"]["database"] == [
        {"name": "sql-b", "address": "10.50.5.21", "shard": 1, "role": "primary"},
        {"name": "sql-c", "address": "10.50.5.22", "shard": 1, "role": "replica"}]
    _, after, _, _ = lab(hosts=retired["hosts"])
    assert after["db_shard_1"] == ["sql-b", "sql-c"]


def test_a_database_node_of_a_shard_without_a_replica_is_refused():
    plan, groups, indices, _ = lab(model={"database_replicas": 0})
    with pytest.raises(PlanError, match="no writer address") as refused:
        rolling.plan_batches(["db-01-01"], groups, indices, plan)
    assert refused.value.value == ["db-01-01"]


def test_hosts_of_no_replaceable_tier_are_refused():
    plan, groups, indices, _ = lab()
    groups = dict(groups, all=groups["all"] + ["monitor-01"])
    with pytest.raises(PlanError, match="not a web_user, web_agent, app, proxy, database host") as refused:
        rolling.plan_batches(["monitor-01"], groups, indices, plan)
    assert refused.value.value == ["monitor-01"]


def test_the_static_provider_takes_the_pool_in_order():
    plan, groups, indices, _ = lab()
    pool = [{"name": "spare-1", "address": "10.60.0.1"}, {"name": "spare-2", "address": "10.60.0.2"}]
    batches = rolling.plan_batches(["web-user-01", "app-01"], groups, indices, plan, provider="static", pool=pool)
    assert pairs(batches) == [("web_user", [("web-user-01", "spare-1", "10.60.0.1")]),
                              ("app", [("app-01", "spare-2", "10.60.0.2")])]
    assert batches[0]["pairs"][0]["new_index"] is None


@pytest.mark.parametrize(("pool", "match"), [
    ([{"name": "spare-1", "address": "10.60.0.1"}], "2 needed"),
    ([{"name": "web-agent-01", "address": "10.60.0.1"}, {"name": "s", "address": "10.60.0.2"}], "already"),
    ([{"name": "spare-1"}], r"list of \{name, address\}"),
    ("spare-1", r"list of \{name, address\}"),
])
def test_a_bad_pool_is_refused(pool, match):
    plan, groups, indices, _ = lab()
    with pytest.raises(PlanError, match=match) as refused:
        rolling.plan_batches(["web-user-01", "app-01"], groups, indices, plan, provider="static", pool=pool)
    assert refused.value.field == "rolling_static_pool"


def test_a_generated_tier_is_recorded_by_index_and_read_back_as_the_new_fleet():
    plan, groups, indices, _ = lab()
    (batch,) = rolling.plan_batches(["web-agent-01"], groups, indices, plan)
    adding = rolling.record_step(None, batch, "adding", explicit=False)
    assert adding == {"retired": {}, "adding": {"web_agent": [3]}, "hosts": {}}
    _, during, _, _ = lab(adding=adding["adding"])
    assert during["web_agent"] == ["web-agent-01", "web-agent-02", "web-agent-03"]
    retired = rolling.record_step(adding, batch, "retire", explicit=False)
    assert retired == {"retired": {"web_agent": [1]}, "adding": {}, "hosts": {}}
    _, after, _, addresses = lab(retired=retired["retired"])
    assert after["web_agent"] == ["web-agent-02", "web-agent-03"]
    assert addresses["web-agent-03"] == "10.50.2.12"


def test_a_rollback_drops_the_new_nodes_and_keeps_what_was_retired_before():
    plan, groups, indices, _ = lab()
    (batch,) = rolling.plan_batches(["web-user-01"], groups, indices, plan)
    before = {"retired": {"web_agent": [1]}, "adding": {}}
    adding = rolling.record_step(before, batch, "adding", explicit=False)
    assert rolling.record_step(adding, batch, "drop", explicit=False) == {
        "retired": {"web_agent": [1]}, "adding": {}, "hosts": {}}


def test_retiring_twice_records_the_index_once():
    plan, groups, indices, _ = lab()
    (batch,) = rolling.plan_batches(["web-user-01"], groups, indices, plan)
    once = rolling.record_step(None, batch, "retire", explicit=False)
    assert rolling.record_step(once, batch, "retire", explicit=False)["retired"] == {"web_user": [1]}


def test_an_explicit_tier_is_recorded_as_its_host_list_and_read_back():
    hosts = {"app": [{"name": "sched-a", "address": "10.50.4.20"}, {"name": "sched-b", "address": "10.50.4.21"}]}
    plan, groups, indices, addresses = lab(hosts=hosts)
    pool = [{"name": "sched-c", "address": "10.50.4.22"}]
    (batch,) = rolling.plan_batches(["sched-a"], groups, indices, plan, provider="static", pool=pool)
    listed = [{"name": name, "address": addresses[name]} for name in plan["hosts"]["app"]]
    adding = rolling.record_step({}, batch, "adding", explicit=True, listed=listed)
    assert [h["name"] for h in adding["hosts"]["app"]] == ["sched-a", "sched-b", "sched-c"]
    retired = rolling.record_step(adding, batch, "retire", explicit=True, listed=listed)
    assert retired["hosts"] == {"app": [{"name": "sched-b", "address": "10.50.4.21"},
                                        {"name": "sched-c", "address": "10.50.4.22"}]}
    _, after, _, after_addresses = lab(hosts=retired["hosts"])
    assert after["app"] == ["sched-b", "sched-c"]
    assert after_addresses["sched-c"] == "10.50.4.22"
    dropped = rolling.record_step(adding, batch, "drop", explicit=True, listed=listed)
    assert [h["name"] for h in dropped["hosts"]["app"]] == ["sched-a", "sched-b"]


@pytest.mark.parametrize(("state", "step", "field"), [
    (None, "undo", "step"), ({"retired": ["web_agent"]}, "adding", "retired"), ({"adding": 3}, "adding", "adding"),
])
def test_a_bad_record_or_step_is_refused(state, step, field):
    plan, groups, indices, _ = lab()
    (batch,) = rolling.plan_batches(["web-user-01"], groups, indices, plan)
    with pytest.raises(PlanError) as refused:
        rolling.record_step(state, batch, step, explicit=False)
    assert refused.value.field == field


def test_the_filters_name_themselves_on_refusal():
    plan, groups, indices, _ = lab()
    with pytest.raises(Exception, match=r"fleetscale\.split\.rolling_batches: field 'rolling_surge'"):
        rolling_filters.rolling_batches(["web-user-01"], groups, plan, indices, surge=0)
    with pytest.raises(Exception, match=r"fleetscale\.split\.rolling_hosts: field 'rolling_targets'.*unknown: x"):
        rolling_filters.rolling_hosts(["x"], groups)
    with pytest.raises(Exception, match=r"fleetscale\.split\.rolling_record: field 'step'"):
        rolling_filters.rolling_record({}, {"tier": "web_user", "pairs": []}, "undo")
    with pytest.raises(Exception, match=r"fleetscale\.split\.rolling_play_hosts: field 'batches'"):
        rolling_filters.rolling_play_hosts([{"tier": "database", "pairs": [{}]}])
    assert set(rolling_filters.FilterModule().filters()) == {
        "rolling_hosts", "rolling_batches", "rolling_play_hosts", "rolling_record"}


def test_each_batch_of_the_play_is_its_controller_step_then_its_new_nodes():
    plan, groups, indices, _ = lab()
    olds = rolling.expand_targets(["web", "app-01", "proxy-01"], groups)
    batches = rolling.plan_batches(olds, groups, indices, plan, surge=2)
    layout = rolling.play_hosts(batches, groups["all"])
    assert [(h["name"], h["number"]) for h in layout["hosts"]] == [
        ("rolling-batch-1", 1), ("web-user-02", 1),
        ("rolling-batch-2", 2), ("web-agent-03", 2), ("web-agent-04", 2),
        ("rolling-batch-3", 3), ("app-03", 3),
        ("rolling-batch-4", 4), ("proxy-03", 4)]
    assert layout["sizes"] == [2, 3, 2, 2]
    controllers = [h for h in layout["hosts"] if h["controller"]]
    assert [h["batch"] for h in controllers] == batches
    assert {h["name"]: h["groups"] for h in layout["hosts"] if not h["controller"]} == {
        "web-user-02": ["rolling_batches", "rolling_planned_web"],
        "web-agent-03": ["rolling_batches", "rolling_planned_web"],
        "web-agent-04": ["rolling_batches", "rolling_planned_web"],
        "app-03": ["rolling_batches", "rolling_planned_app"],
        "proxy-03": ["rolling_batches", "rolling_planned_proxy"]}
    assert layout["hosts"][4]["pair"] == batches[1]["pairs"][1]


def test_no_batch_is_an_empty_play():
    assert rolling.play_hosts([]) == {"hosts": [], "sizes": [], "sizes_handed_over": [], "handover_shards": []}


@pytest.mark.parametrize("batches", [None, "web", [{"tier": "web_agent", "pairs": []}], [{"tier": "monitor",
                                                                                        "pairs": [{"new": "x"}]}],
                                     [{"tier": "database", "pairs": [{"old": "db-01-01"}]}]])
def test_a_bad_batch_list_is_refused(batches):
    with pytest.raises(PlanError) as refused:
        rolling.play_hosts(batches)
    assert refused.value.field == "batches"


def test_an_inventory_host_a_controller_step_would_shadow_is_refused():
    plan, groups, indices, _ = lab()
    batches = rolling.plan_batches(["web-user-01"], groups, indices, plan)
    with pytest.raises(PlanError, match="rolling-batch-1") as refused:
        rolling.play_hosts(batches, groups["all"] + ["rolling-batch-1"])
    assert refused.value.field == "inventory"
