"""A fake of the sequencer's tables on MariaDB, and fake children, for the sequencer tests.

FakeLedgerServer answers the statements of fleet_scheduler.ledger with the
semantics the sequencer relies on: one clock (the server's NOW(3)), row locks
per session for FOR UPDATE (SKIP LOCKED skips rows another session holds; the
locks go at COMMIT, ROLLBACK or the end of the session), the unique due time
per job, and a log of every statement. Changes are applied at once (there is
no rollback of data: the sequencer never relies on one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from scheduler_fakes import FakeError, normalize


@dataclass
class RunRow:
    id: int
    job: str
    due_at: datetime
    not_before: datetime
    state: str = "pending"
    attempt: int = 0
    failures: int = 0
    lost: int = 0
    epoch: int = 0
    node: str = ""
    lease_until: datetime | None = None
    ended_at: datetime | None = None
    exit_code: int | None = None


@dataclass
class AttemptRow:
    id: int
    run_id: int
    job: str
    due_at: datetime
    attempt: int
    node: str
    started_at: datetime
    ended_at: datetime | None = None
    outcome: str = "running"
    exit_code: int | None = None
    output: str | None = None


@dataclass
class FakeLedgerServer:
    now: datetime = datetime(2025, 1, 1, 12, 0, 0)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: dict[int, RunRow] = field(default_factory=dict)
    attempts: dict[int, AttemptRow] = field(default_factory=dict)
    # ("job", name) or ("run", id) -> the session holding the row lock.
    row_locks: dict[tuple[str, Any], int] = field(default_factory=dict)
    log: list[tuple[int, str, Any]] = field(default_factory=list)
    sessions: dict[int, FakeLedgerConnection] = field(default_factory=dict)
    down: bool = False
    next_session: int = 500

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def open_session(self, kwargs: dict[str, Any]) -> FakeLedgerConnection:
        if self.down:
            raise FakeError(2003, f"Can't connect to server on '{kwargs['host']}' (115)")
        self.next_session += 1
        connection = FakeLedgerConnection(self, self.next_session, kwargs)
        self.sessions[connection.session_id] = connection
        return connection

    def end_session(self, session: int) -> None:
        self.release(session)
        self.sessions[session].alive = False

    def release(self, session: int) -> None:
        self.row_locks = {key: owner for key, owner in self.row_locks.items() if owner != session}

    def statements(self, fragment: str = "") -> list[tuple[int, str, Any]]:
        return [entry for entry in self.log if fragment in entry[1]]

    def runs_of(self, job: str) -> list[RunRow]:
        return sorted((run for run in self.runs.values() if run.job == job), key=lambda run: run.due_at)

    # -- statements ----------------------------------------------------------------

    def execute(self, session: int, sql: str, params: Any) -> tuple[list[tuple[Any, ...]], int, int | None]:
        """(rows, rowcount, lastrowid) of one statement."""
        text = normalize(sql)
        self.log.append((session, text, params))
        if self.down:
            raise FakeError(2013, "Lost connection to server during query")
        params = tuple(params or ())
        for prefix, handler in self._handlers():
            if text.startswith(prefix):
                return handler(session, text, params)
        raise AssertionError(f"the fake ledger server does not know: {text}")

    def _handlers(self) -> list[tuple[str, Any]]:
        return [
            ("SET ", lambda _s, _t, _p: ([], 0, None)),
            ("SELECT NOW(3)", lambda _s, _t, _p: ([(self.now,)], 1, None)),
            ("INSERT INTO sequencer_jobs", self._register),
            ("SELECT job, next_due FROM sequencer_jobs", self._due_jobs),
            ("INSERT INTO sequencer_runs", self._add_run),
            ("UPDATE sequencer_jobs SET next_due", self._advance_job),
            ("SELECT job, COUNT(*) FROM sequencer_runs", self._claimable),
            ("SELECT job FROM sequencer_jobs WHERE job = %s FOR UPDATE SKIP LOCKED", self._lock_job),
            ("SELECT COUNT(*) FROM sequencer_runs", self._count_running),
            ("SELECT id, due_at, attempt, failures FROM sequencer_runs", self._pick_pending),
            ("INSERT INTO sequencer_attempts", self._start_attempt),
            ("UPDATE sequencer_runs SET state = 'running'", self._mark_running),
            ("UPDATE sequencer_runs SET lease_until", self._renew),
            ("UPDATE sequencer_runs SET state = %s, failures", self._finish_run),
            ("UPDATE sequencer_attempts SET ended_at = NOW(3), outcome = %s", self._finish_attempt),
            (
                "SELECT id, epoch, job, node, lost FROM sequencer_runs WHERE state = 'running' AND lease_until",
                self._expired,
            ),
            ("SELECT id, epoch, job, node, lost FROM sequencer_runs WHERE state = 'running' AND node", self._left),
            ("UPDATE sequencer_attempts SET ended_at = NOW(3), outcome = 'lost'", self._lose_attempt),
            ("UPDATE sequencer_runs SET state = %s, lost = lost + 1", self._requeue),
            ("DELETE FROM", lambda _s, _t, _p: ([], 0, None)),
        ]

    def _lock(self, session: int, key: tuple[str, Any]) -> bool:
        owner = self.row_locks.get(key)
        if owner is not None and owner != session:
            return False
        self.row_locks[key] = session
        return True

    def _register(self, _session: int, _text: str, params: tuple[Any, ...]) -> Any:
        job, schedule, next_due = params
        row = self.jobs.get(job)
        if row is None:
            self.jobs[job] = {"schedule": schedule, "next_due": next_due}
            return [], 1, None
        if row["schedule"] != schedule or row["next_due"] is None:
            row["next_due"] = next_due
        row["schedule"] = schedule
        return [], 2, None

    def _due_jobs(self, session: int, _text: str, params: tuple[Any, ...]) -> Any:
        rows = []
        for name in params:
            row = self.jobs.get(name)
            if (
                row
                and row["next_due"] is not None
                and row["next_due"] <= self.now
                and self._lock(session, ("job", name))
            ):
                rows.append((name, row["next_due"]))
        return rows, len(rows), None

    def _add_run(self, _session: int, _text: str, params: tuple[Any, ...]) -> Any:
        job, due_at, not_before = params
        if any(run.job == job and run.due_at == due_at for run in self.runs.values()):
            return [], 0, None
        run_id = len(self.runs) + 1
        self.runs[run_id] = RunRow(run_id, job, due_at, not_before)
        return [], 1, run_id

    def _advance_job(self, _session: int, _text: str, params: tuple[Any, ...]) -> Any:
        following, job = params
        self.jobs[job]["next_due"] = following
        return [], 1, None

    def _claimable(self, _session: int, _text: str, params: tuple[Any, ...]) -> Any:
        delay, names = params[0], set(params[1:])
        limit = self.now - timedelta(seconds=float(delay))
        found: dict[str, list[RunRow]] = {}
        for run in self.runs.values():
            if run.state == "pending" and run.not_before <= limit and run.job in names:
                found.setdefault(run.job, []).append(run)
        rows = sorted(found.items(), key=lambda item: min(run.due_at for run in item[1]))
        return [(job, len(runs)) for job, runs in rows], len(rows), None

    def _lock_job(self, session: int, _text: str, params: tuple[Any, ...]) -> Any:
        (job,) = params
        if job in self.jobs and self._lock(session, ("job", job)):
            return [(job,)], 1, None
        return [], 0, None

    def _count_running(self, _session: int, _text: str, params: tuple[Any, ...]) -> Any:
        (job,) = params
        return [(sum(1 for run in self.runs.values() if run.job == job and run.state == "running"),)], 1, None

    def _pick_pending(self, session: int, _text: str, params: tuple[Any, ...]) -> Any:
        job, delay, limit = params
        edge = self.now - timedelta(seconds=float(delay))
        picked = []
        for run in sorted(self.runs.values(), key=lambda run: (run.due_at, run.id)):
            if len(picked) >= limit:
                break
            if (
                run.job == job
                and run.state == "pending"
                and run.not_before <= edge
                and self._lock(session, ("run", run.id))
            ):
                picked.append((run.id, run.due_at, run.attempt, run.failures))
        return picked, len(picked), None

    def _start_attempt(self, _session: int, _text: str, params: tuple[Any, ...]) -> Any:
        run_id, job, due_at, attempt, node = params
        if any(a.run_id == run_id and a.attempt == attempt for a in self.attempts.values()):
            raise FakeError(1062, f"Duplicate entry '{run_id}-{attempt}' for key 'uq_sequencer_attempts_run'")
        attempt_id = 1000 + len(self.attempts) + 1
        self.attempts[attempt_id] = AttemptRow(attempt_id, run_id, job, due_at, attempt, node, self.now)
        return [], 1, attempt_id

    def _mark_running(self, _session: int, _text: str, params: tuple[Any, ...]) -> Any:
        attempt, epoch, node, lease, run_id = params
        run = self.runs[run_id]
        run.state, run.attempt, run.epoch, run.node = "running", attempt, epoch, node
        run.lease_until = self.now + timedelta(seconds=lease)
        return [], 1, None

    def _renew(self, _session: int, _text: str, params: tuple[Any, ...]) -> Any:
        lease, run_id, epoch = params
        run = self.runs.get(run_id)
        if run is None or run.epoch != epoch or run.state != "running":
            return [], 0, None
        run.lease_until = self.now + timedelta(seconds=lease)
        return [], 1, None

    def _finish_run(self, _session: int, _text: str, params: tuple[Any, ...]) -> Any:
        state, failures, lost, _state, delay, _again, exit_code, run_id, epoch = params
        run = self.runs.get(run_id)
        if run is None or run.epoch != epoch or run.state != "running":
            return [], 0, None
        run.state = state
        run.failures += failures
        run.lost += lost
        run.node = "" if state == "pending" else run.node
        run.not_before = self.now + timedelta(seconds=delay)
        run.lease_until = None
        run.ended_at = None if state == "pending" else self.now
        run.exit_code = exit_code
        return [], 1, None

    def _finish_attempt(self, _session: int, _text: str, params: tuple[Any, ...]) -> Any:
        outcome, exit_code, output, attempt_id = params
        attempt = self.attempts.get(attempt_id)
        if attempt is None or attempt.outcome != "running":
            return [], 0, None
        attempt.ended_at, attempt.outcome, attempt.exit_code, attempt.output = self.now, outcome, exit_code, output
        return [], 1, None

    def _running_rows(self, session: int, wanted: Any) -> Any:
        rows = []
        for run in sorted(self.runs.values(), key=lambda run: run.id):
            if run.state == "running" and wanted(run) and self._lock(session, ("run", run.id)):
                rows.append((run.id, run.epoch, run.job, run.node, run.lost))
        return rows, len(rows), None

    def _expired(self, session: int, _text: str, _params: tuple[Any, ...]) -> Any:
        return self._running_rows(session, lambda run: run.lease_until is not None and run.lease_until < self.now)

    def _left(self, session: int, _text: str, params: tuple[Any, ...]) -> Any:
        return self._running_rows(session, lambda run: run.node == params[0])

    def _lose_attempt(self, _session: int, _text: str, params: tuple[Any, ...]) -> Any:
        attempt = self.attempts.get(params[0])
        if attempt is None or attempt.outcome != "running":
            return [], 0, None
        attempt.outcome, attempt.ended_at = "lost", self.now
        return [], 1, None

    def _requeue(self, _session: int, _text: str, params: tuple[Any, ...]) -> Any:
        state, _state, run_id, epoch = params
        run = self.runs[run_id]
        if run.epoch != epoch:
            return [], 0, None
        run.state, run.node, run.lease_until, run.not_before = state, "", None, self.now
        run.lost += 1
        run.ended_at = self.now if state == "failed" else None
        return [], 1, None


class FakeLedgerCursor:
    def __init__(self, connection: FakeLedgerConnection):
        self.connection = connection
        self.rowcount = -1
        self.lastrowid: int | None = None
        self._rows: list[tuple[Any, ...]] = []

    def execute(self, sql: str, params: Any = None) -> int:
        self.connection.check()
        self._rows, self.rowcount, self.lastrowid = self.connection.server.execute(
            self.connection.session_id, sql, params
        )
        return self.rowcount

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._rows.pop(0) if self._rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows, self._rows = self._rows, []
        return rows

    def close(self) -> None:
        pass


class FakeLedgerConnection:
    def __init__(self, server: FakeLedgerServer, session_id: int, kwargs: dict[str, Any]):
        self.server = server
        self.session_id = session_id
        self.kwargs = kwargs
        self.alive = True
        self.closed = False

    def cursor(self) -> FakeLedgerCursor:
        self.check()
        return FakeLedgerCursor(self)

    def commit(self) -> None:
        self.check()
        self.server.log.append((self.session_id, "COMMIT", None))
        self.server.release(self.session_id)

    def rollback(self) -> None:
        self.check()
        self.server.release(self.session_id)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.server.end_session(self.session_id)

    def check(self) -> None:
        if self.closed:
            raise FakeError(2006, "MySQL server has gone away (closed by the client)")
        if not self.alive or self.server.down:
            raise FakeError(2013, "Lost connection to server during query")


class FakeLedgerDriver:
    """Stands in for MySQLdb for the sequencer."""

    Error = FakeError

    def __init__(self, server: FakeLedgerServer):
        self.server = server
        self.connects: list[dict[str, Any]] = []

    def connect(self, **kwargs: Any) -> FakeLedgerConnection:
        self.connects.append(kwargs)
        return self.server.open_session(kwargs)


class FakeChild:
    """A child process that ends when the test says so (or when signalled)."""

    next_pid = 4000

    def __init__(self, label: str = ""):
        FakeChild.next_pid += 1
        self.pid: int | None = FakeChild.next_pid
        self.label = label
        self.status: int | None = None
        self.signals: list[str] = []
        # False: SIGTERM is ignored (only SIGKILL ends it).
        self.obeys_term = True

    def exit(self, status: int) -> None:
        self.status = status

    def poll(self) -> int | None:
        return self.status

    def terminate(self) -> None:
        self.signals.append("TERM")
        if self.status is None and self.obeys_term:
            self.status = -15

    def kill(self) -> None:
        self.signals.append("KILL")
        if self.status is None:
            self.status = -9


class Clock:
    """A monotonic clock the test moves by hand, and the fake servers' NOW(3) with it."""

    def __init__(self, *servers: Any):
        self.now = 1000.0
        self.servers = servers

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for server in self.servers:
            server.now += timedelta(seconds=seconds)
