"""The sequencer on two nodes against one (fake) database: one run per due time, caps, retries, leases."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from fleet_scheduler.ledger import Ledger
from fleet_scheduler.sequencer import Sequencer
from fleet_scheduler.tierconfig import parse_sequencer
from sequencer_fakes import Clock, FakeChild

T0 = datetime(2025, 1, 1, 12, 0, 0)


class Output:
    """Stands in for the temporary file a run's output goes to."""

    def __init__(self, text: bytes = b""):
        self.data = text
        self.closed = False

    def seek(self, offset: int, whence: int = 0) -> int:
        return len(self.data) if whence == 2 else offset

    def read(self, size: int) -> bytes:
        return self.data[-size:] if size else b""

    def close(self) -> None:
        self.closed = True


class Node:
    """One app node's sequencer, with the children it started."""

    def __init__(self, name: str, data: dict[str, Any], driver: Any, clock: Clock):
        self.name = name
        self.children: dict[int, FakeChild] = {}
        self.started: list[tuple[str, int, int]] = []
        self.outputs: list[Output] = []
        self.statuses: list[dict[str, Any]] = []
        self.sequencer = Sequencer(
            parse_sequencer({**data, "node": name}),
            driver,
            self._spawn,
            status_writer=lambda _path, status: self.statuses.append(status),
            clock=clock,
            output_factory=self._output,
        )

    def _output(self) -> Output:
        self.outputs.append(Output())
        return self.outputs[-1]

    def _spawn(self, job, claim, output) -> FakeChild:
        child = FakeChild(f"{job.name}/{claim.run_id}")
        self.children[claim.epoch] = child
        self.started.append((job.name, claim.run_id, claim.attempt))
        output.data = f"output of {job.name} run {claim.run_id} attempt {claim.attempt}".encode()
        return child

    def finish_all(self, status: int = 0) -> None:
        for child in self.children.values():
            if child.status is None:
                child.exit(status)

    @property
    def running(self) -> int:
        return sum(1 for child in self.children.values() if child.status is None)


@pytest.fixture
def clock(ledger_server) -> Clock:
    ledger_server.now = T0
    return Clock(ledger_server)


@pytest.fixture
def make_node(sequencer_data, ledger_driver, clock):
    def build(name: str, jobs: list[dict[str, Any]] | None = None, **overrides: Any) -> Node:
        data = {**sequencer_data, **overrides}
        if jobs is not None:
            data["jobs"] = jobs
        return Node(name, data, ledger_driver, clock)

    return build


def test_each_due_time_gets_one_run_on_one_node(ledger_server, make_node, clock):
    app1, app2 = make_node("app-01"), make_node("app-02")
    app1.sequencer.step()  # registers the job: its first due time is the next second
    app2.sequencer.step()
    for _ in range(5):
        clock.advance(1)
        app1.sequencer.step()
        app2.sequencer.step()
        app1.finish_all()
        app2.finish_all()
    runs = ledger_server.runs_of("tick")
    assert [run.due_at.second for run in runs] == [1, 2, 3, 4, 5]
    assert len(app1.started) + len(app2.started) == 5
    assert sorted(run_id for _job, run_id, _attempt in app1.started + app2.started) == [1, 2, 3, 4, 5]


def test_no_due_run_is_lost_while_a_node_is_down(ledger_server, make_node, clock):
    app1, app2 = make_node("app-01"), make_node("app-02")
    app1.sequencer.step()
    app2.sequencer.step()
    for _ in range(6):  # app-01 is down: app-02 alone creates and runs every due run
        clock.advance(1)
        app2.sequencer.step()
        app2.finish_all()
    clock.advance(0.5)
    app2.sequencer.step()
    assert [run.due_at.second for run in ledger_server.runs_of("tick")] == [1, 2, 3, 4, 5, 6]
    assert all(run.state == "succeeded" for run in ledger_server.runs_of("tick"))
    assert app1.started == []


def test_runs_of_a_stalled_schedule_are_created_up_to_the_catchup(ledger_server, make_node, clock):
    app1 = make_node("app-01", catchup=3)
    app1.sequencer.step()
    app1.sequencer._drop_session()
    clock.advance(10)
    app1.sequencer.step()
    assert [run.due_at.second for run in ledger_server.runs_of("tick")] == [8, 9, 10]
    assert ledger_server.jobs["tick"]["next_due"] == datetime(2025, 1, 1, 12, 0, 11)


