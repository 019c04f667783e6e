"""Two app nodes against one (fake) database: one active, one standby, and the handovers."""

from __future__ import annotations

import os
import signal
import threading

import pytest
from fleet_scheduler.main import Scheduler, install_signal_handlers, run
from scheduler_fakes import FakeError


@pytest.fixture
def make_scheduler(make_config, driver, status_files):
    def build(node: str, **overrides) -> Scheduler:
        config = make_config(node=node, **overrides)

        def record(_path, status):
            status_files.setdefault(node, []).append(status)

        return Scheduler(config, driver, status_writer=record, clock=lambda: 0.0)

    return build


JOB_PREFIXES = ("UPDATE agents", "DELETE FROM checkins", "INSERT INTO tenant_stats", "UPDATE tenant_stats")


def job_statements(server, session=None):
    return [s for s in server.statements(session=session) if s.sql.startswith(JOB_PREFIXES)]


def test_first_node_takes_over_and_the_second_stands_by(server, make_scheduler, status_files):
    app1, app2 = make_scheduler("app-01"), make_scheduler("app-02")

    assert app1.step() == 0.0
    assert app2.step() == 0.0

    assert (app1.role, app2.role) == ("active", "standby")
    assert status_files["app-01"][-1] | {"updated": None} == {
        "role": "active",
        "holder": "app-01",
        "epoch": 1,
        "since": "2025-01-01T12:00:00.000Z",
        "node": "app-01",
        "updated": None,
    }
    # The standby reports who is active.
    standby = status_files["app-02"][-1]
    assert (standby["role"], standby["holder"], standby["epoch"]) == ("standby", "app-01", 1)
    assert job_statements(server) == []


def test_the_lock_session_is_short_lived_when_silent(make_scheduler, driver, server):
    make_scheduler("app-01", interval=5, lock_timeout=10).step()
    (lock_connect,) = driver.connects
    assert lock_connect["host"] == "172.28.5.10" and lock_connect["db"] == "fleet_shard_1"
    assert lock_connect["read_timeout"] > 10
    # wait_timeout = 3 x interval + lock_timeout, at least 30 s.
    assert server.statements("wait_timeout")[0].params == (30,)


def test_active_node_works_every_shard_checking_the_lock_before_each_unit(server, make_scheduler):
    server.stale_agents = {"fleet_shard_1": 5, "fleet_shard_2": 2}
    app1 = make_scheduler("app-01")
    app1.step()
    lock_session = server.locks["fleet_scheduler"]

    delay = app1.step()

    assert delay == 5.0
    worked = {s.schema for s in job_statements(server)}
    assert worked == {"fleet_shard_1", "fleet_shard_2"}
    assert server.stale_agents == {"fleet_shard_1": 0, "fleet_shard_2": 0}
    # Walk the log: every job unit (a run of statements up to COMMIT) on a work
    # session is preceded by an IS_USED_LOCK on the lock session.
    checked = False
    for statement in server.log:
        if statement.session == lock_session and statement.sql.startswith("SELECT IS_USED_LOCK"):
            checked = True
        elif statement.session != lock_session and statement.sql.startswith(("UPDATE", "DELETE", "INSERT")):
            assert checked, f"unit of work without a lock check first: {statement.sql}"
        elif statement.session != lock_session and statement.sql == "COMMIT":
            checked = False
    # The round ends with a heartbeat fenced by this node's epoch.
    assert server.statements("SET heartbeat")[-1].params == ("fleet_scheduler", "app-01", 1)


def test_losing_the_session_stops_work_and_the_standby_takes_over_with_a_new_epoch(
    server, make_scheduler, status_files
):
    server.old_checkins = {"fleet_shard_1": 50, "fleet_shard_2": 50}
    app1, app2 = make_scheduler("app-01"), make_scheduler("app-02")
    app1.step()
    app2.step()

    # The database ends app-01's lock session (network cut past wait_timeout, KILL, ...).
    server.kill(server.locks["fleet_scheduler"])
    before = len(job_statements(server))
    app1.step()

    assert app1.role == "standby"
    assert len(job_statements(server)) == before, "a node that lost the lock must not touch any shard"
    assert status_files["app-01"][-1]["role"] == "standby"

    app2.step()
    assert app2.role == "active"
    assert status_files["app-02"][-1]["epoch"] == 2
    app2.step()
    assert server.old_checkins == {"fleet_shard_1": 0, "fleet_shard_2": 0}

    # The old node comes back as a standby and sees the new holder.
    app1.step()
    assert app1.role == "standby"
    assert (status_files["app-01"][-1]["holder"], status_files["app-01"][-1]["epoch"]) == ("app-02", 2)


def test_a_failing_shard_does_not_stop_the_others(server, make_scheduler):
    server.old_checkins = {"fleet_shard_1": 5, "fleet_shard_2": 5}
    server.down.add("172.28.5.11")
    app1 = make_scheduler("app-01")
    app1.step()
    app1.step()

    assert app1.role == "active"
    assert server.old_checkins == {"fleet_shard_1": 0, "fleet_shard_2": 5}

    # A server error mid-job: the shard's session is dropped, the node stays active.
    server.down.clear()
    server.failing["DELETE FROM checkins"] = FakeError(1205, "Lock wait timeout exceeded")
    app1.step()
    assert app1.role == "active"
    server.failing.clear()
    app1.step()
    assert server.old_checkins == {"fleet_shard_1": 0, "fleet_shard_2": 0}


def test_unreachable_coordination_shard_keeps_the_node_standby(server, make_scheduler, status_files):
    server.down.add("172.28.5.10")
    app1 = make_scheduler("app-01")

    assert app1.step() == 5.0
    assert app1.role == "standby"
    assert status_files["app-01"][-1]["holder"] is None

    server.down.clear()
    app1.step()
    assert app1.role == "active"


def test_shutdown_hands_the_lock_over_at_once(server, make_scheduler):
    app1, app2 = make_scheduler("app-01"), make_scheduler("app-02")
    app1.step()
    app2.step()

    app1.shutdown()

    assert server.state["fleet_scheduler"].holder == ""
    assert "fleet_scheduler" not in server.locks
    app2.step()
    assert app2.role == "active"


def test_sigterm_ends_the_loop_and_releases_the_lock(server, make_scheduler):
    app1 = make_scheduler("app-01")
    stop = threading.Event()
    previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    install_signal_handlers(stop)
    try:
        steps = []
        real_step = app1.step

        def step():
            steps.append(real_step())
            if len(steps) == 2:
                os.kill(os.getpid(), signal.SIGTERM)
            if len(steps) > 10:
                raise AssertionError("SIGTERM did not stop the loop")
            return 0.0

        app1.step = step
        run(app1, stop)
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])

    assert stop.is_set()
    assert len(steps) == 2
    assert "fleet_scheduler" not in server.locks
    assert all(connection.closed for connection in server.sessions.values())
