"""The SQL of the check-in service, against one MySQL/MariaDB schema per shard.

Connections: each worker thread keeps one persistent connection per shard
(thread-local, autocommit off). A connection found dead is replaced and the
unit of work retried once when that is safe.

Outages: after a shard refused a new connection, every request for it gets
StoreUnavailable at once for `db_retry_after_seconds`; then ONE thread of the
process probes while the others wait briefly for its verdict (and fail fast if
it takes longer), until the shard answers again. A dead database so costs
requests a 503 in microseconds instead of tying up every thread in connect or
read timeouts (which would also starve /healthz, served by the same threads),
and a recovered one is used again by every thread as soon as the probe passed.

Check-ins: the check-ins that arrive for a shard while one of this
process's check-in transactions is in flight share the next one (group
commit, see groupcommit.py): one multi-row INSERT of the check-ins, one
multi-row agent upsert, one lookup of which agents have pending commands, one
COMMIT. Each request is still answered only after the COMMIT that holds its
row. A batch that meets a duplicate check-in (a retry) is rolled back and its
check-ins are redone one by one, so only the retry is answered "duplicate".

Switchovers: a shard's primary that is being replaced refuses writes
(read-only) and ends its client connections; the new primary takes them at the
same writer address a moment later. Work refused as read-only is redone on a
fresh connection every SWITCH_POLL_SECONDS for up to `db_switch_wait_seconds`
(nothing of it was applied, so this is safe even for work that is not
idempotent): a planned switchover costs latency, not failed requests.

Every driver error leaves this module as StoreUnavailable (HTTP 503).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .config import Config, ShardConfig
from .groupcommit import GroupCommit
from .validation import AgentQuery, CheckinRequest

try:
    import MySQLdb
except ImportError:  # the controller running the unit tests has no driver; they inject a fake
    MySQLdb = None

log = logging.getLogger(__name__)

# Client error codes (CR_*) and server codes (ER_*) the retry logic depends on.
SERVER_GONE = 2006  # CR_SERVER_GONE_ERROR: the statement never reached the server
# Also CR_SERVER_LOST (mid-query), CR_SERVER_LOST_EXTENDED and ER_CONNECTION_KILLED (a KILL CONNECTION
# on the server, as a switchover ends the fenced primary's connections).
LOST_CONNECTION = {2006, 2013, 2055, 1927}
DUPLICATE_KEY = 1062  # ER_DUP_ENTRY
DEADLOCK = 1213  # ER_LOCK_DEADLOCK: InnoDB rolled the whole transaction back, safe to redo
# ER_OPTION_PREVENTS_STATEMENT: a read-only server refused the statement before applying anything,
# as a fenced primary does during a switchover.
READ_ONLY = 1290
HANDSHAKE_LOST = 2013  # CR_SERVER_LOST while connecting: reset during the handshake
# How often work refused by a fenced primary is tried again during a switchover.
SWITCH_POLL_SECONDS = 0.1

# Row locks are only ever held for a few statements; waiting longer than this
# means contention the client is better off retrying than waiting on (and it
# must stay below the read timeout so the error is a clean one).
LOCK_WAIT_SECONDS = 3
# How long a request waits for another thread's probe of a shard that was down:
# long enough for a healthy connect, short enough to free threads when not.
PROBE_WAIT_SECONDS = 0.5
MAX_COMMANDS_PER_CHECKIN = 100
# Check-ins per shared transaction: bounds the statement size (about 150 bytes
# of SQL per check-in) and the rows one transaction locks.
MAX_CHECKINS_PER_TRANSACTION = 32


class StoreUnavailable(Exception):
    """A shard could not do the work; the client should retry later (HTTP 503)."""

    def __init__(self, shard_id: int, reason: str):
        super().__init__(f"shard {shard_id} unavailable: {reason}")
        self.shard_id = shard_id
        self.reason = reason


@dataclass
class _Outage:
    """A shard that refused a connection, as seen by this process."""

    reason: str
    retry_at: float  # when one thread may probe (or, while probing, take the probe over)
    prober: int | None = None  # thread id of the thread probing now
    over: threading.Event = field(default_factory=threading.Event)  # set when this outage ends or is renewed


@dataclass(frozen=True)
class CheckinResult:
    duplicate: bool
    commands: list[dict[str, Any]] = field(default_factory=list)


# The agent row. Assignments run left to right: status is decided while
# last_seq still holds the old value, so a late (reordered) check-in never
# rolls status or last_seq back.
UPSERT_AGENT = """
INSERT INTO agents (tenant, agent_id, last_seq, status, online, last_seen, first_seen)
VALUES (%s, %s, %s, %s, 1, NOW(3), NOW(3))
ON DUPLICATE KEY UPDATE
    status = IF(VALUES(last_seq) >= last_seq, VALUES(status), status),
    last_seq = GREATEST(last_seq, VALUES(last_seq)),
    online = 1,
    last_seen = NOW(3)
