"""A fake MariaDB for the scheduler tests, reached through a fake DB-API driver.

FakeServer keeps what the scheduler relies on: named locks owned by sessions
(released when a session dies), the scheduler_state row, the singleton_terms of
the supervisors, agents to mark offline and check-ins to purge per schema, and
a log of every statement and COMMIT in the order the server received them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class FakeError(Exception):
    """The driver's base error class (MySQLdb.Error)."""


def normalize(sql: str) -> str:
    return " ".join(sql.split())


@dataclass
class Statement:
    session: int
    schema: str
    sql: str
    params: Any


@dataclass
class StateRow:
    holder: str
    epoch: int
    since: datetime
    heartbeat: datetime


@dataclass
class FakeServer:
    log: list[Statement] = field(default_factory=list)
    locks: dict[str, int] = field(default_factory=dict)
    state: dict[str, StateRow] = field(default_factory=dict)
    sessions: dict[int, FakeConnection] = field(default_factory=dict)
    # singleton_terms: (name, epoch) -> the row as a dict.
    terms: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    # Rows the jobs will find, per schema.
    stale_agents: dict[str, int] = field(default_factory=dict)
    old_checkins: dict[str, int] = field(default_factory=dict)
    # Addresses that refuse connections.
    down: set[str] = field(default_factory=set)
    # Statement fragments that fail with a server error.
    failing: dict[str, FakeError] = field(default_factory=dict)
    now: datetime = datetime(2025, 1, 1, 12, 0, 0)
    next_id: int = 100

    def open_session(self, kwargs: dict[str, Any]) -> FakeConnection:
        if kwargs["host"] in self.down:
            raise FakeError(2003, f"Can't connect to server on '{kwargs['host']}' (115)")
        self.next_id += 1
        connection = FakeConnection(self, self.next_id, kwargs)
        self.sessions[connection.session_id] = connection
        return connection

    def kill(self, session_id: int) -> None:
        """The server ends a session (KILL, wait_timeout, restart): its locks go with it."""
        self.sessions[session_id].alive = False
        self.locks = {name: owner for name, owner in self.locks.items() if owner != session_id}

    def statements(self, fragment: str = "", session: int | None = None) -> list[Statement]:
        return [s for s in self.log if fragment in s.sql and (session is None or s.session == session)]

    def execute(self, connection: FakeConnection, sql: str, params: Any) -> tuple[list[tuple[Any, ...]], int]:
        """Answer one statement: (rows, rowcount)."""
        text = normalize(sql)
        self.log.append(Statement(connection.session_id, connection.schema, text, params))
        for fragment, error in self.failing.items():
            if fragment in text:
                raise error
        for prefix, handler in self._handlers():
            if text.startswith(prefix):
                return handler(connection, params)
        raise AssertionError(f"the fake server does not know: {text}")

    def _handlers(self) -> list[tuple[str, Any]]:
        return [
            ("SET ", lambda _c, _p: ([], 0)),
            ("SELECT GET_LOCK", self._get_lock),
            ("SELECT IS_USED_LOCK", lambda _c, p: ([(self.locks.get(p[0]),)], 1)),
            ("SELECT RELEASE_LOCK", self._release_lock),
            ("INSERT INTO scheduler_state", self._take_over),
            ("SELECT holder, epoch, since, heartbeat FROM scheduler_state", self._read_state),
            ("SELECT holder, epoch FROM scheduler_state", self._read_epoch),
            ("INSERT INTO singleton_terms", self._start_term),
            ("UPDATE singleton_terms SET heartbeat = NOW(3), ended_at", self._end_term),
            ("UPDATE singleton_terms SET heartbeat", self._term_heartbeat),
            ("UPDATE scheduler_state SET heartbeat", self._heartbeat),
            ("UPDATE scheduler_state SET holder = ''", self._resign),
            ("UPDATE agents SET online = 0", lambda c, p: ([], self._take(self.stale_agents, c.schema, p[-1]))),
            ("DELETE FROM checkins", lambda c, p: ([], self._take(self.old_checkins, c.schema, p[-1]))),
            ("INSERT INTO tenant_stats", lambda _c, _p: ([], 1)),
            ("UPDATE tenant_stats", lambda _c, _p: ([], 0)),
        ]

    def _get_lock(self, connection: FakeConnection, params: Any) -> tuple[list[tuple[Any, ...]], int]:
        name, _timeout = params
        owner = self.locks.get(name)
        # GET_LOCK in the same session again succeeds; the fake never waits.
        if owner is None or owner == connection.session_id:
            self.locks[name] = connection.session_id
            return [(1, connection.session_id)], 1
        return [(0, connection.session_id)], 1

    def _release_lock(self, connection: FakeConnection, params: Any) -> tuple[list[tuple[Any, ...]], int]:
        mine = self.locks.get(params[0]) == connection.session_id
        if mine:
            del self.locks[params[0]]
        return [(int(mine),)], 1

    def _take_over(self, _connection: FakeConnection, params: Any) -> tuple[list[tuple[Any, ...]], int]:
        name, holder = params
        row = self.state.get(name)
        self.state[name] = StateRow(holder, row.epoch + 1 if row else 1, self.now, self.now)
        return [], 2 if row else 1

    def _read_state(self, _connection: FakeConnection, params: Any) -> tuple[list[tuple[Any, ...]], int]:
        row = self.state.get(params[0])
        if row is None:
            return [], 0
        return [(row.holder, row.epoch, row.since, row.heartbeat)], 1

    def _read_epoch(self, _connection: FakeConnection, params: Any) -> tuple[list[tuple[Any, ...]], int]:
        row = self.state.get(params[0])
        return ([(row.holder, row.epoch)], 1) if row else ([], 0)

    def _start_term(self, _connection: FakeConnection, params: Any) -> tuple[list[tuple[Any, ...]], int]:
        name, epoch, node, since, heartbeat, previous, gap = params
        self.terms[(name, epoch)] = {
            "node": node,
            "since": since,
            "heartbeat": heartbeat,
            "ended_at": None,
            "previous_holder": previous,
            "gap_ms": gap,
        }
        return [], 1

    def _term_heartbeat(self, _connection: FakeConnection, params: Any) -> tuple[list[tuple[Any, ...]], int]:
        term = self.terms.get(tuple(params))
        if term:
            term["heartbeat"] = self.now
        return [], int(term is not None)

    def _end_term(self, connection: FakeConnection, params: Any) -> tuple[list[tuple[Any, ...]], int]:
        done = self._term_heartbeat(connection, params)
        if done[1]:
            self.terms[tuple(params)]["ended_at"] = self.now
        return done

    def _matching_state(self, params: Any) -> StateRow | None:
        name, holder, epoch = params
        row = self.state.get(name)
        return row if row and row.holder == holder and row.epoch == epoch else None

    def _heartbeat(self, _connection: FakeConnection, params: Any) -> tuple[list[tuple[Any, ...]], int]:
        row = self._matching_state(params)
        if row:
            row.heartbeat = self.now
        return [], int(row is not None)

    def _resign(self, _connection: FakeConnection, params: Any) -> tuple[list[tuple[Any, ...]], int]:
        row = self._matching_state(params)
        if row:
            row.holder = ""
        return [], int(row is not None)

    @staticmethod
    def _take(pool: dict[str, int], schema: str, limit: int) -> int:
        taken = min(pool.get(schema, 0), limit)
        pool[schema] = pool.get(schema, 0) - taken
        return taken


