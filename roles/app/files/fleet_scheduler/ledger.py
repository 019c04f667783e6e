"""The sequencer's tables on the coordination shard, and the `fleet-jobs` command.

sequencer_jobs      one row per job: its schedule and next_due, the next due time
                    not yet turned into a run. Its row lock serialises everything
                    that must not happen twice for a job: creating due runs and
                    claiming runs (so the caps are counted exactly).
sequencer_runs      one row per due run (job, due_at unique): pending, running,
                    succeeded or failed; `epoch` is the claim in force, `lease_until`
                    when the running node's lease ends (renewed every keepalive).
sequencer_attempts  the ledger: one row per execution (run, attempt, node, epoch =
                    the row's id, start, end, outcome, exit code, output).

Every statement compares times on the database server (NOW(3), UTC sessions):
the nodes' clocks never decide anything. Claims and completions are fenced by
the epoch: a node whose lease expired and whose run was taken over finds its
completion refused (0 rows), and the re-run stands.

`python3 -m fleet_scheduler.ledger [--config PATH] runs|jobs|terms [--json]`
(`fleet-jobs`) prints the ledger.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from .config import ConfigError
from .db import close_quietly, connect, describe, load_driver
from .status import iso_utc
from .tierconfig import JobConfig, SequencerConfig, load

DEFAULT_CONFIG_PATH = "/etc/fleet-scheduler/sequencer.json"
# Lost attempts (node died, lease expired) of one run before it is given up as failed.
MAX_LOST = 5
# At most this many expired runs are taken back per round.
REAP_BATCH = 100
PURGE_BATCH = 1000

SELECT_NOW = "SELECT NOW(3)"
REGISTER_JOB = """
INSERT INTO sequencer_jobs (job, schedule, next_due, updated_at)
VALUES (%s, %s, %s, NOW(3))
ON DUPLICATE KEY UPDATE
    next_due = IF(schedule <> VALUES(schedule) OR next_due IS NULL, VALUES(next_due), next_due),
    schedule = VALUES(schedule),
    updated_at = VALUES(updated_at)
"""
# Jobs another node is materialising or claiming right now are skipped, not waited for.
DUE_JOBS = """
SELECT job, next_due FROM sequencer_jobs
WHERE job IN ({names}) AND next_due <= NOW(3)
FOR UPDATE SKIP LOCKED
"""
ADD_RUN = """
INSERT INTO sequencer_runs (job, due_at, state, not_before, created_at)
VALUES (%s, %s, 'pending', %s, NOW(3))
ON DUPLICATE KEY UPDATE id = id
"""
ADVANCE_JOB = "UPDATE sequencer_jobs SET next_due = %s WHERE job = %s"
CLAIMABLE = """
SELECT job, COUNT(*) FROM sequencer_runs
WHERE state = 'pending' AND not_before <= NOW(3) - INTERVAL %s SECOND AND job IN ({names})
GROUP BY job ORDER BY MIN(due_at)
"""
LOCK_JOB = "SELECT job FROM sequencer_jobs WHERE job = %s FOR UPDATE SKIP LOCKED"
COUNT_RUNNING = "SELECT COUNT(*) FROM sequencer_runs WHERE job = %s AND state = 'running'"
PICK_PENDING = """
SELECT id, due_at, attempt, failures FROM sequencer_runs
WHERE job = %s AND state = 'pending' AND not_before <= NOW(3) - INTERVAL %s SECOND
ORDER BY due_at, id LIMIT %s
FOR UPDATE SKIP LOCKED
"""
START_ATTEMPT = """
INSERT INTO sequencer_attempts (run_id, job, due_at, attempt, node, started_at, outcome)
VALUES (%s, %s, %s, %s, %s, NOW(3), 'running')
"""
MARK_RUNNING = """
UPDATE sequencer_runs
SET state = 'running', attempt = %s, epoch = %s, node = %s,
    lease_until = NOW(3) + INTERVAL %s SECOND, started_at = COALESCE(started_at, NOW(3))
WHERE id = %s
"""
RENEW = """
UPDATE sequencer_runs SET lease_until = NOW(3) + INTERVAL %s SECOND
WHERE id = %s AND epoch = %s AND state = 'running'
"""
FINISH_RUN = """
UPDATE sequencer_runs
SET state = %s, failures = failures + %s, lost = lost + %s, node = IF(%s = 'pending', '', node),
    not_before = NOW(3) + INTERVAL %s SECOND, lease_until = NULL,
    ended_at = IF(%s = 'pending', NULL, NOW(3)), exit_code = %s
