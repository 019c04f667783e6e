"""The sequencer: every app node runs it; each due run of a job runs once, on one node.

Run as `python3 -m fleet_scheduler.sequencer --config /etc/fleet-scheduler/sequencer.json`
(fleet-sequencer.service). Every `poll` seconds a node:

1. records the end of its finished runs (succeeded, or failed / timed out and
   retried after backoff x 2^(failures-1) seconds until max_retries, then failed);
2. every `keepalive` seconds renews the leases of its running runs, and takes
   back runs whose lease expired (their node died or lost the database): they
   are pending again and run elsewhere;
3. turns the schedules' due times (evaluated here, on the database clock, see
   oncalendar.py) into pending runs: whichever node gets there first, so a due
   run is created even when nodes are down;
4. claims pending runs, within each job's global cap (max_parallel, counted
   under the job's row lock) and per-node cap, and the node's own cap
   (node_max_parallel). A node waits claim_delay x load seconds before
   claiming a due run, load being the share of its run slots in use: the
   least-loaded node takes the work, and a full node takes none (runs wait).

Fencing: a watchdog thread stops a run (SIGTERM, SIGKILL stop_timeout later)
when its lease was not renewed in time, one second before any other node could
take the run back; a completion whose claim was superseded is refused.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from . import children
from .config import ConfigError
from .db import close_quietly, connect, describe, load_driver
from .ledger import FAILED, FENCED, SUCCEEDED, TIMEOUT, Claim, Ledger
from .status import iso_utc, write_status
from .tierconfig import JobConfig, SequencerConfig, load

log = logging.getLogger("fleet_sequencer")

DEFAULT_CONFIG_PATH = "/etc/fleet-scheduler/sequencer.json"
WATCHDOG_PERIOD = 0.1
PURGE_EVERY = 600.0

Spawner = Callable[[JobConfig, Claim, IO[Any]], children.Child]


@dataclass
class LocalRun:
    """A run this node claimed, from its claim until its end is recorded."""

    claim: Claim
    job: JobConfig
    child: children.Child | None
    output: IO[Any] | None
    started: float
    # The watchdog stops the child at `deadline` (lease) or at `timeout_at` (job timeout).
    deadline: float
    timeout_at: float
    stop_reason: str | None = None
    kill_at: float | None = None
    exit_code: int | None = None
    outcome: str | None = None
    text: str = field(default="", repr=False)

    @property
    def alive(self) -> bool:
        return self.outcome is None


def _output_file() -> IO[Any]:
    """Where a run's output goes; read back and closed when the run ends."""
    return tempfile.TemporaryFile(mode="w+b")