"""
INSERT_CHECKIN = """
INSERT INTO checkins (tenant, agent_id, seq, status, received_at, served_by)
VALUES (%s, %s, %s, %s, NOW(3), %s)
"""
TOUCH_AGENT = "UPDATE agents SET online = 1, last_seen = NOW(3) WHERE tenant = %s AND agent_id = %s"
DELIVER_PENDING = """
UPDATE commands SET delivered_at = NOW(3), delivered_seq = %s
WHERE tenant = %s AND agent_id = %s AND delivered_at IS NULL
ORDER BY id LIMIT %s
"""
SELECT_DELIVERED = """
SELECT id, command, created_at FROM commands
WHERE tenant = %s AND agent_id = %s AND delivered_seq = %s
ORDER BY id
"""
INSERT_COMMAND = """
INSERT INTO commands (tenant, agent_id, command, created_at)
SELECT tenant, agent_id, %s, NOW(3) FROM agents WHERE tenant = %s AND agent_id = %s
"""
# The batched forms of INSERT_CHECKIN and UPSERT_AGENT: one VALUES tuple per check-in.
INSERT_CHECKINS = "INSERT INTO checkins (tenant, agent_id, seq, status, received_at, served_by) VALUES "
CHECKIN_VALUES = "(%s, %s, %s, %s, NOW(3), %s)"
UPSERT_AGENTS = "INSERT INTO agents (tenant, agent_id, last_seq, status, online, last_seen, first_seen) VALUES "
AGENT_VALUES = "(%s, %s, %s, %s, 1, NOW(3), NOW(3))"
UPSERT_AGENTS_UPDATE = " " + UPSERT_AGENT[UPSERT_AGENT.index("ON DUPLICATE KEY UPDATE") :]
# Which of a batch's agents have a command waiting (idx_commands_pending); usually none.
SELECT_PENDING_AGENTS = "SELECT DISTINCT tenant, agent_id FROM commands WHERE delivered_at IS NULL AND ("
AGENT_KEY = "(tenant = %s AND agent_id = %s)"
COUNT_AGENTS = "SELECT COUNT(*), COALESCE(SUM(online), 0) FROM agents"
COUNT_PENDING = "SELECT COUNT(*) FROM commands WHERE delivered_at IS NULL"


class ShardStore:
    """Runs units of work on the shard databases named in the config."""

    def __init__(self, config: Config, driver: Any = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        driver = driver or MySQLdb
        if driver is None:
            raise RuntimeError("the MySQLdb driver is missing: install python3-mysqldb")
        self._driver = driver
        self._config = config
        self._clock = clock
        self._sleep = sleep
        self._local = threading.local()
        self._outages: dict[int, _Outage] = {}
        self._outages_lock = threading.Lock()
        self._checkin_groups: dict[int, GroupCommit] = {}
        self._checkin_groups_lock = threading.Lock()

    # -- the units of work --------------------------------------------------

    def checkin(self, shard_id: int, request: CheckinRequest, served_by: str) -> CheckinResult:
        """Record a check-in and hand out the agent's pending commands; return once committed."""
        return self._checkin_group(shard_id).submit((request, served_by))

    def _checkin_group(self, shard_id: int) -> GroupCommit:
        group = self._checkin_groups.get(shard_id)
        if group is None:
            with self._checkin_groups_lock:
                group = self._checkin_groups.get(shard_id)
                if group is None:
                    group = self._checkin_groups[shard_id] = GroupCommit(
                        lambda items: self._checkin_batch(shard_id, items), MAX_CHECKINS_PER_TRANSACTION
                    )
        return group

    def _checkin_batch(self, shard_id: int, items: list[tuple[CheckinRequest, str]]) -> list[Any]:
        """One outcome per (request, served_by): a CheckinResult or the StoreUnavailable to raise."""
        if len(items) > 1:
            try:
                return self._run(shard_id, lambda cursor: _checkin_many(cursor, items, self._driver), idempotent=True)
            except _DuplicateInBatch:
                pass  # rolled back; one by one, only the retried check-in is a duplicate
            except StoreUnavailable as exc:
                return [exc] * len(items)
        outcomes: list[Any] = []
        for request, served_by in items:
            try:
                outcomes.append(self._checkin_one(shard_id, request, served_by))
            except StoreUnavailable as exc:
                outcomes.append(exc)
        return outcomes

    def _checkin_one(self, shard_id: int, request: CheckinRequest, served_by: str) -> CheckinResult:
        """One check-in in its own transaction."""

        def work(cursor: Any) -> CheckinResult:
            key = (request.tenant, request.agent_id)
            try:
                cursor.execute(INSERT_CHECKIN, (*key, request.seq, request.status, served_by))
            except self._driver.IntegrityError as exc:
                if _code(exc) != DUPLICATE_KEY:
                    raise
                # A retry of a check-in that already committed: the agent is
                # alive, and it gets the same commands as the first time
                # because that answer may be the one that was lost.
                cursor.execute(TOUCH_AGENT, key)
                return CheckinResult(duplicate=True, commands=_delivered(cursor, key, request.seq))
            cursor.execute(UPSERT_AGENT, (*key, request.seq, request.status))
            handed_out = cursor.execute(DELIVER_PENDING, (request.seq, *key, MAX_COMMANDS_PER_CHECKIN))
            commands = _delivered(cursor, key, request.seq) if handed_out else []
            return CheckinResult(duplicate=False, commands=commands)

        # Idempotent thanks to the unique seq: redoing it after an unknown
        # COMMIT outcome answers "duplicate" with the same commands.
        return self._run(shard_id, work, idempotent=True)

    def list_agents(self, shard_id: int, tenant: str, query: AgentQuery) -> tuple[list[dict[str, Any]], str | None]:
        """One keyset page of a tenant's agents and the cursor of the next page (or None)."""
        sql = "SELECT agent_id, status, online, last_seq, last_seen, first_seen FROM agents WHERE tenant = %s"
        args: list[Any] = [tenant]
        if query.state is not None:
            sql += " AND online = %s"
            args.append(1 if query.state == "online" else 0)
        if query.after is not None:
            sql += " AND agent_id > %s"
            args.append(query.after)
        # One row more than asked tells whether another page exists.
        sql += " ORDER BY agent_id LIMIT %s"
        args.append(query.limit + 1)

        def work(cursor: Any) -> tuple[list[dict[str, Any]], str | None]:
            cursor.execute(sql, args)
            rows = cursor.fetchall()
            page = [
                {
                    "agent_id": agent_id,
                    "status": status,
                    "online": bool(online),
                    "last_seq": int(last_seq),
                    "last_seen": _iso(last_seen),
                    "first_seen": _iso(first_seen),
                }
                for agent_id, status, online, last_seq, last_seen, first_seen in rows[: query.limit]
            ]
            next_after = page[-1]["agent_id"] if len(rows) > query.limit else None
            return page, next_after

        return self._run(shard_id, work, idempotent=True)

    def add_command(self, shard_id: int, tenant: str, agent_id: str, command: str) -> dict[str, Any] | None:
        """Queue a command for a known agent; None when the agent never checked in."""

        def work(cursor: Any) -> dict[str, Any] | None:
            if not cursor.execute(INSERT_COMMAND, (command, tenant, agent_id)):
                return None
            return {"id": int(cursor.lastrowid), "tenant": tenant, "agent_id": agent_id, "command": command}

        # Not idempotent: a second INSERT would queue the command twice.
        return self._run(shard_id, work, idempotent=False)

    def shard_stats(self, shard_id: int) -> dict[str, int]:
        def work(cursor: Any) -> dict[str, int]:
            cursor.execute(COUNT_AGENTS)
            total, online = cursor.fetchone()
            cursor.execute(COUNT_PENDING)
            (pending,) = cursor.fetchone()
            return {"agents_total": int(total), "agents_online": int(online), "commands_pending": int(pending)}

        return self._run(shard_id, work, idempotent=True)

    def ping(self, shard_id: int) -> None:
        """Raise StoreUnavailable unless the shard answers SELECT 1."""

        def work(cursor: Any) -> None:
            cursor.execute("SELECT 1")
            cursor.fetchall()

        self._run(shard_id, work, idempotent=True)

    # -- transactions and connections ---------------------------------------

    def _run(self, shard_id: int, work: Callable[[Any], Any], idempotent: bool) -> Any:
        """Run `work(cursor)` in a transaction and COMMIT; retry once when that is safe.

        Work refused by a read-only server (a fenced primary) is redone on a new connection until
        the switch wait is over, on top of the one retry.
        """
        switch_until = None
        retried = False
        while True:
            self._check_outage(shard_id)
            connection = self._connection(shard_id)
            try:
                cursor = connection.cursor()
                try:
                    result = work(cursor)
                finally:
                    cursor.close()
                connection.commit()
                self._end_outage(shard_id)
                return result
            except self._driver.Error as exc:
                code = _code(exc)
                lost = code in LOST_CONNECTION or isinstance(exc, self._driver.InterfaceError)
                if lost:
                    self._discard(shard_id)
                else:
                    # The server answered (deadlock, constraint...): it is up.
                    self._end_outage(shard_id)
                    self._rollback(shard_id, connection)
                if code == READ_ONLY:
                    now = self._clock()
                    switch_until = now + self._config.db_switch_wait_seconds if switch_until is None else switch_until
                    if now < switch_until:
                        # The writer address may be moving: the next try connects afresh.
                        self._discard(shard_id)
                        self._sleep(SWITCH_POLL_SECONDS)
                        continue
                # Server-gone means the first statement was never sent: safe
                # to redo even when not idempotent. A connection lost
                # mid-transaction (or during COMMIT) leaves the outcome
                # unknown, which only idempotent work may shrug off.
                retry = not retried and (code in (SERVER_GONE, DEADLOCK) or (lost and idempotent))
                if retry:
                    retried = True
                    log.info("shard %s: %s, retrying once", shard_id, _describe(exc))
                    continue
                log.warning("shard %s: %s", shard_id, _describe(exc))
                raise StoreUnavailable(shard_id, _describe(exc)) from None
            except BaseException:
                self._rollback(shard_id, connection)
                raise

    def _connection(self, shard_id: int) -> Any:
        connections = self._connections()
        connection = connections.get(shard_id)
        if connection is None:
            connection = connections[shard_id] = self._connect(shard_id)
        return connection

    def _check_outage(self, shard_id: int) -> None:
        """Fail fast while the shard is known to be down; after the wait, let one thread probe."""
        if shard_id not in self._outages:
            return  # the common case, without taking the lock
        me = threading.get_ident()
        with self._outages_lock:
            outage = self._outages.get(shard_id)
            if outage is None or outage.prober == me:
                return
            now = self._clock()
            if now >= outage.retry_at:
                # Probe (or take over a probe that outlived its timeouts).
                config = self._config
                outage.prober = me
                outage.retry_at = (
                    now + config.db_connect_timeout + config.db_read_timeout + config.db_retry_after_seconds
                )
                return
            if outage.prober is None:
                raise StoreUnavailable(shard_id, f"{outage.reason}; next try in {outage.retry_at - now:.1f}s")
        # Another thread is probing: a healthy shard answers it within milliseconds.
        if outage.over.wait(PROBE_WAIT_SECONDS) and shard_id not in self._outages:
            return
        raise StoreUnavailable(shard_id, f"{outage.reason}; probing whether it is back")

    def _end_outage(self, shard_id: int) -> None:
        if shard_id in self._outages:
            with self._outages_lock:
                outage = self._outages.pop(shard_id, None)
            if outage is not None:
                outage.over.set()

    def _connect(self, shard_id: int) -> Any:
        try:
            return self._connect_once(shard_id)
        except self._driver.Error as exc:
            if _code(exc) != HANDSHAKE_LOST:
                return self._connect_failed(shard_id, exc)
        # A connection cut during its handshake (the writer address moving to a new primary
        # between the SYN and the greeting) says nothing about the server: try once more.
        try:
            return self._connect_once(shard_id)
        except self._driver.Error as exc:
            return self._connect_failed(shard_id, exc)

    def _connect_once(self, shard_id: int) -> Any:
        shard = self._shard(shard_id)
        config = self._config
        return self._driver.connect(
            host=shard.host,
            port=shard.port,
            user=shard.user,
            passwd=shard.password,
            db=shard.database,
            connect_timeout=config.db_connect_timeout,
            read_timeout=config.db_read_timeout,
            write_timeout=config.db_write_timeout,
            charset="utf8mb4",
            autocommit=False,
            init_command=f"SET time_zone = '+00:00', innodb_lock_wait_timeout = {LOCK_WAIT_SECONDS}",
        )

    def _connect_failed(self, shard_id: int, exc: BaseException) -> Any:
        """Record the shard as down (requests fail fast until the next probe) and raise."""
        shard = self._shard(shard_id)
        config = self._config
        reason = f"cannot connect to {shard.host}:{shard.port}: {_describe(exc)}"
        with self._outages_lock:
            previous = self._outages.get(shard_id)
            self._outages[shard_id] = _Outage(reason, self._clock() + config.db_retry_after_seconds)
        if previous is not None:
            previous.over.set()  # its waiters fail now rather than after PROBE_WAIT_SECONDS
        log.warning("shard %s: %s", shard_id, reason)
        raise StoreUnavailable(shard_id, reason) from None

    def _shard(self, shard_id: int) -> ShardConfig:
        try:
            return self._config.shards[shard_id]
        except KeyError:
            raise StoreUnavailable(shard_id, "not in the config") from None

    def _connections(self) -> dict[int, Any]:
        connections = getattr(self._local, "connections", None)
        if connections is None:
            connections = self._local.connections = {}
        return connections

    def _discard(self, shard_id: int) -> None:
        connection = self._connections().pop(shard_id, None)
        if connection is not None:
            # Already broken: closing it is best effort.
            with contextlib.suppress(Exception):
                connection.close()

    def _rollback(self, shard_id: int, connection: Any) -> None:
        try:
            connection.rollback()
        except Exception:  # a rollback that fails means a broken connection
            self._discard(shard_id)


