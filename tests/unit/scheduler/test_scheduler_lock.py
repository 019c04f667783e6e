"""The named lock and scheduler_state: acquisition, the ownership check, epochs and fencing."""

from __future__ import annotations

import pytest
from fleet_scheduler.lock import LeadershipLost, SchedulerLock
from scheduler_fakes import FakeError


@pytest.fixture
def open_lock(driver):
    def build(name: str = "fleet_scheduler") -> SchedulerLock:
        connection = driver.connect(host="172.28.5.10", port=3306, db="fleet_shard_1")
        return SchedulerLock(connection, name, FakeError)

    return build


def test_acquire_asks_get_lock_with_the_name_and_timeout(server, open_lock):
    lock = open_lock()
    assert lock.try_acquire(10) is True

    (statement,) = server.statements("GET_LOCK")
    assert statement.sql == "SELECT GET_LOCK(%s, %s), CONNECTION_ID()"
    assert statement.params == ("fleet_scheduler", 10)
    assert lock.connection_id == lock.connection.session_id
    assert server.locks == {"fleet_scheduler": lock.connection_id}


def test_a_second_session_does_not_get_a_held_lock(open_lock):
    first, second = open_lock(), open_lock()
    assert first.try_acquire(10) is True
    assert second.try_acquire(10) is False


def test_ensure_held_compares_the_owner_with_this_session(server, open_lock):
    lock = open_lock()
    lock.try_acquire(10)
    lock.ensure_held()
    assert server.statements("IS_USED_LOCK")[-1].params == ("fleet_scheduler",)

    # Another session got the lock (e.g. after ours was killed and a new one opened).
    server.locks["fleet_scheduler"] = 999
    with pytest.raises(LeadershipLost, match="held by connection 999, not by this session"):
        lock.ensure_held()

    del server.locks["fleet_scheduler"]
    with pytest.raises(LeadershipLost, match="held by nobody"):
        lock.ensure_held()


def test_ensure_held_fails_when_the_session_is_gone(server, open_lock):
    lock = open_lock()
    lock.try_acquire(10)
    server.kill(lock.connection_id)
    with pytest.raises(LeadershipLost, match=r"the lock session failed: \(2013\) Lost connection"):
        lock.ensure_held()


def test_ensure_held_before_acquiring_is_a_loss(open_lock):
    with pytest.raises(LeadershipLost):
        open_lock().ensure_held()


def test_each_takeover_bumps_the_epoch(server, open_lock):
    first = open_lock()
    first.try_acquire(10)
    state = first.take_over("app-01")
    assert (state.holder, state.epoch) == ("app-01", 1)
    assert server.statements("INSERT INTO scheduler_state")[0].params == ("fleet_scheduler", "app-01")
    assert "epoch = epoch + 1" in server.statements("INSERT INTO scheduler_state")[0].sql
    # The takeover is committed on the lock session.
    assert server.log[-1].sql == "COMMIT" and server.log[-1].session == first.connection_id

    server.kill(first.connection_id)
    second = open_lock()
    assert second.try_acquire(10) is True
    state = second.take_over("app-02")
    assert (state.holder, state.epoch) == ("app-02", 2)


def test_heartbeat_is_fenced_by_holder_and_epoch(server, open_lock):
    lock = open_lock()
    lock.try_acquire(10)
    lock.take_over("app-01")
    lock.heartbeat("app-01", 1)
    assert server.statements("SET heartbeat")[-1].params == ("fleet_scheduler", "app-01", 1)

    # Someone else recorded a takeover meanwhile.
    server.state["fleet_scheduler"].holder = "app-02"
    server.state["fleet_scheduler"].epoch = 2
    with pytest.raises(LeadershipLost, match="no longer names 'app-01' with epoch 1"):
        lock.heartbeat("app-01", 1)


def test_release_clears_the_holder_and_frees_the_lock(server, open_lock):
    lock = open_lock()
    lock.try_acquire(10)
    lock.take_over("app-01")
    lock.release("app-01", 1)

    assert server.state["fleet_scheduler"].holder == ""
    assert "fleet_scheduler" not in server.locks
    resign = server.statements("SET holder = ''")[0]
    assert resign.params == ("fleet_scheduler", "app-01", 1)


def test_read_state_before_any_takeover_is_none(open_lock):
    assert open_lock().read_state() is None