WHERE id = %s AND epoch = %s AND state = 'running'
"""
FINISH_ATTEMPT = """
UPDATE sequencer_attempts SET ended_at = NOW(3), outcome = %s, exit_code = %s, output = %s
WHERE id = %s AND outcome = 'running'
"""
EXPIRED = f"""
SELECT id, epoch, job, node, lost FROM sequencer_runs
WHERE state = 'running' AND lease_until < NOW(3)
ORDER BY id LIMIT {REAP_BATCH}
FOR UPDATE SKIP LOCKED
"""
# At start: what this node's previous sequencer left running died with it.
LEFT_RUNNING = f"""
SELECT id, epoch, job, node, lost FROM sequencer_runs
WHERE state = 'running' AND node = %s
ORDER BY id LIMIT {REAP_BATCH}
FOR UPDATE
"""
LOSE_ATTEMPT = "UPDATE sequencer_attempts SET ended_at = NOW(3), outcome = 'lost' WHERE id = %s AND outcome = 'running'"
REQUEUE_LOST = """
UPDATE sequencer_runs
SET state = %s, lost = lost + 1, node = '', lease_until = NULL, not_before = NOW(3),
    ended_at = IF(%s = 'failed', NOW(3), NULL)
WHERE id = %s AND epoch = %s
"""
PURGE_ATTEMPTS = f"DELETE FROM sequencer_attempts WHERE ended_at < NOW(3) - INTERVAL %s DAY LIMIT {PURGE_BATCH}"
PURGE_RUNS = f"""
DELETE FROM sequencer_runs
WHERE state IN ('succeeded', 'failed') AND ended_at < NOW(3) - INTERVAL %s DAY LIMIT {PURGE_BATCH}
"""
LIST_ATTEMPTS = """
SELECT id, run_id, job, due_at, attempt, node, started_at, ended_at, outcome, exit_code, output
FROM sequencer_attempts {where} ORDER BY id DESC LIMIT %s
"""
LIST_JOBS = """
SELECT j.job, j.schedule, j.next_due,
       SUM(r.state = 'pending'), SUM(r.state = 'running'), SUM(r.state = 'succeeded'), SUM(r.state = 'failed'),
       MAX(r.ended_at)
FROM sequencer_jobs j LEFT JOIN sequencer_runs r ON r.job = j.job
GROUP BY j.job, j.schedule, j.next_due ORDER BY j.job
"""
LIST_TERMS = """
SELECT name, epoch, node, since, heartbeat, ended_at, previous_holder, gap_ms
FROM singleton_terms {where} ORDER BY name, epoch DESC LIMIT %s
"""

# Outcomes of an attempt, and what they do to the run.
SUCCEEDED = "succeeded"
FAILED = "failed"
TIMEOUT = "timeout"
# This node stopped its own run because it could not renew the lease in time.
FENCED = "fenced"


@dataclass(frozen=True)
class Claim:
    """A run this node claimed: epoch is the id of its attempt row (the fencing token)."""

    run_id: int
    job: str
    due_at: datetime
    attempt: int
    epoch: int
    failures: int


@dataclass(frozen=True)
class Reaped:
    """A run whose node's lease expired, taken back by this node."""

    run_id: int
    job: str
    node: str
    requeued: bool