class Sequencer:
    """One node's sequencer, one `step()` at a time."""

    def __init__(
        self,
        config: SequencerConfig,
        driver: Any,
        spawn: Spawner,
        status_writer: Callable[[str, dict[str, Any]], None] = write_status,
        clock: Callable[[], float] = time.monotonic,
        output_factory: Callable[[], IO[Any]] | None = None,
    ):
        self.config = config
        self._driver = driver
        self._spawn = spawn
        self._write = status_writer
        self._clock = clock
        self._output_factory = output_factory or _output_file
        self._ledger: Ledger | None = None
        self._guard = threading.Lock()
        self.runs: dict[int, LocalRun] = {}
        self._next_keepalive = 0.0
        self._next_purge = 0.0
        self.counters = {"claimed": 0, "succeeded": 0, "failed": 0, "retried": 0, "refused": 0, "reaped": 0}
        self.connected = False

    # -- the main loop -------------------------------------------------------------

    def step(self) -> float:
        started = self._clock()
        self._collect()
        try:
            ledger = self._session()
            self._report(ledger)
            if self._clock() >= self._next_keepalive:
                self._next_keepalive = self._clock() + self.config.keepalive
                self._renew(ledger)
                self._reap(ledger)
            self._materialize(ledger)
            self._claim(ledger)
            if self._clock() >= self._next_purge:
                self._next_purge = self._clock() + PURGE_EVERY
                ledger.purge(self.config.history_days)
        except self._driver.Error as exc:
            log.warning("coordination database: %s; running runs continue until their lease ends", describe(exc))
            self._drop_session()
            self._publish()
            return float(self.config.keepalive)
        self._publish()
        return max(0.0, self.config.poll - (self._clock() - started))

    def enforce_deadlines(self) -> None:
        """The watchdog (every 0.1 s): stop runs past their lease deadline or their timeout."""
        now = self._clock()
        with self._guard:
            for run in self.runs.values():
                if not run.alive or run.child is None:
                    continue
                if run.stop_reason is None and (now >= run.deadline or now >= run.timeout_at):
                    run.stop_reason = FENCED if now >= run.deadline else TIMEOUT
                    run.kill_at = now + self.config.stop_timeout
                    if run.stop_reason == FENCED:
                        log.error("%s run %s: lease not renewed in time: stopping it", run.job.name, run.claim.run_id)
                    else:
                        log.warning("%s run %s: timed out after %s s", run.job.name, run.claim.run_id, run.job.timeout)
                    run.child.terminate()
                elif run.kill_at is not None and now >= run.kill_at:
                    run.kill_at = None
                    run.child.kill()

    def shutdown(self) -> None:
        """Stop the running runs and record them as fenced: they run again elsewhere."""
        with self._guard:
            running = [run for run in self.runs.values() if run.alive and run.child is not None]
            for run in running:
                run.stop_reason = FENCED
        for run in running:
            if run.child is not None:
                children.stop(run.child, self.config.stop_timeout)
        self._collect()
        with contextlib.suppress(self._driver.Error):
            self._report(self._session())
        self._drop_session()

    # -- local runs ----------------------------------------------------------------

    def _collect(self) -> None:
        """Notice the runs whose process ended; keep their output."""
        for run in list(self.runs.values()):
            if not run.alive or run.child is None:
                continue
            status = run.child.poll()
            if status is None:
                continue
            # Whatever the shell left behind in its group goes with it.
            run.child.kill()
            with self._guard:
                run.exit_code = status
                if run.stop_reason is not None:
                    run.outcome = run.stop_reason
                else:
                    run.outcome = SUCCEEDED if status == 0 else FAILED
            run.text = self._read_output(run)

    def _read_output(self, run: LocalRun) -> str:
        handle = run.output
        run.output = None
        if handle is None:
            return run.text
        try:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - self.config.output_bytes))
            data = handle.read(self.config.output_bytes)
        finally:
            handle.close()
        return data.decode("utf-8", errors="replace") if isinstance(data, bytes) else str(data)

    # -- with the database ---------------------------------------------------------

    def _report(self, ledger: Ledger) -> None:
        for run in [run for run in self.runs.values() if not run.alive]:
            assert run.outcome is not None
            state = ledger.finish(run.claim, run.job, run.outcome, run.exit_code, run.text)
            with self._guard:
                del self.runs[run.claim.run_id]
            if state is None:
                self.counters["refused"] += 1
                log.warning(
                    "%s run %s: result refused, epoch %s was superseded (the run was taken over)",
                    run.job.name,
                    run.claim.run_id,
                    run.claim.epoch,
                )
                continue
            if state == "pending":
                self.counters["retried"] += 1
            else:
                self.counters[state] += 1
            level = logging.DEBUG if run.outcome == SUCCEEDED else logging.WARNING
            log.log(
                level,
                "%s run %s (due %s) attempt %s: %s, exit %s -> %s",
                run.job.name,
                run.claim.run_id,
                iso_utc(run.claim.due_at),
                run.claim.attempt,
                run.outcome,
                run.exit_code,
                state,
            )

    def _renew(self, ledger: Ledger) -> None:
        mine = [run.claim for run in self.runs.values()]
        if not mine:
            return
        sent = self._clock()
        lost = ledger.renew(mine, self.config.lease)
        with self._guard:
            for run in self.runs.values():
                if run.claim.run_id in lost:
                    if run.alive and run.child is not None and run.stop_reason is None:
                        log.error("%s run %s: the claim is no longer ours: stopping it", run.job.name, run.claim.run_id)
                        run.stop_reason = FENCED
                        run.kill_at = sent + self.config.stop_timeout
                        run.child.terminate()
                elif run.stop_reason is None:
                    run.deadline = sent + self.config.lease_seconds

    def _reap(self, ledger: Ledger) -> None:
        for reaped in ledger.reap():
            self.counters["reaped"] += 1
            log.warning(
                "%s run %s: the lease of %s expired; %s",
                reaped.job,
                reaped.run_id,
                reaped.node or "a node",
                "it runs again" if reaped.requeued else "given up after too many lost attempts",
            )

    def _materialize(self, ledger: Ledger) -> None:
        created, skipped = ledger.materialize(self.config.jobs, self.config.catchup)
        if skipped:
            log.warning(
                "%s due run(s) skipped: more than %s per job were due at once (the tier was down)",
                skipped,
                self.config.catchup,
            )
        for job, due_at in created:
            log.debug("%s: run due %s created", job, iso_utc(due_at))

    def _claim(self, ledger: Ledger) -> None:
        alive = [run for run in self.runs.values() if run.alive]
        free = self.config.node_max_parallel - len(alive)
        if free <= 0:
            return
        # The least-loaded node claims first; a busy one only takes runs that waited longer.
        delay = round(self.config.claim_delay * len(alive) / self.config.node_max_parallel, 3)
        for name, _count in ledger.claimable([job.name for job in self.config.jobs], delay):
            job = self.config.by_name[name]
            mine = sum(1 for run in alive if run.job.name == name)
            slots = min(free, job.node_max_parallel - mine)
            if slots <= 0:
                continue
            sent = self._clock()
            for claim in ledger.claim(job, self.config.node, slots, delay, self.config.lease):
                self._start(job, claim, sent)
                free -= 1
            if free <= 0:
                return

    def _start(self, job: JobConfig, claim: Claim, sent: float) -> None:
        self.counters["claimed"] += 1
        output = self._output_factory()
        run = LocalRun(
            claim, job, None, output, self._clock(), sent + self.config.lease_seconds, self._clock() + job.timeout
        )
        try:
            run.child = self._spawn(job, claim, output)
        except (OSError, KeyError) as exc:
            # KeyError: the job's user does not exist on this node.
            run.outcome, run.exit_code = FAILED, None
            run.text = f"fleet-sequencer: cannot start the job on {self.config.node}: {exc}"
            with contextlib.suppress(OSError):
                output.close()
            run.output = None
            log.error("%s run %s: %s", job.name, claim.run_id, run.text)
        with self._guard:
            self.runs[claim.run_id] = run
        log.debug(
            "%s run %s (due %s) attempt %s started, epoch %s",
            job.name,
            claim.run_id,
            iso_utc(claim.due_at),
            claim.attempt,
            claim.epoch,
        )

    def _session(self) -> Ledger:
        if self._ledger is None:
            config = self.config
            connection = connect(
                self._driver,
                config,
                config.database,
                read_timeout=config.read_timeout,
                # A node cut off mid-transaction must not hold a job's row lock for long.
                wait_timeout=config.lease,
            )
            ledger = Ledger(connection)
            try:
                ledger.register(config.jobs)
                # Runs still marked running on this node belong to a previous sequencer: they are gone.
                for reaped in ledger.reap(node=config.node):
                    self.counters["reaped"] += 1
                    log.warning(
                        "%s run %s: left running by the previous sequencer of this node; it runs again",
                        reaped.job,
                        reaped.run_id,
                    )
            except BaseException:
                close_quietly(connection)
                raise
            self._ledger = ledger
            self.connected = True
            log.info("connected to the coordination database; %s job(s) registered", len(config.jobs))
        return self._ledger

    def _drop_session(self) -> None:
        if self._ledger is not None:
            close_quietly(self._ledger.connection)
            self._ledger = None
        self.connected = False

    def _publish(self) -> None:
        with self._guard:
            running = [
                {
                    "job": run.job.name,
                    "run_id": run.claim.run_id,
                    "epoch": run.claim.epoch,
                    "attempt": run.claim.attempt,
                    "pid": run.child.pid if run.child else None,
                }
                for run in self.runs.values()
                if run.alive
            ]
        status = {
            "node": self.config.node,
            "connected": self.connected,
            "running": running,
            "slots": self.config.node_max_parallel,
            **self.counters,
        }
        try:
            self._write(self.config.status_path, status)
        except OSError as exc:
            log.warning("cannot write %s: %s", self.config.status_path, exc.strerror)


