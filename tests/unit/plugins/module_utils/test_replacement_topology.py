"""Replacements: retired indices stay out of use, new nodes follow the plan's own naming and addressing."""

import pytest

from ansible_collections.fleetscale.split.plugins.module_utils import fleet, topology
from ansible_collections.fleetscale.split.plugins.module_utils.errors import PlanError

NETWORK = {"subnet": "10.50.0.0/16", "first_address": {
    "proxy": "10.50.1.10", "web_agent": "10.50.2.10", "web_user": "10.50.3.10",
    "app": "10.50.4.10", "database": "10.50.5.10"}}


def addresses(result, tier):
    return {h["name"]: h["vars"]["fleet_address"] for h in result["hosts"] if h["vars"]["fleet_role"] == tier}


def test_a_retired_index_is_skipped_and_the_tier_keeps_its_size():
    result = fleet.build_fleet({"agents": 20_000}, network=NETWORK, retired={"web_agent": [1]})
    assert addresses(result, "web_agent") == {"web-agent-02": "10.50.2.11", "web-agent-03": "10.50.2.12"}
    # Other tiers are untouched.
    assert addresses(result, "web_user") == {"web-user-01": "10.50.3.10"}
    assert result["plan"]["layout"]["retired"] == {"web_agent": [1]}


def test_next_nodes_take_indices_above_every_used_retired_or_taken_one():
    plan = fleet.build_fleet({"agents": 20_000}, network=NETWORK, retired={"web_agent": [1, 5]})["plan"]
    assert plan["hosts"]["web_agent"] == ["web-agent-02", "web-agent-03"]
    # 5 is retired, so the next new node is 6, never a reused name or address.
    first = topology.next_nodes(plan, "web_agent")
    assert [(n["name"], n["address"], n["index"]) for n in first] == [("web-agent-06", "10.50.2.15", 6)]
    batch = topology.next_nodes(plan, "web_agent", 2, taken=["web-agent-06"])
    assert [n["name"] for n in batch] == ["web-agent-07", "web-agent-08"]


def test_next_node_after_a_replacement_is_the_plans_next_host():
    """Recording a replacement (retiring the old index) makes the plan name the new node exactly."""
    before = fleet.build_fleet({"agents": 20_000}, network=NETWORK)["plan"]
    new = topology.next_nodes(before, "web_user")[0]
    after = fleet.build_fleet({"agents": 20_000}, network=NETWORK, retired={"web_user": [1]})
    assert addresses(after, "web_user") == {new["name"]: new["address"]}


def test_next_nodes_without_a_network_have_no_address_and_custom_names_parse():
    plan = fleet.build_fleet({"agents": 20_000}, naming={"app": "sched{index}.example.net"})["plan"]
    assert topology.next_nodes(plan, "app", taken=[7]) == [
        {"name": "sched8.example.net", "address": None, "index": 8, "field": "naming.app", "tier": "app"}]


@pytest.mark.parametrize(("kwargs", "field", "value"), [
    ({"retired": {"database": [1]}}, "retired.database", [1]),
    ({"retired": {"web_agent": [0]}}, "retired.web_agent[0]", 0),
    ({"retired": {"web_agent": [True]}}, "retired.web_agent[0]", True),
    ({"retired": {"web_agent": [2, 2]}}, "retired.web_agent", [2, 2]),
    ({"retired": {"web_agent": 1}}, "retired.web_agent", 1),
    ({"retired": ["web_agent"]}, "retired", ["web_agent"]),
    ({"retired": {"proxy": [1]}, "hosts": {"proxy": [{"name": "lb1"}, {"name": "lb2"}]}}, "retired.proxy", [1]),
    ({"retired": {"database": {0: [1]}}}, "retired.database", 0),
    ({"retired": {"database": {1: [32]}}}, "retired.database.1[0]", 32),
    ({"retired": {"database": {1: [1]}}, "adding": {"database": {1: [1]}}}, "adding.database.1", [1]),
    # A digit to str.isdigit() that int() cannot read: refused, not a ValueError.
    ({"retired": {"database": {"\u00b2": [1]}}}, "retired.database", "\u00b2"),
])
def test_bad_retirements_are_refused_naming_field_and_value(kwargs, field, value):
    with pytest.raises(PlanError) as caught:
        fleet.build_fleet({"agents": 20_000}, network=NETWORK, **kwargs)
    assert caught.value.field == field
    assert caught.value.value == value


@pytest.mark.parametrize(("tier", "count", "taken", "field"), [
    ("monitor", 1, (), "tier"),
    ("database", 1, (), "shard"),
    ("web_agent", 0, (), "count"),
    ("web_agent", 1, ("lb-7",), "taken"),
    # '$' of re.match accepted a name ending in a newline.
    ("web_agent", 1, ("web-agent-06\n",), "taken"),
    ("web_agent", 1, (True,), "taken"),
    ("web_agent", 1, (100_000,), "taken"),
    ("web_agent", 1, (0,), "taken"),
])
def test_next_nodes_refuses_what_it_cannot_name(tier, count, taken, field):
    plan = fleet.build_fleet({"agents": 20_000}, network=NETWORK)["plan"]
    with pytest.raises(PlanError) as caught:
        topology.next_nodes(plan, tier, count, taken)
    assert caught.value.field == field


