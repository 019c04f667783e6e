"""The database agent as the child of a singleton supervisor: no lock of its own, fenced by its epoch."""

from __future__ import annotations

import threading
from datetime import datetime

import pytest
from fleet_scheduler.lock import EpochFence, LeadershipLost
from fleet_scheduler.main import SupervisedScheduler, run
from scheduler_fakes import FakeError, StateRow

NOW = datetime(2025, 1, 1, 12, 0, 0)


@pytest.fixture
def supervised(server, make_config, driver):
    # The supervisor (app-01) took the singleton "fleet-scheduler" in epoch 4.
    server.state["fleet-scheduler"] = StateRow("app-01", 4, NOW, NOW)
    return SupervisedScheduler(make_config(node="app-01"), driver, "fleet-scheduler", "app-01", 4)


def test_the_fence_allows_work_while_the_epoch_is_current(server, driver):
    server.state["fleet-scheduler"] = StateRow("app-01", 4, NOW, NOW)
    connection = driver.connect(host="172.28.5.10", port=3306, db="fleet_shard_1")
    fence = EpochFence(connection, "fleet-scheduler", "app-01", 4, FakeError)
    fence.ensure_held()
    server.state["fleet-scheduler"] = StateRow("app-02", 5, NOW, NOW)
    with pytest.raises(
        LeadershipLost, match="epoch 4 of 'app-01' is over: 'fleet-scheduler' names app-02 with epoch 5"
    ):
        fence.ensure_held()


def test_a_supervised_child_works_without_taking_a_lock(server, supervised):
    server.stale_agents = {"fleet_shard_1": 2, "fleet_shard_2": 1}
    supervised.step()
    supervised.step()
    assert supervised.role == "active" and not supervised.deposed
    assert server.stale_agents == {"fleet_shard_1": 0, "fleet_shard_2": 0}
    assert server.statements("GET_LOCK") == [] and server.locks == {}
    assert server.statements("SELECT holder, epoch FROM scheduler_state")


def test_a_child_of_an_old_epoch_stops_at_its_next_unit_of_work(server, supervised):
    supervised.step()
    server.state["fleet-scheduler"] = StateRow("app-02", 5, NOW, NOW)
    server.stale_agents = {"fleet_shard_1": 2}
    supervised.step()
    assert supervised.deposed
    assert server.stale_agents == {"fleet_shard_1": 2}, "no work under a superseded epoch"
    stop = threading.Event()
    run(supervised, stop)  # returns at once: the loop ends for a deposed child


def test_a_child_started_for_an_epoch_already_over_never_works(server, supervised):
    server.state["fleet-scheduler"] = StateRow("app-02", 5, NOW, NOW)
    supervised.step()
    assert supervised.deposed and supervised.role == "standby"
