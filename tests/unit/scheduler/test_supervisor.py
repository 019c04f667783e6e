"""Singleton supervisors on two nodes against one (fake) database: takeover, fencing, restarts, hand-over."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fleet_scheduler.lock import SchedulerState
from fleet_scheduler.supervisor import Supervisor, status_main
from fleet_scheduler.tierconfig import parse_singleton
from sequencer_fakes import Clock, FakeChild


class Node:
    """One app node: its supervisor, the children it started and the statuses it wrote."""

    def __init__(self, name: str, data: dict[str, Any], driver: Any, clock: Clock):
        self.name = name
        self.children: list[FakeChild] = []
        self.epochs: list[int] = []
        self.statuses: list[dict[str, Any]] = []
        self.supervisor = Supervisor(
            parse_singleton({**data, "node": name}),
            driver,
            self._start,
            status_writer=lambda _path, status: self.statuses.append(status),
            clock=clock,
            sleep=lambda _seconds: None,
        )

    def _start(self, state: SchedulerState) -> FakeChild:
        child = FakeChild(f"{self.name}/{state.epoch}")
        self.children.append(child)
        self.epochs.append(state.epoch)
        return child

    @property
    def child(self) -> FakeChild | None:
        return self.children[-1] if self.children else None

    @property
    def running(self) -> bool:
        return self.child is not None and self.child.status is None


@pytest.fixture
def clock(server) -> Clock:
    return Clock(server)


@pytest.fixture
def nodes(singleton_data, driver, clock):
    return Node("app-01", singleton_data, driver, clock), Node("app-02", singleton_data, driver, clock)


def test_the_first_node_runs_the_child_and_the_other_stands_by(server, nodes):
    app1, app2 = nodes
    assert app1.supervisor.step() == 2.0
    assert app2.supervisor.step() == 0.0

    assert (app1.supervisor.role, app2.supervisor.role) == ("active", "standby")
    assert app1.running and app1.epochs == [1] and app2.children == []
    assert server.locks == {"fleet-singleton:probe": app1.supervisor._lock.connection_id}
    # The epoch lives in scheduler_state under the singleton's name; the term is recorded.
    assert (server.state["probe"].holder, server.state["probe"].epoch) == ("app-01", 1)
    assert server.terms[("probe", 1)]["node"] == "app-01"
    active = app1.statuses[-1]
    assert (active["role"], active["holder"], active["epoch"], active["name"]) == ("active", "app-01", 1, "probe")
    assert active["since"] == "2025-01-01T12:00:00.000Z" and active["failover_bound_s"] == 12
    standby = app2.statuses[-1]
    assert (standby["role"], standby["holder"], standby["epoch"]) == ("standby", "app-01", 1)


def test_the_lock_session_ends_after_lock_timeout_of_silence(server, nodes, driver):
    nodes[0].supervisor.step()
    assert server.statements("wait_timeout")[0].params == (10,)
    assert driver.connects[0]["read_timeout"] == 12


def test_keepalives_confirm_the_lock_and_renew_the_heartbeat(server, nodes, clock):
    app1, _ = nodes
    app1.supervisor.step()
    clock.advance(2)
    app1.supervisor.step()
    assert server.statements("IS_USED_LOCK")
    assert server.state["probe"].heartbeat == server.now
    assert server.terms[("probe", 1)]["heartbeat"] == server.now
    # The watchdog leaves a child alone while keepalives are confirmed.
    clock.advance(5.9)
    app1.supervisor.enforce_deadline()
    assert app1.running


def test_without_a_confirmed_keepalive_the_child_stops_before_the_lock_can_move(nodes, clock):
    app1, _ = nodes
    app1.supervisor.step()
    took_over = clock.now
    app1.child.obeys_term = False

    clock.advance(5.9)
    app1.supervisor.enforce_deadline()
    assert app1.child.signals == []
    clock.advance(0.1)  # 10 (lock_timeout) - 3 (stop_timeout) - 1 after the last confirmed keepalive
    app1.supervisor.enforce_deadline()
    assert app1.child.signals == ["TERM"] and app1.supervisor.fenced
    clock.advance(3)
    app1.supervisor.enforce_deadline()
    assert app1.child.signals == ["TERM", "KILL"] and not app1.running
    # Dead one second before the server could free the lock for another node.
    assert clock.now == took_over + 10 - 1
    # The next round hands the singleton back: standby, session closed.
    app1.supervisor.step()
    assert app1.supervisor.role == "standby" and app1.supervisor._lock is None


def test_a_lost_session_stops_the_child_at_once_and_the_standby_takes_over(server, nodes, clock):
    app1, app2 = nodes
    app1.supervisor.step()
    app2.supervisor.step()
    clock.advance(2)
    # The server ended app-01's session (wait_timeout, KILL, restart): its lock went with it.
    server.kill(app1.supervisor._lock.connection_id)

    app1.supervisor.step()
    assert not app1.running and app1.supervisor.role == "standby"
    assert app1.child.signals[0] == "TERM"

    app2.supervisor.step()
    assert app2.supervisor.role == "active" and app2.running and app2.epochs == [2]
    term = server.terms[("probe", 2)]
    assert (term["node"], term["previous_holder"], term["gap_ms"]) == ("app-02", "app-01", 2000)
    assert app2.statuses[-1]["takeover_gap_ms"] == 2000


def test_the_deposed_node_comes_back_as_a_standby(server, nodes, clock):
    app1, app2 = nodes
    app1.supervisor.step()
    server.kill(app1.supervisor._lock.connection_id)
    app1.supervisor.step()
    app2.supervisor.step()
    clock.advance(2)
    app1.supervisor.step()
    assert app1.supervisor.role == "standby" and len(app1.children) == 1
    assert app1.statuses[-1]["holder"] == "app-02"


def test_a_child_that_exits_is_restarted_with_a_growing_delay(nodes, clock):
    app1, _ = nodes
    app1.supervisor.step()
    first = app1.child
    first.exit(1)
    app1.supervisor.step()
    assert len(app1.children) == 1
    clock.advance(1)
    app1.supervisor.step()
    assert len(app1.children) == 2 and app1.epochs == [1, 1]
    app1.child.exit(1)
    app1.supervisor.step()
    clock.advance(1)
    app1.supervisor.step()
    assert len(app1.children) == 2, "the second quick exit waits 2 s"
    clock.advance(1)
    app1.supervisor.step()
    assert len(app1.children) == 3


def test_shutdown_stops_the_child_before_it_releases_the_lock(server, nodes):
    app1, app2 = nodes
    app1.supervisor.step()
    child = app1.child
    released_with_child_running = []
    original = server._release_lock

    def release(connection, params):
        released_with_child_running.append(child.status is None)
        return original(connection, params)

    server._handlers = _patched(server._handlers, "SELECT RELEASE_LOCK", release)
    app1.supervisor.shutdown()

    assert released_with_child_running == [False]
    assert server.state["probe"].holder == "" and "fleet-singleton:probe" not in server.locks
    assert server.terms[("probe", 1)]["ended_at"] == server.now
    app2.supervisor.step()
    assert app2.supervisor.role == "active" and app2.epochs == [2]


def test_an_unreachable_database_keeps_a_node_standing_by(server, nodes):
    server.down.add("172.28.5.10")
    app1, _ = nodes
    assert app1.supervisor.step() == 2.0
    assert app1.supervisor.role == "standby" and app1.children == []
    assert app1.statuses[-1]["holder"] is None


def _patched(handlers, prefix, replacement):
    def patched():
        return [(p, replacement if p == prefix else h) for p, h in handlers()]

    return patched


def test_status_command_prints_every_configured_singleton(tmp_path, capsys):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "probe.json").write_text("{}")
    (tmp_path / "etc" / "fleet-scheduler.json").write_text("{}")
    (tmp_path / "run" / "probe").mkdir(parents=True)
    (tmp_path / "run" / "probe" / "status.json").write_text(json.dumps({"role": "active", "epoch": 3}))
    code = status_main([], config_dir=str(tmp_path / "etc"), run_dir=str(tmp_path / "run"))
    report = json.loads(capsys.readouterr().out)
    assert code == 3
    assert report["probe"] == {"role": "active", "epoch": 3}
    assert report["fleet-scheduler"]["role"] == "stopped"