def test_next_nodes_refuses_an_explicit_tier():
    plan = fleet.build_fleet({"agents": 20_000}, hosts={"proxy": ["lb1", "lb2"]})["plan"]
    with pytest.raises(PlanError, match="spare pool"):
        topology.next_nodes(plan, "proxy")


def test_a_node_being_added_joins_its_tier_until_the_old_one_retires():
    during = fleet.build_fleet({"agents": 20_000}, network=NETWORK, adding={"web_agent": [3]})
    assert addresses(during, "web_agent") == {"web-agent-01": "10.50.2.10", "web-agent-02": "10.50.2.11",
                                              "web-agent-03": "10.50.2.12"}
    # The next new node skips the one being added.
    assert topology.next_nodes(during["plan"], "web_agent")[0]["name"] == "web-agent-04"
    after = fleet.build_fleet({"agents": 20_000}, network=NETWORK, retired={"web_agent": [1]})
    assert addresses(after, "web_agent") == {"web-agent-02": "10.50.2.11", "web-agent-03": "10.50.2.12"}
    with pytest.raises(PlanError) as caught:
        fleet.build_fleet({"agents": 20_000}, network=NETWORK, retired={"web_agent": [3]}, adding={"web_agent": [3]})
    assert caught.value.field == "adding.web_agent"


def test_database_nodes_are_retired_per_shard_and_their_successors_join_the_same_shard():
    plan = fleet.build_fleet({"agents": 20_000}, network=NETWORK)["plan"]
    new = topology.next_nodes(plan, "database", shard=1)
    assert new == [{"name": "db-01-03", "address": "10.50.5.13", "index": 3, "shard": 1, "field": "naming.database",
                    "tier": "database"}]
    assert topology.next_nodes(plan, "database", 2, taken=[3], shard=1)[1]["name"] == "db-01-05"
    # While the new node catches up it is a third node of the shard; once the first is retired the shard is
    # the second and the third, the second now its planned primary. Nobody else is renamed or re-addressed.
    during = fleet.build_fleet({"agents": 20_000}, network=NETWORK, adding={"database": {1: [3]}})["plan"]
    assert during["shards"][0]["members"] == ["db-01-01", "db-01-02", "db-01-03"]
    after = fleet.build_fleet({"agents": 20_000}, network=NETWORK, retired={"database": {"1": [1]}})["plan"]
    assert after["shards"][0]["members"] == ["db-01-02", "db-01-03"]
    assert after["shards"][0]["host"] == "db-01-02"
    assert after["shards"][0]["writer_address"] == plan["shards"][0]["writer_address"] == "10.50.5.10"
    assert topology.next_nodes(after, "database", shard=1)[0]["name"] == "db-01-04"


def test_a_shard_holds_at_most_31_nodes_over_its_life():
    retired = {"database": {1: list(range(1, 30))}}
    plan = fleet.build_fleet({"agents": 20_000}, network=NETWORK, retired=retired)["plan"]
    assert plan["shards"][0]["members"] == ["db-01-30", "db-01-31"]
    with pytest.raises(PlanError, match="outside 1-31"):
        topology.next_nodes(plan, "database", shard=1)


def test_next_nodes_never_hand_out_an_index_retired_and_adding_would_refuse():
    # Without a network: the /16 of NETWORK has no address for node 99999.
    plan = fleet.build_fleet({"agents": 20_000})["plan"]
    # The highest index the inventory plugin accepts is handed out...
    assert [n["index"] for n in topology.next_nodes(plan, "web_agent", taken=[topology.MAX_INDEX - 1])] == [
        topology.MAX_INDEX]
    # ...one past it is refused, alone or as part of a batch.
    for count, taken in ((1, [topology.MAX_INDEX]), (2, [topology.MAX_INDEX - 1])):
        with pytest.raises(PlanError) as caught:
            topology.next_nodes(plan, "web_agent", count, taken=taken)
        assert (caught.value.field, caught.value.value) == ("naming.web_agent", topology.MAX_INDEX + 1)
        assert "no node index left" in caught.value.reason
    # A tier whose retired indices leave it at the highest index has no successor to give.
    retired = {"web_agent": list(range(1, topology.MAX_INDEX - 1))}
    late = fleet.build_fleet({"agents": 20_000}, retired=retired)["plan"]
    assert late["hosts"]["web_agent"] == ["web-agent-99998", "web-agent-99999"]
    with pytest.raises(PlanError, match="no node index left"):
        topology.next_nodes(late, "web_agent")