class FakeCursor:
    def __init__(self, connection: FakeConnection):
        self.connection = connection
        self.rowcount = -1
        self._rows: list[tuple[Any, ...]] = []

    def execute(self, sql: str, params: Any = None) -> int:
        self._rows, self.rowcount = self.connection.run(sql, params)
        return self.rowcount

    def executemany(self, sql: str, seq: Any) -> int:
        total = 0
        for params in seq:
            total += self.execute(sql, params)
        self.rowcount = total
        return total

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._rows.pop(0) if self._rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows, self._rows = self._rows, []
        return rows

    def close(self) -> None:
        pass


class FakeConnection:
    def __init__(self, server: FakeServer, session_id: int, kwargs: dict[str, Any]):
        self.server = server
        self.session_id = session_id
        self.kwargs = kwargs
        self.schema = kwargs["db"]
        self.alive = True
        self.closed = False

    def run(self, sql: str, params: Any) -> tuple[list[tuple[Any, ...]], int]:
        self._check()
        return self.server.execute(self, sql, params)

    def cursor(self) -> FakeCursor:
        self._check()
        return FakeCursor(self)

    def commit(self) -> None:
        self._check()
        self.server.log.append(Statement(self.session_id, self.schema, "COMMIT", None))

    def rollback(self) -> None:
        self._check()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            # Closing a session ends it on the server too.
            self.server.kill(self.session_id)

    def _check(self) -> None:
        if self.closed:
            raise FakeError(2006, "MySQL server has gone away (closed by the client)")
        if not self.alive:
            raise FakeError(2013, "Lost connection to server during query")


class FakeDriver:
    """Stands in for the MySQLdb module: connect() and Error."""

    Error = FakeError

    def __init__(self, server: FakeServer):
        self.server = server
        self.connects: list[dict[str, Any]] = []

    def connect(self, **kwargs: Any) -> FakeConnection:
        self.connects.append(kwargs)
        return self.server.open_session(kwargs)
