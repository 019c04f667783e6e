"""Who is a shard's primary, from each node's state: the rules the database role converges by."""

import pytest

from ansible_collections.fleetscale.split.plugins.module_utils import replication
from ansible_collections.fleetscale.split.plugins.module_utils.errors import PlanError


def node(name, read_only=True, replicating=False, gtid=""):
    return {"name": name, "read_only": read_only, "replicating": replicating, "gtid": gtid}


def test_a_new_shard_opens_its_planned_primary_and_seeds_the_rest():
    state = replication.shard_state(1, [node("db-01-01"), node("db-01-02")], "db-01-01")
    assert state == {"primary": "db-01-01", "open_writes": True, "seed": ["db-01-02"], "join": []}


def test_the_writable_node_is_the_primary_even_when_the_plan_named_another():
    members = [node("db-01-01", replicating=True, gtid="0-1002-9"), node("db-01-02", read_only=False, gtid="0-1002-9")]
    state = replication.shard_state(1, members, "db-01-01")
    assert state == {"primary": "db-01-02", "open_writes": False, "seed": [], "join": []}


def test_a_new_replica_beside_a_running_primary_is_seeded():
    members = [node("a", read_only=False, gtid="0-1001-40"), node("b", replicating=True, gtid="0-1001-40"), node("c")]
    assert replication.shard_state(1, members, "a")["seed"] == ["c"]


def test_a_node_with_data_that_replicates_from_nobody_is_named_not_seeded():
    members = [node("a", read_only=False, gtid="0-1001-40"), node("b", gtid="0-1001-38")]
    assert replication.shard_state(1, members, "a")["join"] == ["b"]


def test_two_writable_nodes_are_refused():
    with pytest.raises(PlanError) as caught:
        replication.shard_state(2, [node("a", read_only=False), node("b", read_only=False)], "a")
    assert caught.value.value == ["a", "b"]
    assert "shard 2 has 2 writable nodes" in caught.value.reason


def test_no_writable_node_after_replication_began_is_a_failover_not_a_converge():
    members = [node("a", gtid="0-1001-40"), node("b", replicating=True, gtid="0-1001-40")]
    with pytest.raises(PlanError) as caught:
        replication.shard_state(3, members, "a")
    assert "database_failover.yml -e database_shard=3" in caught.value.reason


def test_a_replica_holding_transactions_makes_the_shard_not_new():
    with pytest.raises(PlanError, match="not new"):
        replication.shard_state(1, [node("a"), node("b", gtid="0-1002-1")], "a")


@pytest.mark.parametrize(("members", "planned", "field"), [
    ([], "a", "members"),
    ([node("a")], "z", "planned_primary"),
    ([{"name": "a", "read_only": "yes", "replicating": False, "gtid": ""}], "a", "members[0].read_only"),
    ([{"name": "a", "read_only": True, "replicating": False}], "a", "members[0].gtid"),
])
def test_bad_input_names_the_field(members, planned, field):
    with pytest.raises(PlanError) as caught:
        replication.shard_state(1, members, planned)
    assert caught.value.field == field


def test_the_most_advanced_replica_is_chosen():
    candidates = [{"name": "b", "gtid": "0-1001-40"}, {"name": "c", "gtid": "0-1001-42"}, {"name": "d", "gtid": ""}]
    assert replication.most_advanced(1, candidates) == "c"


def test_several_domains_must_all_be_covered():
    candidates = [{"name": "b", "gtid": "0-1001-40,1-1001-7"}, {"name": "c", "gtid": "0-1001-40,1-1001-9"}]
    assert replication.most_advanced(1, candidates) == "c"


def test_replicas_whose_histories_differ_are_not_guessed_between():
    candidates = [{"name": "b", "gtid": "0-1001-41,1-1001-3"}, {"name": "c", "gtid": "0-1001-40,1-1001-9"}]
    with pytest.raises(PlanError, match="histories differ") as caught:
        replication.most_advanced(2, candidates)
    assert caught.value.value == ["b at 0-1001-41,1-1001-3", "c at 0-1001-40,1-1001-9"]


@pytest.mark.parametrize(("candidates", "field", "words"), [
    ([], "candidates", "nothing to promote"),
    ([{"name": "b", "gtid": "0-1001"}], "candidates[0].gtid", "not a GTID"),
    ([{"name": "b", "gtid": "0-1-2,0-1-3"}], "candidates[0].gtid", "domain 0 twice"),
    ([{"name": "b"}], "candidates[0]", "name and gtid"),
    # A digit to str.isdigit() that int() cannot read: refused, not a ValueError.
    ([{"name": "b", "gtid": "0-1001-4\u00b2"}], "candidates[0].gtid", "not a GTID"),
])
def test_bad_candidates_are_named(candidates, field, words):
    with pytest.raises(PlanError) as caught:
        replication.most_advanced(1, candidates)
    assert caught.value.field == field and words in caught.value.reason