def test_the_global_and_per_node_caps_hold_under_overload(ledger_server, make_node, clock):
    job = {"name": "pair", "command": "x", "schedule": "*:*:*", "max_parallel": 2, "node_max_parallel": 1}
    app1, app2, app3 = (make_node(name, [job], claim_delay=0.0) for name in ("app-01", "app-02", "app-03"))
    for node in (app1, app2, app3):
        node.sequencer.step()
    for _ in range(6):
        clock.advance(1)
        for node in (app1, app2, app3):
            node.sequencer.step()
        running = [run for run in ledger_server.runs.values() if run.state == "running"]
        assert len(running) <= 2
        assert all(node.running <= 1 for node in (app1, app2, app3))
    # Overloaded (nobody finishes): the due runs wait instead of piling onto the nodes.
    assert sum(1 for run in ledger_server.runs.values() if run.state == "pending") == 4


def test_a_node_runs_at_most_its_own_number_of_runs(ledger_server, make_node, clock):
    jobs = [{"name": f"job-{index}", "command": "x", "schedule": "*:*:*"} for index in range(5)]
    app1 = make_node("app-01", jobs, node_max_parallel=3, claim_delay=0.0)
    app1.sequencer.step()
    clock.advance(1)
    app1.sequencer.step()
    assert app1.running == 3
    assert app1.statuses[-1]["running"] and len(app1.statuses[-1]["running"]) == 3


def test_the_least_loaded_node_claims_first(ledger_server, make_node, clock):
    long = {"name": "long", "command": "x", "schedule": "*:*:*", "timeout": 100}
    other = {"name": "other", "command": "x", "schedule": "*:*:0/2"}
    busy = make_node("app-01", [long, other], node_max_parallel=2, claim_delay=1.0)
    idle = make_node("app-02", [long, other], node_max_parallel=2, claim_delay=1.0)
    busy.sequencer.step()
    idle.sequencer.step()
    clock.advance(1)
    busy.sequencer.step()  # idle so far: claims the first run of long at once
    assert busy.started == [("long", 1, 1)]
    clock.advance(1)
    # app-01 is half busy: it waits 0.5 s before claiming a due run; app-02 is idle and takes it.
    busy.sequencer.step()
    assert len(busy.started) == 1
    idle.sequencer.step()
    assert [job for job, _run, _attempt in idle.started] == ["other"]
    assert ledger_server.statements("INTERVAL %s SECOND AND job IN")[-2][2][0] == 0.5


def test_a_failed_run_is_retried_with_backoff_then_failed_with_its_output(ledger_server, make_node, clock):
    job = {"name": "broken", "command": "x", "schedule": "*:*:0/30", "max_retries": 2, "backoff": 1}
    app1 = make_node("app-01", [job])
    app1.sequencer.step()
    clock.advance(30)
    app1.sequencer.step()
    waits = []
    for _ in range(3):
        app1.finish_all(status=1)
        app1.sequencer.step()
        run = ledger_server.runs_of("broken")[0]
        if run.state == "pending":
            waits.append((run.not_before - ledger_server.now).total_seconds())
            clock.advance(waits[-1])
            app1.sequencer.step()
    assert waits == [1.0, 2.0]
    run = ledger_server.runs_of("broken")[0]
    assert (run.state, run.attempt, run.failures, run.exit_code) == ("failed", 3, 3, 1)
    attempts = sorted(ledger_server.attempts.values(), key=lambda a: a.attempt)
    assert [(a.attempt, a.outcome, a.exit_code) for a in attempts] == [
        (1, "failed", 1),
        (2, "failed", 1),
        (3, "failed", 1),
    ]
    assert attempts[-1].output == "output of broken run 1 attempt 3"
    assert app1.sequencer.counters["failed"] == 1 and app1.sequencer.counters["retried"] == 2


def test_a_run_past_its_timeout_is_stopped_and_counted_as_timed_out(ledger_server, make_node, clock):
    job = {"name": "slow", "command": "x", "schedule": "*:*:0/30", "timeout": 5}
    app1 = make_node("app-01", [job])
    app1.sequencer.step()
    clock.advance(30)
    app1.sequencer.step()
    child = next(iter(app1.children.values()))
    child.obeys_term = False
    clock.advance(5)
    app1.sequencer.enforce_deadlines()
    assert child.signals == ["TERM"]
    clock.advance(3)
    app1.sequencer.enforce_deadlines()
    assert child.signals == ["TERM", "KILL"]
    app1.sequencer.step()
    (attempt,) = ledger_server.attempts.values()
    assert (attempt.outcome, attempt.exit_code) == ("timeout", -9)
    assert ledger_server.runs_of("slow")[0].state == "failed"


