"""Singleton supervisor: every app node runs one per singleton; the lock holder runs the child.

Run as `python3 -m fleet_scheduler.supervisor run --config /etc/fleet-scheduler/singletons/NAME.json`
(the role's NAME.service), and `python3 -m fleet_scheduler.supervisor status [NAME...]`
(`fleet-singleton-status`) to see which node is active, since when and in which epoch.

Takeover. A standby blocks in GET_LOCK('fleet-singleton:NAME') on the coordination
shard. The server grants it when the holder's session ends: at once when the
holder's process or node dies and its socket closes, otherwise once the holder's
session has been silent for `lock_timeout` seconds (the session's wait_timeout).
The new holder increments scheduler_state.epoch, records a singleton_terms row
and starts the child with FLEET_SINGLETON, FLEET_SINGLETON_EPOCH and
FLEET_SINGLETON_NODE in its environment.

Fencing. The holder confirms its lock every `keepalive` seconds. A keepalive
sent at t is acknowledged by the server after t, so the server cannot free the
lock before t + lock_timeout. The watchdog thread sends SIGTERM to the child at
t + lock_timeout - stop_timeout - 1 when no later keepalive was confirmed, and
SIGKILL stop_timeout seconds later: the child is gone one second before the
lock can be granted elsewhere. A failed keepalive (session killed, network
error) stops the child at once. The epoch fences the child's own work
(lock.EpochFence): after a takeover, a deposed child's writes are refused.
Failover therefore takes at most keepalive + lock_timeout seconds (12 s with
the defaults), and the new term records the gap since the last heartbeat of the
previous one.
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from . import children
from .config import ConfigError
from .db import close_quietly, connect, describe, load_driver
from .lock import LeadershipLost, SchedulerLock, SchedulerState
from .status import build_status, iso_utc, write_status
from .tierconfig import SingletonConfig, load

log = logging.getLogger("fleet_singleton")

ACTIVE = "active"
STANDBY = "standby"
CONFIG_DIR = "/etc/fleet-scheduler/singletons"
WATCHDOG_PERIOD = 0.1
MAX_RESTART_DELAY = 30.0
# A child that ran this long before exiting is restarted after the first delay again.
STABLE_SECONDS = 60.0

TERM_START = """
INSERT INTO singleton_terms (name, epoch, node, since, heartbeat, previous_holder, gap_ms)
VALUES (%s, %s, %s, %s, %s, %s, %s)
"""
TERM_HEARTBEAT = "UPDATE singleton_terms SET heartbeat = NOW(3) WHERE name = %s AND epoch = %s"
TERM_END = "UPDATE singleton_terms SET heartbeat = NOW(3), ended_at = NOW(3) WHERE name = %s AND epoch = %s"

ChildFactory = Callable[[SchedulerState], children.Child]


class Supervisor:
    """One node's supervisor of one singleton: standby or active, one `step()` at a time."""

    def __init__(
        self,
        config: SingletonConfig,
        driver: Any,
        start_child: ChildFactory,
        status_writer: Callable[[str, dict[str, Any]], None] = write_status,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.config = config
        self.role = STANDBY
        self.state: SchedulerState | None = None
        self.takeover_gap_ms: int | None = None
        self._driver = driver
        self._start = start_child
        self._write = status_writer
        self._clock = clock
        self._sleep = sleep
        self._lock: SchedulerLock | None = None
        # Shared with the watchdog thread, under _guard.
        self._guard = threading.Lock()
        self._child: children.Child | None = None
        self._deadline: float | None = None
        self._kill_at: float | None = None
        self.fenced = False
        # Child restarts while active.
        self._child_started = 0.0
        self._restart_at = 0.0
        self._quick_exits = 0

    # -- the main loop ---------------------------------------------------------

    def step(self) -> float:
        """One round as standby or active; the seconds to wait before the next one."""
        if self.role == ACTIVE:
            return self._keep()
        return self._stand_by()

    def shutdown(self) -> None:
        """Stop the child first, then hand the lock over, then close the session."""
        self._stop_child()
        if self.role == ACTIVE and self._lock is not None and self.state is not None:
            try:
                self._lock.release(self.config.node, self.state.epoch)
                self._end_term(self._lock.connection, self.state.epoch)
                log.info("%s: released the lock (epoch %s)", self.config.name, self.state.epoch)
            except self._driver.Error as exc:
                log.warning("%s: could not hand over cleanly: %s", self.config.name, describe(exc))
        self.role = STANDBY
        self._drop_lock_session()

    def enforce_deadline(self) -> None:
        """The watchdog (every 0.1 s): stop the child once the lock may be about to move."""
        with self._guard:
            if self._deadline is None or self._child is None:
                return
            now = self._clock()
            if now < self._deadline:
                return
            if not self.fenced:
                self.fenced = True
                self._kill_at = now + self.config.stop_timeout
                log.error(
                    "%s: no keepalive confirmed for %.1f s: stopping the child before the lock can move",
                    self.config.name,
                    self.config.lease_seconds + (now - self._deadline),
                )
                self._child.terminate()
            elif self._kill_at is not None and now >= self._kill_at:
                self._kill_at = None
                self._child.kill()

    # -- standby ---------------------------------------------------------------

    def _stand_by(self) -> float:
        config = self.config
        try:
            lock = self._lock_session()
            self.state = lock.read_state()
            self._publish()
            if not lock.try_acquire(config.acquire_wait):
                return 0.0
            previous = lock.read_state()
            sent = self._clock()
            state = lock.take_over(
                config.node, record=lambda connection, new: self._start_term(connection, new, previous)
            )
        except LeadershipLost as exc:
            log.warning("%s: got the lock but could not record it (%s); standing by", config.name, exc)
            self._drop_lock_session()
            return float(config.keepalive)
        except self._driver.Error as exc:
            log.warning("%s: coordination database unreachable (%s); retrying", config.name, describe(exc))
            self._drop_lock_session()
            self.state = None
            self._publish()
            return float(config.keepalive)
        with self._guard:
            self._deadline = sent + config.lease_seconds
            self.fenced = False
        self.state = state
        self.role = ACTIVE
        if previous is None:
            after = "the first term"
        elif previous.holder:
            after = f"{previous.holder} lost it, {self.takeover_gap_ms} ms after its last heartbeat"
        else:
            after = f"a clean hand-over, {self.takeover_gap_ms} ms after the last heartbeat"
        log.info("%s: now active (epoch %s, since %s): %s", config.name, state.epoch, iso_utc(state.since), after)
        self._restart_at = 0.0
        self._quick_exits = 0
        self._tend_child()
        self._publish()
        return float(config.keepalive)

    def _start_term(self, connection: Any, state: SchedulerState, previous: SchedulerState | None) -> None:
        gap = None
        if previous is not None and previous.heartbeat is not None and state.since is not None:
            gap = max(0, int((state.since - previous.heartbeat).total_seconds() * 1000))
        self.takeover_gap_ms = gap
        holder = previous.holder if previous else ""
        cursor = connection.cursor()
        try:
            cursor.execute(
                TERM_START, (self.config.name, state.epoch, self.config.node, state.since, state.since, holder, gap)
            )
        finally:
            cursor.close()

    # -- active ----------------------------------------------------------------

    def _keep(self) -> float:
        config = self.config
        lock, state = self._lock, self.state
        if lock is None or state is None:  # only _stand_by makes a node active, with both set
            self.role = STANDBY
            return 0.0
        if self.fenced:
            return self._lose("the keepalive was not confirmed in time")
        sent = self._clock()
        try:
            lock.ensure_held()
            lock.heartbeat(config.node, state.epoch)
            cursor = lock.connection.cursor()
            try:
                cursor.execute(TERM_HEARTBEAT, (config.name, state.epoch))
            finally:
                cursor.close()
            lock.connection.commit()
            # The row as the database has it now (heartbeat), for the status.
            self.state = lock.read_state() or state
        except LeadershipLost as exc:
            return self._lose(str(exc))
        except self._driver.Error as exc:
            return self._lose(f"the lock session failed: {describe(exc)}")
        with self._guard:
            fenced = self.fenced
            if not fenced:
                self._deadline = sent + config.lease_seconds
        if fenced:
            return self._lose("the keepalive was confirmed too late")
        self._tend_child()
        self._publish()
        return max(0.0, config.keepalive - (self._clock() - sent))

    def _tend_child(self) -> None:
        """Start the child, or notice that it exited and restart it after a delay."""
        with self._guard:
            child = self._child
        if child is not None:
            status = child.poll()
            if status is None:
                return
            with self._guard:
                self._child = None
            ran = self._clock() - self._child_started
            self._quick_exits = 0 if ran >= STABLE_SECONDS else self._quick_exits + 1
            delay = min(MAX_RESTART_DELAY, self.config.restart_delay * 2 ** max(0, self._quick_exits - 1))
            self._restart_at = self._clock() + delay
            log.warning(
                "%s: the child exited with status %s after %.1f s; restarting in %.0f s",
                self.config.name,
                status,
                ran,
                delay,
            )
            return
        if self._clock() < self._restart_at or self.state is None:
            return
        try:
            started = self._start(self.state)
        except OSError as exc:
            self._restart_at = self._clock() + MAX_RESTART_DELAY
            log.error("%s: cannot start the child: %s", self.config.name, exc)
            return
        with self._guard:
            self._child = started
            self._child_started = self._clock()
        what = f"pid {started.pid}" if started.pid is not None else self.config.unit
        log.info("%s: started the child (%s) for epoch %s", self.config.name, what, self.state.epoch)

    def _lose(self, reason: str) -> float:
        log.error("%s: lost the lock (%s): stopping the child, standing by", self.config.name, reason)
        self._stop_child()
        with self._guard:
            self._deadline = None
            self.fenced = False
        self.role = STANDBY
        self.state = None
        self._drop_lock_session()
        self._publish()
        return float(self.config.keepalive)

    def _stop_child(self) -> None:
        with self._guard:
            child, self._child = self._child, None
        if child is not None:
            status = children.stop(child, self.config.stop_timeout, self._sleep)
            log.info("%s: the child (pid %s) stopped with status %s", self.config.name, child.pid, status)

    def _end_term(self, connection: Any, epoch: int) -> None:
        cursor = connection.cursor()
        try:
            cursor.execute(TERM_END, (self.config.name, epoch))
        finally:
            cursor.close()
        connection.commit()

    # -- session and status ----------------------------------------------------

    def _lock_session(self) -> SchedulerLock:
        if self._lock is None:
            connection = connect(
                self._driver,
                self.config,
                self.config.database,
                read_timeout=self.config.read_timeout,
                # The server ends a session silent this long, which frees the lock.
                wait_timeout=self.config.lock_timeout,
            )
            # The scheduler_state row is named after the singleton, the lock after it with a prefix.
            self._lock = SchedulerLock(
                connection, self.config.lock_name, self._driver.Error, state_name=self.config.name
            )
        return self._lock

    def _drop_lock_session(self) -> None:
        if self._lock is not None:
            close_quietly(self._lock.connection)
            self._lock = None

    def _publish(self) -> None:
        state = self.state
        status = build_status(
            self.role,
            self.config.node,
            state.holder if state else None,
            state.epoch if state else None,
            state.since if state else None,
        )
        with self._guard:
            child = self._child
        status.update(
            {
                "name": self.config.name,
                "failover_bound_s": self.config.failover_bound,
                "heartbeat": iso_utc(state.heartbeat) if state else None,
                "takeover_gap_ms": self.takeover_gap_ms if self.role == ACTIVE else None,
                "child_pid": child.pid if child is not None and self.role == ACTIVE else None,
            }
        )
        try:
            self._write(self.config.status_path, status)
        except OSError as exc:
            log.warning("cannot write %s: %s", self.config.status_path, exc.strerror)


def child_factory(config: SingletonConfig) -> ChildFactory:
    """Start the configured command (with the epoch in its environment) or unit."""

    def start(state: SchedulerState) -> children.Child:
        if config.unit is not None:
            # A unit cannot inherit an environment: it finds the epoch next to the status file.
            with open(os.path.join(os.path.dirname(config.status_path), "epoch"), "w", encoding="utf-8") as handle:
                handle.write(f"{state.epoch}\n")
            return children.UnitChild(config.unit)
        env = {
            **os.environ,
            "FLEET_SINGLETON": config.name,
            "FLEET_SINGLETON_EPOCH": str(state.epoch),
            "FLEET_SINGLETON_NODE": config.node,
        }
        return children.ProcessChild(config.command or "", env, user=config.user)

    return start


def run(supervisor: Supervisor, stop: threading.Event) -> None:
    """Step until asked to stop, with the watchdog enforcing the deadline meanwhile."""
    done = threading.Event()

    def watch() -> None:
        while not done.wait(WATCHDOG_PERIOD):
            supervisor.enforce_deadline()

    watchdog = threading.Thread(target=watch, name="fence-watchdog", daemon=True)
    watchdog.start()
    try:
        while not stop.is_set():
            stop.wait(supervisor.step())
    finally:
        supervisor.shutdown()
        done.set()
        watchdog.join()


def status_main(names: list[str], config_dir: str = CONFIG_DIR, run_dir: str = "/run") -> int:
    """Print the status of the named singletons (default: every configured one) as JSON."""
    if not names:
        names = sorted(
            os.path.basename(path)[: -len(".json")] for path in glob.glob(os.path.join(config_dir, "*.json"))
        )
    if not names:
        print(f"fleet-singleton-status: no singleton is configured in {config_dir}", file=sys.stderr)
        return 1
    report: dict[str, Any] = {}
    missing = False
    for name in names:
        path = os.path.join(run_dir, name, "status.json")
        try:
            with open(path, encoding="utf-8") as stream:
                report[name] = json.load(stream)
        except FileNotFoundError:
            report[name] = {"role": "stopped", "error": f"{path} does not exist: is {name}.service running?"}
            missing = True
        except (OSError, ValueError) as exc:
            report[name] = {"role": "unknown", "error": f"cannot read {path}: {exc}"}
            missing = True
    print(json.dumps(report, indent=2, sort_keys=True))
    return 3 if missing else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fleet-singleton", description="Run or inspect a singleton supervisor.")
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="supervise one singleton")
    run_parser.add_argument("--config", required=True, help="the singleton's config file")
    status_parser = commands.add_parser("status", help="print which node is active, since when, in which epoch")
    status_parser.add_argument("names", nargs="*", help="singletons (default: every configured one)")
    args = parser.parse_args(argv)
    if args.command == "status":
        return status_main(args.names)

    try:
        config = load(args.config, "singleton")
    except ConfigError as exc:
        print(f"fleet-singleton: {exc}", file=sys.stderr)
        return 2
    assert isinstance(config, SingletonConfig)
    logging.basicConfig(stream=sys.stdout, level=config.log_level, format="%(levelname)s %(message)s")
    try:
        driver = load_driver()
    except ImportError:
        print("fleet-singleton: the MySQLdb driver is missing (install python3-mysqldb)", file=sys.stderr)
        return 1
    stop = threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        log.info("%s received, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    if config.unit is not None:
        # Only the holder runs the unit: a standby starts by making sure it is stopped here.
        children.UnitChild.stop_now(config.unit)
    log.info(
        "supervising %s on %s: %s; lock %r, failover within %s s",
        config.name,
        config.node,
        config.unit or config.command,
        config.lock_name,
        config.failover_bound,
    )
    run(Supervisor(config, driver, child_factory(config)), stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
