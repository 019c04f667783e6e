"""The service loop: stand by until the scheduler lock is ours, then work every interval.

Run as `python3 -m fleet_scheduler --config /etc/fleet-scheduler/config.json`.
SIGTERM (systemctl stop) ends the loop after the current statement; the lock
is released on the way out so a standby takes over at once.

Started by a singleton supervisor (supervisor.py: FLEET_SINGLETON and
FLEET_SINGLETON_EPOCH in the environment, the role's default), it takes no lock
of its own: the supervisor holds it, and every unit of work is fenced by the
epoch instead (lock.EpochFence). A deposed child exits with status 75.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from . import __version__, jobs
from .config import DEFAULT_CONFIG_PATH, Config, ConfigError, ShardConfig, load_config
from .db import close_quietly, connect, describe, load_driver
from .lock import EpochFence, LeadershipLost, SchedulerLock, SchedulerState
from .status import build_status, write_status

log = logging.getLogger("fleet_scheduler")

ACTIVE = "active"
STANDBY = "standby"
# Exit status of a supervised child whose epoch is over (EX_TEMPFAIL).
EXIT_DEPOSED = 75


class Scheduler:
    """One node's scheduler: standby or active, one `step()` at a time."""

    def __init__(
        self,
        config: Config,
        driver: Any,
        status_writer: Callable[[str, dict[str, Any]], None] = write_status,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.config = config
        self.role = STANDBY
        self.state: SchedulerState | None = None
        self._driver = driver
        self._write = status_writer
        self._clock = clock
        self._lock: SchedulerLock | None = None
        self._work: dict[int, Any] = {}

    def step(self) -> float:
        """Do one round as standby or active; the seconds to wait before the next one."""
        if self.role == ACTIVE:
            return self._work_round()
        return self._stand_by()

    def shutdown(self) -> None:
        """Hand the lock over (when active) and close every session."""
        if self.role == ACTIVE and self._lock is not None and self.state is not None:
            try:
                self._lock.release(self.config.node, self.state.epoch)
                log.info("released the scheduler lock (epoch %s)", self.state.epoch)
            except self._driver.Error as exc:
                # The server drops the lock with the session anyway.
                log.warning("could not release the scheduler lock cleanly: %s", describe(exc))
        self.role = STANDBY
        self._close_all()

    # -- standby ---------------------------------------------------------------

    def _stand_by(self) -> float:
        try:
            lock = self._lock_session()
            # Publish who is active before blocking in GET_LOCK for up to lock_timeout.
            self.state = lock.read_state()
            self._publish()
            if lock.try_acquire(self.config.lock_timeout):
                return self._take_over(lock)
            # GET_LOCK already waited lock_timeout seconds: ask again right away.
            return 0.0
        except self._driver.Error as exc:
            log.warning(
                "coordination shard %s unreachable (%s); retrying in %ss",
                self.config.coordination_shard,
                describe(exc),
                self.config.interval,
            )
            self._drop_lock_session()
            self.state = None
            self._publish()
            return float(self.config.interval)

    def _take_over(self, lock: SchedulerLock) -> float:
        try:
            self.state = lock.take_over(self.config.node)
        except LeadershipLost as exc:
            log.warning("got the scheduler lock but could not record it (%s); standing by", exc)
            self._drop_lock_session()
            return float(self.config.interval)
        self.role = ACTIVE
        log.info("now the active scheduler (epoch %s, lock session %s)", self.state.epoch, lock.connection_id)
        self._publish()
        return 0.0

    # -- active ----------------------------------------------------------------

    def _work_round(self) -> float:
        started = self._clock()
        lock, state = self._lock, self.state
        if lock is None or state is None:  # only _take_over makes a node active, with both set
            self.role = STANDBY
            return 0.0
        try:
            for shard in self.config.shards:
                self._work_on(shard, lock)
            lock.ensure_held()
            lock.heartbeat(self.config.node, state.epoch)
        except LeadershipLost as exc:
            log.error("lost the scheduler lock (%s): stopped working, standing by", exc)
            self.role = STANDBY
            self.state = None
            self._close_all()
            self._publish()
            return float(self.config.interval)
        self._publish()
        return max(0.0, self.config.interval - (self._clock() - started))

    def _work_on(self, shard: ShardConfig, lock: SchedulerLock) -> None:
        try:
            connection = self._work.get(shard.shard)
            if connection is None:
                # Confirm the lock before even opening a session for work.
                lock.ensure_held()
                connection = self._work[shard.shard] = connect(self._driver, self.config, shard)
            report = jobs.run_shard(connection, shard, self.config, lock.ensure_held)
        except self._driver.Error as exc:
            # One shard failing must not stop the others; its session is renewed next round.
            log.warning("shard %s (%s): %s; retrying next round", shard.shard, shard.address, describe(exc))
            close_quietly(self._work.pop(shard.shard, None))
            return
        level = logging.INFO if report.marked_offline or report.purged else logging.DEBUG
        log.log(
            level,
            "shard %s: %s agent(s) marked offline, %s check-in(s) purged%s",
            shard.shard,
            report.marked_offline,
            report.purged,
            "" if report.caught_up else " (more next round)",
        )

    # -- sessions and status ---------------------------------------------------

    def _lock_session(self) -> SchedulerLock:
        if self._lock is None:
            config = self.config
            connection = connect(
                self._driver,
                config,
                config.coordination,
                # GET_LOCK blocks for lock_timeout: the read timeout must outlast it.
                read_timeout=config.lock_timeout + config.read_timeout,
                # The active touches this session every round and a standby sits in
                # GET_LOCK: a session silent for longer belongs to a node cut off from
                # the database, and the server ending it frees the lock for a standby.
                wait_timeout=max(30, 3 * config.interval + config.lock_timeout),
            )
            self._lock = SchedulerLock(connection, config.lock_name, self._driver.Error)
        return self._lock

    def _drop_lock_session(self) -> None:
        if self._lock is not None:
            close_quietly(self._lock.connection)
            self._lock = None

    def _close_all(self) -> None:
        for shard in list(self._work):
            close_quietly(self._work.pop(shard))
        self._drop_lock_session()

    def _publish(self) -> None:
        state = self.state
        status = build_status(
            self.role,
            self.config.node,
            state.holder if state else None,
            state.epoch if state else None,
            state.since if state else None,
        )
        try:
            self._write(self.config.status_path, status)
        except OSError as exc:
            log.warning("cannot write %s: %s", self.config.status_path, exc.strerror)


class SupervisedScheduler(Scheduler):
    """The scheduler as the child of a singleton supervisor, fenced by its epoch.

    It is active from the start (the supervisor holds the lock) as long as
    scheduler_state names its node and epoch; at the first refusal it is deposed
    and the process ends. The supervisor writes the status file.
    """

    def __init__(self, config: Config, driver: Any, singleton: str, holder: str, epoch: int, **kwargs: Any):
        kwargs.setdefault("status_writer", lambda _path, _status: None)
        super().__init__(config, driver, **kwargs)
        self.singleton = singleton
        self.holder = holder
        self.epoch = epoch
        self.deposed = False

    def step(self) -> float:
        if self.role == ACTIVE:
            delay = self._work_round()
            # _work_round stands down on LeadershipLost: for a child, that is the end.
            self.deposed = self.role != ACTIVE
            return delay
        try:
            fence = self._lock_session()
            fence.ensure_held()
        except LeadershipLost as exc:
            log.error("%s", exc)
            self.deposed = True
            return 0.0
        except self._driver.Error as exc:
            log.warning("coordination shard unreachable (%s); retrying in %ss", describe(exc), self.config.interval)
            self._drop_lock_session()
            return float(self.config.interval)
        self.state = SchedulerState(holder=self.holder, epoch=self.epoch, since=None, heartbeat=None)
        self.role = ACTIVE
        log.info("working for %s, epoch %s", self.singleton, self.epoch)
        return 0.0

    def _lock_session(self) -> Any:
        if self._lock is None:
            connection = connect(self._driver, self.config, self.config.coordination)
            self._lock = EpochFence(connection, self.singleton, self.holder, self.epoch, self._driver.Error)  # type: ignore[assignment]
        return self._lock


def install_signal_handlers(stop: threading.Event) -> None:
    """SIGTERM (systemd) and SIGINT (a terminal) ask the loop to finish."""

    def request_stop(signum: int, _frame: Any) -> None:
        log.info("%s received, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)


def run(scheduler: Scheduler, stop: threading.Event) -> None:
    """Step until asked to stop, then shut down cleanly."""
    try:
        while not stop.is_set() and not getattr(scheduler, "deposed", False):
            stop.wait(scheduler.step())
    finally:
        scheduler.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fleet-scheduler", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG_PATH, help="config file (default: %(default)s)")
    args = parser.parse_args(argv)

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"fleet-scheduler: {exc}", file=sys.stderr)
        return 2
    # journald stamps time and unit; stdout is the journal under systemd.
    logging.basicConfig(stream=sys.stdout, level=config.log_level, format="%(levelname)s %(message)s")
    try:
        driver = load_driver()
    except ImportError:
        print("fleet-scheduler: the MySQLdb driver is missing (install python3-mysqldb)", file=sys.stderr)
        return 1

    stop = threading.Event()
    install_signal_handlers(stop)
    singleton = os.environ.get("FLEET_SINGLETON")
    log.info(
        "fleet-scheduler %s on %s: %s shard(s), %s",
        __version__,
        config.node,
        len(config.shards),
        f"supervised as singleton {singleton!r}"
        if singleton
        else f"lock {config.lock_name!r} on shard {config.coordination_shard}",
    )
    if not singleton:
        run(Scheduler(config, driver), stop)
        return 0
    try:
        epoch = int(os.environ.get("FLEET_SINGLETON_EPOCH", ""))
    except ValueError:
        print("fleet-scheduler: FLEET_SINGLETON_EPOCH must be the supervisor's epoch number", file=sys.stderr)
        return 2
    scheduler = SupervisedScheduler(
        config, driver, singleton, os.environ.get("FLEET_SINGLETON_NODE", config.node), epoch
    )
    run(scheduler, stop)
    return EXIT_DEPOSED if scheduler.deposed else 0