def test_a_run_whose_node_is_cut_off_is_fenced_there_and_runs_again_elsewhere(ledger_server, make_node, clock):
    job = {"name": "long", "command": "x", "schedule": "*:*:0/30", "timeout": 100}
    app1, app2 = make_node("app-01", [job]), make_node("app-02", [job])
    app1.sequencer.step()
    app2.sequencer.step()
    clock.advance(30)
    app1.sequencer.step()
    child = next(iter(app1.children.values()))
    # app-01 loses the database: no renewal from now on. Its watchdog stops the run
    # 10 (lease) - 3 (stop) - 1 s after the claim, before the lease can expire.
    app1.sequencer._ledger.connection.alive = False
    clock.advance(2)
    app1.sequencer.step()
    clock.advance(4)
    app1.sequencer.enforce_deadlines()
    assert child.signals == ["TERM"]
    clock.advance(4.5)  # the lease ended 10 s after the claim
    app2.sequencer.step()
    run = ledger_server.runs_of("long")[0]
    assert run.state == "running" and run.node == "app-02" and run.attempt == 2
    assert [a.outcome for a in sorted(ledger_server.attempts.values(), key=lambda a: a.id)] == ["lost", "running"]
    # app-01 comes back: its late completion is refused, the re-run stands.
    app1.sequencer._drop_session()
    app1.sequencer.step()
    assert app1.sequencer.counters["refused"] == 1
    assert ledger_server.runs_of("long")[0].node == "app-02"


def test_a_restarted_sequencer_takes_back_what_its_predecessor_left_running(ledger_server, make_node, clock):
    job = {"name": "long", "command": "x", "schedule": "*:*:0/30", "timeout": 100}
    app1 = make_node("app-01", [job])
    app1.sequencer.step()
    clock.advance(30)
    app1.sequencer.step()
    assert ledger_server.runs_of("long")[0].state == "running"
    again = make_node("app-01", [job])  # the node rebooted: a new process, same node name
    again.sequencer.step()
    (first, second) = sorted(ledger_server.attempts.values(), key=lambda a: a.id)
    assert first.outcome == "lost" and second.node == "app-01" and second.attempt == 2


def test_renewals_keep_a_long_run_alive(ledger_server, make_node, clock):
    job = {"name": "long", "command": "x", "schedule": "*:*:0/30", "timeout": 100}
    app1, app2 = make_node("app-01", [job]), make_node("app-02", [job])
    app1.sequencer.step()
    clock.advance(30)
    app1.sequencer.step()
    for _ in range(10):
        clock.advance(2)
        app1.sequencer.step()
        app2.sequencer.step()
        app1.sequencer.enforce_deadlines()
    assert app1.running == 1 and app2.started == []
    assert [a.outcome for a in ledger_server.attempts.values()] == ["running"]


def test_shutdown_stops_the_runs_and_hands_them_back(ledger_server, make_node, clock):
    job = {"name": "long", "command": "x", "schedule": "*:*:0/30", "timeout": 100, "max_retries": 0}
    app1 = make_node("app-01", [job])
    app1.sequencer.step()
    clock.advance(30)
    app1.sequencer.step()
    app1.sequencer.shutdown()
    run = ledger_server.runs_of("long")[0]
    # Not a failure of the job: the run is pending again, for any node.
    assert (run.state, run.failures, run.lost, run.node) == ("pending", 0, 1, "")
    assert [a.outcome for a in ledger_server.attempts.values()] == ["fenced"]


def test_every_statement_is_timed_on_the_database_clock(ledger_server, make_node, clock):
    app1 = make_node("app-01")
    app1.sequencer.step()
    clock.advance(1)
    app1.sequencer.step()
    assert ledger_server.statements("SELECT NOW(3)")
    assert ledger_server.statements("FOR UPDATE SKIP LOCKED")
    ledger = Ledger(app1.sequencer._ledger.connection)
    assert ledger.now() == ledger_server.now
