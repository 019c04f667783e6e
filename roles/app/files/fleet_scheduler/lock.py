"""The singleton: a MariaDB named lock on the coordination shard, and its record.

GET_LOCK belongs to the database session that took it: the server releases it
as soon as that session ends (the node died, lost its network past
wait_timeout, or the service stopped), and a standby blocked in GET_LOCK gets it
at once. The holder re-checks IS_USED_LOCK before every unit of work, so after
losing its session it stops within one statement.

scheduler_state keeps who is active for humans and for the standbys' status:
every takeover increments the epoch, the active renews the heartbeat.

Under a singleton supervisor (supervisor.py) the supervisor holds the lock and
its child works with an EpochFence instead: every unit of work first checks
that scheduler_state still names this node with the epoch the child was started
under, so work of a deposed epoch is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .db import describe

GET_LOCK = "SELECT GET_LOCK(%s, %s), CONNECTION_ID()"
IS_USED_LOCK = "SELECT IS_USED_LOCK(%s)"
RELEASE_LOCK = "SELECT RELEASE_LOCK(%s)"
TAKE_OVER = """
INSERT INTO scheduler_state (name, holder, epoch, since, heartbeat)
VALUES (%s, %s, 1, NOW(3), NOW(3))
ON DUPLICATE KEY UPDATE
    holder = VALUES(holder),
    epoch = epoch + 1,
    since = VALUES(since),
    heartbeat = VALUES(heartbeat)