class Ledger:
    """The sequencer's statements on one session (autocommit off, READ COMMITTED)."""

    def __init__(self, connection: Any):
        self.connection = connection

    def now(self) -> datetime:
        (value,) = self._rows(SELECT_NOW)[0]
        self.connection.commit()
        return value

    def register(self, jobs: Sequence[JobConfig]) -> None:
        """Add or update the jobs' rows; a new or changed schedule starts from its next instance."""
        now = self.now()
        for job in jobs:
            self._execute(REGISTER_JOB, (job.name, job.schedule.expression, job.schedule.next_after(now)))
        self.connection.commit()

    def materialize(self, jobs: Sequence[JobConfig], catchup: int) -> tuple[list[tuple[str, datetime]], int]:
        """Create the runs that came due; ([(job, due_at)], instances skipped by the catch-up limit)."""
        by_name = {job.name: job for job in jobs}
        if not by_name:
            return [], 0
        names = list(by_name)
        created: list[tuple[str, datetime]] = []
        skipped = 0
        try:
            due = self._rows(DUE_JOBS.format(names=_placeholders(names)), tuple(names))
            now = self._rows(SELECT_NOW)[0][0] if due else None
            for name, next_due in due:
                instances = list(by_name[name].schedule.instances(next_due, now))
                if len(instances) > catchup:
                    # After a tier-wide outage: run the latest `catchup` instances, not a backlog of days.
                    skipped += len(instances) - catchup
                    instances = instances[-catchup:]
                for due_at in instances:
                    self._execute(ADD_RUN, (name, due_at, due_at))
                    created.append((name, due_at))
                following = by_name[name].schedule.next_after(max(now, instances[-1]) if instances else now)
                self._execute(ADVANCE_JOB, (following, name))
            self.connection.commit()
        except BaseException:
            _rollback_quietly(self.connection)
            raise
        return created, skipped

    def claimable(self, names: Sequence[str], delay: float) -> list[tuple[str, int]]:
        """Jobs with runs due at least `delay` seconds ago, oldest first: [(job, runs)]."""
        if not names:
            return []
        rows = self._rows(CLAIMABLE.format(names=_placeholders(names)), (delay, *names))
        self.connection.commit()
        return [(job, int(count)) for job, count in rows]

    def claim(self, job: JobConfig, node: str, slots: int, delay: float, lease: int) -> list[Claim]:
        """Claim up to `slots` due runs of `job` within its global cap; [] when another node holds the job."""
        claims: list[Claim] = []
        try:
            if not self._rows(LOCK_JOB, (job.name,)):
                self.connection.commit()
                return []
            (running,) = self._rows(COUNT_RUNNING, (job.name,))[0]
            allowed = min(slots, job.max_parallel - int(running))
            if allowed > 0:
                for run_id, due_at, attempt, failures in self._rows(PICK_PENDING, (job.name, delay, allowed)):
                    cursor = self.connection.cursor()
                    try:
                        cursor.execute(START_ATTEMPT, (run_id, job.name, due_at, int(attempt) + 1, node))
                        epoch = int(cursor.lastrowid)
                    finally:
                        cursor.close()
                    self._execute(MARK_RUNNING, (int(attempt) + 1, epoch, node, lease, run_id))
                    claims.append(Claim(int(run_id), job.name, due_at, int(attempt) + 1, epoch, int(failures)))
            self.connection.commit()
        except BaseException:
            _rollback_quietly(self.connection)
            raise
        return claims

    def renew(self, claims: Iterable[Claim], lease: int) -> set[int]:
        """Extend the leases of running claims; the run ids whose claim is no longer in force."""
        lost = set()
        try:
            for claim in claims:
                if self._execute(RENEW, (lease, claim.run_id, claim.epoch)) == 0:
                    lost.add(claim.run_id)
            self.connection.commit()
        except BaseException:
            _rollback_quietly(self.connection)
            raise
        return lost

    def finish(self, claim: Claim, job: JobConfig, outcome: str, exit_code: int | None, output: str) -> str | None:
        """Record an attempt's end; the run's new state, or None when the claim was no longer in force."""
        failures = lost = 0
        delay = 0.0
        if outcome == SUCCEEDED:
            state = SUCCEEDED
        elif outcome == FENCED:
            lost = 1
            state = "pending"
        else:
            failures = 1
            total = claim.failures + 1
            state = "pending" if total <= job.max_retries else FAILED
            delay = float(job.backoff * 2 ** (total - 1)) if state == "pending" else 0.0
        try:
            changed = self._execute(
                FINISH_RUN,
                (state, failures, lost, state, min(delay, 86400.0), state, exit_code, claim.run_id, claim.epoch),
            )
            if changed == 0:
                self.connection.rollback()
                return None
            self._execute(FINISH_ATTEMPT, (outcome, exit_code, output, claim.epoch))
            self.connection.commit()
        except BaseException:
            _rollback_quietly(self.connection)
            raise
        return state

    def reap(self, node: str | None = None) -> list[Reaped]:
        """Take back runs whose lease expired (their node died or was cut off): re-run them elsewhere.

        With `node`: the runs that node's previous sequencer left running, whatever their lease
        (it restarted, so they died with it).
        """
        reaped = []
        try:
            for run_id, epoch, job, node_name, lost in (
                self._rows(LEFT_RUNNING, (node,)) if node else self._rows(EXPIRED)
            ):
                state = FAILED if int(lost) + 1 >= MAX_LOST else "pending"
                self._execute(LOSE_ATTEMPT, (epoch,))
                self._execute(REQUEUE_LOST, (state, state, run_id, epoch))
                reaped.append(Reaped(int(run_id), job, node_name, state == "pending"))
            self.connection.commit()
        except BaseException:
            _rollback_quietly(self.connection)
            raise
        return reaped

    def purge(self, days: int) -> int:
        """Delete ledger rows older than `days` (one bounded batch per table)."""
        deleted = self._execute(PURGE_ATTEMPTS, (days,)) + self._execute(PURGE_RUNS, (days,))
        self.connection.commit()
        return deleted

    # -- queries of fleet-jobs -----------------------------------------------------

    def attempts(self, job: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        where, params = ("WHERE job = %s", (job, limit)) if job else ("", (limit,))
        columns = (
            "epoch",
            "run_id",
            "job",
            "due_at",
            "attempt",
            "node",
            "started_at",
            "ended_at",
            "outcome",
            "exit_code",
            "output",
        )
        rows = [dict(zip(columns, row, strict=True)) for row in self._rows(LIST_ATTEMPTS.format(where=where), params)]
        self.connection.commit()
        return rows

    def jobs(self) -> list[dict[str, Any]]:
        columns = ("job", "schedule", "next_due", "pending", "running", "succeeded", "failed", "last_end")
        rows = [dict(zip(columns, row, strict=True)) for row in self._rows(LIST_JOBS)]
        self.connection.commit()
        return rows

    def terms(self, name: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        where, params = ("WHERE name = %s", (name, limit)) if name else ("", (limit,))
        columns = ("name", "epoch", "node", "since", "heartbeat", "ended_at", "previous_holder", "gap_ms")
        rows = [dict(zip(columns, row, strict=True)) for row in self._rows(LIST_TERMS.format(where=where), params)]
        self.connection.commit()
        return rows

    def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        cursor = self.connection.cursor()
        try:
            cursor.execute(sql, params)
            return cursor.rowcount
        finally:
            cursor.close()

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        cursor = self.connection.cursor()
        try:
            cursor.execute(sql, params)
            return list(cursor.fetchall())
        finally:
            cursor.close()


def _placeholders(names: Sequence[str]) -> str:
    return ", ".join(["%s"] * len(names))


def _rollback_quietly(connection: Any) -> None:
    # A broken session cannot roll back; the server does it when the session ends.
    try:
        connection.rollback()
    except Exception:  # any driver error here changes nothing
        return


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, Decimal):  # SUM() of MariaDB
        return int(value)
    return value


def _table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [[str(_plain(row[column]) if row[column] is not None else "-") for column in columns] for row in rows]
    widths = [max([len(column)] + [len(line[index]) for line in cells]) for index, column in enumerate(columns)]
    lines = ["  ".join(column.ljust(width) for column, width in zip(columns, widths, strict=True))]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)) for line in cells]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fleet-jobs", description="Show the sequencer's jobs, runs and singleton terms."
    )
    parser.add_argument("--config", default=DEFAULT_CONFIG_PATH, help="sequencer config (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    commands = parser.add_subparsers(dest="command", required=True)
    runs = commands.add_parser("runs", help="the latest attempts, newest first")
    runs.add_argument("--job", help="only this job")
    runs.add_argument("--limit", type=int, default=50)
    runs.add_argument("--output", action="store_true", help="include the kept output")
    commands.add_parser("jobs", help="every job with its next due time and its runs by state")
    terms = commands.add_parser("terms", help="the singletons' terms (epochs), newest first")
    terms.add_argument("--name", help="only this singleton")
    terms.add_argument("--limit", type=int, default=20)
    args = parser.parse_args(argv)

    try:
        config = load(args.config, "sequencer")
    except ConfigError as exc:
        print(f"fleet-jobs: {exc}", file=sys.stderr)
        return 2
    assert isinstance(config, SequencerConfig)
    try:
        driver = load_driver()
    except ImportError:
        print("fleet-jobs: the MySQLdb driver is missing (install python3-mysqldb)", file=sys.stderr)
        return 1
    connection = None
    try:
        connection = connect(driver, config, config.database)
        ledger = Ledger(connection)
        if args.command == "runs":
            rows = ledger.attempts(args.job, args.limit)
            columns = [
                "epoch",
                "run_id",
                "job",
                "due_at",
                "attempt",
                "node",
                "started_at",
                "ended_at",
                "outcome",
                "exit_code",
            ] + (["output"] if args.output else [])
        elif args.command == "jobs":
            rows = ledger.jobs()
            columns = ["job", "schedule", "next_due", "pending", "running", "succeeded", "failed", "last_end"]
        else:
            rows = ledger.terms(args.name, args.limit)
            columns = ["name", "epoch", "node", "since", "heartbeat", "ended_at", "previous_holder", "gap_ms"]
    except driver.Error as exc:
        print(f"fleet-jobs: {config.database.address}: {describe(exc)}", file=sys.stderr)
        return 1
    finally:
        close_quietly(connection)
    if args.json:
        print(json.dumps([{column: _plain(row[column]) for column in columns} for row in rows], indent=2))
    else:
        print(_table(rows, columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