SEMI_SYNC_ON = {"rpl_semi_sync_master_status": "ON", "rpl_semi_sync_master_clients": "1",
                "rpl_semi_sync_master_no_tx": "0"}
RUNNING = {"Master_Host": "172.28.5.11", "Slave_IO_Running": "Yes", "Slave_SQL_Running": "Yes",
           "Seconds_Behind_Master": 0, "Last_IO_Error": "", "Last_SQL_Error": ""}


def test_a_semi_synchronous_primary_and_a_running_replica_are_healthy():
    primary = replication.replication_health("a", {"read_only": False, "status": SEMI_SYNC_ON, "replica": {}}, 1000)
    replica = replication.replication_health("b", {"read_only": True, "status": {}, "replica": RUNNING}, 1000)
    assert primary == {"problems": [], "summary": "a: primary, semi-synchronous with 1 replica(s)"}
    assert replica == {"problems": [], "summary": "b: replica of 172.28.5.11, 0 s behind"}


def test_a_primary_fallen_back_to_asynchronous_is_a_problem():
    status = dict(SEMI_SYNC_ON, rpl_semi_sync_master_status="OFF", rpl_semi_sync_master_clients="0",
                  rpl_semi_sync_master_no_tx="17")
    health = replication.replication_health("a", {"read_only": False, "status": status, "replica": {}}, 1000)
    assert len(health["problems"]) == 1
    assert "ASYNCHRONOUSLY (semi-sync OFF, 0 replica(s) connected, 17 commit(s)" in health["problems"][0]
    assert "within 1000 ms" in health["problems"][0]


def test_semi_sync_on_without_a_connected_replica_is_a_problem():
    status = dict(SEMI_SYNC_ON, rpl_semi_sync_master_clients="0")
    assert replication.replication_health("a", {"read_only": False, "status": status, "replica": {}}, 1000)["problems"]


def test_a_replica_whose_sql_thread_stopped_is_named_with_its_error():
    replica = dict(RUNNING, Slave_SQL_Running="No", Last_SQL_Error="Duplicate entry")
    health = replication.replication_health("b", {"read_only": True, "status": {}, "replica": replica}, 1000)
    assert health["problems"] == ["b does not replicate from 172.28.5.11: SQL thread(s) not running (Duplicate entry)"]


def test_a_read_only_node_that_replicates_from_nobody_is_a_problem():
    health = replication.replication_health("b", {"read_only": True, "status": {}, "replica": {}}, 1000)
    assert "replicates from nobody" in health["problems"][0]


def test_a_state_without_read_only_is_refused_naming_the_node():
    with pytest.raises(PlanError) as caught:
        replication.replication_health("b", {"status": {}}, 1000)
    assert "b: must be a mapping with read_only" in caught.value.reason


def result(name, read_only=1, gtid="", replica=()):
    return {"item": name, "query_result": [[{"read_only": read_only, "gtid": gtid}], list(replica)]}


def test_member_states_read_each_nodes_answers_and_count_a_restarted_primary_as_writable():
    states = replication.member_states(
        [result("a", 1, "0-1001-9"), result("b", 1, "0-1001-9", [RUNNING]),
         {"item": "c", "unreachable": True, "msg": "no route"}], was_writable=["a"])
    assert [(s["name"], s["answered"], s["read_only"], s["live_read_only"], s["replicating"]) for s in states] == [
        ("a", True, False, True, False), ("b", True, True, True, True), ("c", False, True, True, False)]
    assert states[1]["replica_status"] == RUNNING and states[0]["gtid"] == "0-1001-9"


def test_a_node_that_does_not_answer_is_left_out_of_the_decision():
    members = [node("a", read_only=False, gtid="0-1001-9"), node("b", replicating=True, gtid="0-1001-9"),
               dict(node("c"), answered=False), node("d")]
    assert replication.shard_state(1, members, "a") == {"primary": "a", "open_writes": False, "seed": ["d"],
                                                       "join": []}


def test_a_new_shard_is_not_opened_while_a_node_is_silent():
    members = [node("a"), dict(node("b"), answered=False)]
    with pytest.raises(PlanError, match="opened as new only when every node answers"):
        replication.shard_state(1, members, "a")