"""
READ_STATE = "SELECT holder, epoch, since, heartbeat FROM scheduler_state WHERE name = %s"
# Fenced by the epoch: a deposed holder's heartbeat matches no row.
HEARTBEAT = "UPDATE scheduler_state SET heartbeat = NOW(3) WHERE name = %s AND holder = %s AND epoch = %s"
# An empty holder means nobody is active (until a standby's GET_LOCK returns).
RESIGN = "UPDATE scheduler_state SET holder = '' WHERE name = %s AND holder = %s AND epoch = %s"
READ_EPOCH = "SELECT holder, epoch FROM scheduler_state WHERE name = %s"


class LeadershipLost(Exception):
    """This node no longer holds the scheduler lock: it must stop working now."""


@dataclass(frozen=True)
class SchedulerState:
    """The scheduler_state row: who is (or was last) active."""

    holder: str
    epoch: int
    since: datetime | None
    heartbeat: datetime | None


class SchedulerLock:
    """The named lock and scheduler_state, on one session of the coordination shard."""

    def __init__(self, connection: Any, name: str, driver_error: type[BaseException], state_name: str | None = None):
        self.connection = connection
        self.name = name
        # The scheduler_state row; the lock's own name unless told otherwise.
        self.state_name = state_name or name
        self._driver_error = driver_error
        self.connection_id: int | None = None

    def try_acquire(self, timeout: int) -> bool:
        """Wait up to `timeout` seconds for the lock; True when this session holds it."""
        acquired, connection_id = self._fetch_one(GET_LOCK, (self.name, timeout))
        self.connection_id = int(connection_id)
        # 0 = timed out, NULL = an error (e.g. the session was killed).
        return acquired == 1

    def ensure_held(self) -> None:
        """Raise LeadershipLost unless this very session still holds the lock."""
        try:
            (owner,) = self._fetch_one(IS_USED_LOCK, (self.name,))
        except self._driver_error as exc:
            raise LeadershipLost(f"the lock session failed: {describe(exc)}") from None
        if owner is None or self.connection_id is None or int(owner) != self.connection_id:
            holder = "nobody" if owner is None else f"connection {owner}"
            raise LeadershipLost(f"lock {self.name!r} is held by {holder}, not by this session ({self.connection_id})")

    def take_over(self, holder: str, record: Callable[[Any, SchedulerState], None] | None = None) -> SchedulerState:
        """Record this node as the active scheduler: a new epoch starts.

        `record(connection, state)` may add statements to the same transaction.
        """
        try:
            self._execute(TAKE_OVER, (self.state_name, holder))
            state = self._read_state()
            if record is not None and state is not None:
                record(self.connection, state)
            self.connection.commit()
        except self._driver_error as exc:
            raise LeadershipLost(f"cannot record the takeover: {describe(exc)}") from None
        if state is None or state.holder != holder:
            raise LeadershipLost(f"scheduler_state does not name {holder!r} after the takeover")
        return state

    def heartbeat(self, holder: str, epoch: int) -> None:
        """Renew the heartbeat; LeadershipLost when the row names another holder or epoch."""
        try:
            renewed = self._execute(HEARTBEAT, (self.state_name, holder, epoch))
            self.connection.commit()
        except self._driver_error as exc:
            raise LeadershipLost(f"cannot renew the heartbeat: {describe(exc)}") from None
        if renewed == 0:
            raise LeadershipLost(f"scheduler_state no longer names {holder!r} with epoch {epoch}")

    def read_state(self) -> SchedulerState | None:
        """The current scheduler_state row (None before the first takeover)."""
        state = self._read_state()
        # End the read-only transaction: the next read must see fresh data.
        self.connection.commit()
        return state

    def release(self, holder: str, epoch: int) -> None:
        """Hand over cleanly: clear the holder, then release the lock for a standby."""
        self._execute(RESIGN, (self.state_name, holder, epoch))
        self.connection.commit()
        self._fetch_one(RELEASE_LOCK, (self.name,))

    def _read_state(self) -> SchedulerState | None:
        row = self._fetch_one(READ_STATE, (self.state_name,), allow_empty=True)
        if row is None:
            return None
        holder, epoch, since, heartbeat = row
        return SchedulerState(holder=holder, epoch=int(epoch), since=since, heartbeat=heartbeat)

    def _execute(self, sql: str, params: tuple[Any, ...]) -> int:
        cursor = self.connection.cursor()
        try:
            cursor.execute(sql, params)
            return cursor.rowcount
        finally:
            cursor.close()

    def _fetch_one(self, sql: str, params: tuple[Any, ...], allow_empty: bool = False) -> Any:
        cursor = self.connection.cursor()
        try:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        finally:
            cursor.close()
        if row is None and not allow_empty:
            raise self._driver_error(f"no result for {sql.split()[1]}")
        return row


class EpochFence:
    """The supervised form of SchedulerLock: work is allowed while scheduler_state names (holder, epoch).

    The supervisor holds the named lock; a standby's takeover increments the
    epoch, after which every ensure_held() of the old child raises.
    """

    def __init__(self, connection: Any, name: str, holder: str, epoch: int, driver_error: type[BaseException]):
        self.connection = connection
        self.name = name
        self.holder = holder
        self.epoch = epoch
        self._driver_error = driver_error

    def ensure_held(self) -> None:
        """Raise LeadershipLost unless the row still names this holder and epoch."""
        try:
            cursor = self.connection.cursor()
            try:
                cursor.execute(READ_EPOCH, (self.name,))
                row = cursor.fetchone()
            finally:
                cursor.close()
            self.connection.commit()
        except self._driver_error as exc:
            raise LeadershipLost(f"cannot check epoch {self.epoch}: {describe(exc)}") from None
        if row is None or (row[0], int(row[1])) != (self.holder, self.epoch):
            found = "no row" if row is None else f"{row[0] or 'nobody'} with epoch {row[1]}"
            raise LeadershipLost(f"epoch {self.epoch} of {self.holder!r} is over: {self.name!r} names {found}")

    def heartbeat(self, _holder: str, _epoch: int) -> None:
        """The supervisor renews the heartbeat; the child only checks its epoch."""
        self.ensure_held()

    def release(self, _holder: str, _epoch: int) -> None:
        """Nothing to release: the supervisor owns the lock."""