def spawner(config: SequencerConfig) -> Spawner:
    """Start a job's command with its run in the environment, output to `output`."""

    def spawn(job: JobConfig, claim: Claim, output: IO[Any]) -> children.Child:
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "FLEET_JOB": job.name,
            "FLEET_RUN_ID": str(claim.run_id),
            "FLEET_RUN_EPOCH": str(claim.epoch),
            "FLEET_ATTEMPT": str(claim.attempt),
            "FLEET_DUE_AT": iso_utc(claim.due_at) or "",
            "FLEET_NODE": config.node,
        }
        return children.ProcessChild(job.command, env, output=output, user=job.user)

    return spawn


def run(sequencer: Sequencer, stop: threading.Event) -> None:
    done = threading.Event()

    def watch() -> None:
        while not done.wait(WATCHDOG_PERIOD):
            sequencer.enforce_deadlines()

    watchdog = threading.Thread(target=watch, name="lease-watchdog", daemon=True)
    watchdog.start()
    try:
        while not stop.is_set():
            stop.wait(sequencer.step())
    finally:
        sequencer.shutdown()
        done.set()
        watchdog.join()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fleet-sequencer", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG_PATH, help="config file (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        config = load(args.config, "sequencer")
    except ConfigError as exc:
        print(f"fleet-sequencer: {exc}", file=sys.stderr)
        return 2
    assert isinstance(config, SequencerConfig)
    logging.basicConfig(stream=sys.stdout, level=config.log_level, format="%(levelname)s %(message)s")
    try:
        driver = load_driver()
    except ImportError:
        print("fleet-sequencer: the MySQLdb driver is missing (install python3-mysqldb)", file=sys.stderr)
        return 1
    stop = threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        log.info("%s received, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    log.info(
        "fleet-sequencer on %s: %s job(s), %s run slot(s), lease %s s",
        config.node,
        len(config.jobs),
        config.node_max_parallel,
        config.lease,
    )
    run(Sequencer(config, driver, spawner(config)), stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