class _DuplicateInBatch(Exception):
    """A check-in of the batch is already recorded: the batch has to be redone one by one."""


def _checkin_many(cursor: Any, items: list[tuple[CheckinRequest, str]], driver: Any) -> list[CheckinResult]:
    """Several check-ins in the current transaction: three statements for all of them when none has commands."""
    # Rows in key order: transactions that lock the same agents lock them in
    # the same order, so they wait for each other instead of deadlocking.
    order = sorted(range(len(items)), key=lambda i: (items[i][0].tenant, items[i][0].agent_id, items[i][0].seq))
    checkin_args: list[Any] = []
    agent_args: list[Any] = []
    for i in order:
        request, served_by = items[i]
        checkin_args += (request.tenant, request.agent_id, request.seq, request.status, served_by)
        agent_args += (request.tenant, request.agent_id, request.seq, request.status)
    try:
        cursor.execute(INSERT_CHECKINS + ", ".join([CHECKIN_VALUES] * len(order)), checkin_args)
    except driver.IntegrityError as exc:
        if _code(exc) != DUPLICATE_KEY:
            raise
        raise _DuplicateInBatch from None
    cursor.execute(UPSERT_AGENTS + ", ".join([AGENT_VALUES] * len(order)) + UPSERT_AGENTS_UPDATE, agent_args)
    keys = sorted({(request.tenant, request.agent_id) for request, _ in items})
    cursor.execute(
        SELECT_PENDING_AGENTS + " OR ".join([AGENT_KEY] * len(keys)) + ")", [part for key in keys for part in key]
    )
    waiting = {(tenant, agent_id) for tenant, agent_id in cursor.fetchall()}
    commands: dict[int, list[dict[str, Any]]] = {}
    for i in order:  # an agent's earliest check-in of the batch gets its commands
        request = items[i][0]
        key = (request.tenant, request.agent_id)
        if key in waiting:
            waiting.discard(key)
            if cursor.execute(DELIVER_PENDING, (request.seq, *key, MAX_COMMANDS_PER_CHECKIN)):
                commands[i] = _delivered(cursor, key, request.seq)
    return [CheckinResult(duplicate=False, commands=commands.get(i, [])) for i in range(len(items))]


def _delivered(cursor: Any, key: tuple[str, str], seq: int) -> list[dict[str, Any]]:
    cursor.execute(SELECT_DELIVERED, (*key, seq))
    return [
        {"id": int(i), "command": command, "created_at": _iso(created)} for i, command, created in cursor.fetchall()
    ]


def _code(exc: BaseException) -> int | None:
    return exc.args[0] if exc.args and isinstance(exc.args[0], int) else None


def _describe(exc: BaseException) -> str:
    if len(exc.args) >= 2:
        return f"({exc.args[0]}) {exc.args[1]}"
    return str(exc) or type(exc).__name__


def _iso(value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.isoformat(timespec="milliseconds") + "Z"
    return value