def test_a_plan_is_refused_when_its_retired_indices_leave_no_index_for_a_planned_node():
    retired = {"web_agent": list(range(1, topology.MAX_INDEX))}
    with pytest.raises(PlanError) as caught:
        fleet.build_fleet({"agents": 20_000}, retired=retired)
    assert (caught.value.field, caught.value.value) == ("naming.web_agent", topology.MAX_INDEX + 1)


@pytest.mark.parametrize(("shard", "taken", "field", "value"), [
    # True == 1 and 1.0 == 1 as keys: neither is a shard number.
    (True, (), "shard", True),
    (1.0, (), "shard", 1.0),
    # Items that are neither a node of the shard nor an index in its block were added to the used
    # indices as they were (a TypeError, or an index past the block).
    (1, ["db-02-01"], "taken", "db-02-01"),
    (1, ["db-01-03\n"], "taken", "db-01-03\n"),
    (1, [2.5], "taken", 2.5),
    (1, [True], "taken", True),
    (1, [topology.MAX_SHARD_INDEX + 1], "taken", topology.MAX_SHARD_INDEX + 1),
    (1, [[3]], "taken", [3]),
])
def test_next_database_nodes_refuse_what_is_not_a_node_of_the_shard(shard, taken, field, value):
    plan = fleet.build_fleet({"agents": 20_000}, network=NETWORK)["plan"]
    with pytest.raises(PlanError) as caught:
        topology.next_nodes(plan, "database", taken=taken, shard=shard)
    assert (caught.value.field, caught.value.value) == (field, value)


def test_next_database_nodes_stay_inside_the_shards_block():
    plan = fleet.build_fleet({"agents": 20_000}, network=NETWORK)["plan"]
    last = topology.next_nodes(plan, "database", taken=[topology.MAX_SHARD_INDEX - 1], shard=1)
    assert [(n["index"], n["address"]) for n in last] == [(31, "10.50.5.41")]
    with pytest.raises(PlanError) as caught:
        topology.next_nodes(plan, "database", 2, taken=[topology.MAX_SHARD_INDEX - 1], shard=1)
    assert (caught.value.field, caught.value.value) == ("naming.database", topology.SHARD_BLOCK)
    assert "outside 1-31 (a shard's block holds 32 addresses)" in caught.value.reason


def test_the_specs_and_the_records_retirements_merge():
    merged = topology.merge_retired({"web_agent": [1], "database": {1: [1]}},
                                    {"web_agent": [2], "database": {"1": [2], 2: [1]}})
    assert merged == {"web_agent": [1, 2], "database": {1: [1, 2], 2: [1]}}


EXPLICIT_DATABASE = {"database": [{"name": "sql-a", "address": "10.50.5.20", "shard": 1, "role": "primary"},
                                  {"name": "sql-b", "address": "10.50.5.21", "shard": 1}]}


def test_a_shard_of_explicit_hosts_takes_its_writer_address_from_the_network_block():
    network = dict(NETWORK, writer_addresses={1: "10.50.5.9"})
    plan = fleet.build_fleet({"agents": 20_000}, network=network, hosts=EXPLICIT_DATABASE)["plan"]
    assert plan["shards"][0]["writer_address"] == plan["shards"][0]["address"] == "10.50.5.9"
    without = fleet.build_fleet({"agents": 20_000}, network=NETWORK, hosts=EXPLICIT_DATABASE)["plan"]
    assert without["shards"][0]["writer_address"] is None and without["shards"][0]["address"] == "10.50.5.20"


@pytest.mark.parametrize(("writers", "hosts", "field", "value"), [
    ({1: "10.50.5.9"}, None, "network.writer_addresses", [1]),
    ({2: "10.50.5.9"}, EXPLICIT_DATABASE, "network.writer_addresses", 2),
    ({1: "10.99.0.1"}, EXPLICIT_DATABASE, "network.writer_addresses.1", "10.99.0.1"),
    ({1: "ten"}, EXPLICIT_DATABASE, "network.writer_addresses.1", "ten"),
    ({1: "10.50.5.21"}, EXPLICIT_DATABASE, "hosts.database[1]", "10.50.5.21"),
    ({1: "10.50.255.255"}, EXPLICIT_DATABASE, "network.writer_addresses.1", "10.50.255.255"),
    ({1: "10.50.0.0"}, EXPLICIT_DATABASE, "network.writer_addresses.1", "10.50.0.0"),
    ({1: "::ffff:10.50.5.9"}, EXPLICIT_DATABASE, "network.writer_addresses.1", "::ffff:10.50.5.9"),
    ("10.50.5.9", EXPLICIT_DATABASE, "network.writer_addresses", "10.50.5.9"),
])
def test_a_bad_writer_address_is_refused_naming_field_and_value(writers, hosts, field, value):
    with pytest.raises(PlanError) as caught:
        fleet.build_fleet({"agents": 20_000}, network=dict(NETWORK, writer_addresses=writers), hosts=hosts)
    assert (caught.value.field, caught.value.value) == (field, value)
