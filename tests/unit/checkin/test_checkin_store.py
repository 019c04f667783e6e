"""ShardStore's transactions, retries and fail-fast, against a scripted fake MySQLdb."""

from __future__ import annotations

import threading
import time
from datetime import datetime

import pytest
from fleet_checkin import store as store_module
from fleet_checkin.config import parse_config
from fleet_checkin.store import CheckinResult, ShardStore, StoreUnavailable
from fleet_checkin.validation import AgentQuery, CheckinRequest


class Error(Exception):
    pass


class InterfaceError(Error):
    pass


class DatabaseError(Error):
    pass


class OperationalError(DatabaseError):
    pass


class IntegrityError(DatabaseError):
    pass


class FakeCursor:
    def __init__(self, connection):
        self.connection = connection
        self.rows = []
        self.lastrowid = None

    def execute(self, sql, args=None):
        driver = self.connection.driver
        statement = " ".join(sql.split())
        self.lastrowid = 77
        driver.statements.append((self.connection.number, statement, tuple(args or ())))
        for index, (fragment, error) in enumerate(driver.failures):
            if fragment in statement:
                del driver.failures[index]
                if error is not None:
                    raise error
                break
        for fragment, (rows, rowcount) in driver.results.items():
            if fragment in statement:
                self.rows = list(rows)
                return rowcount if rowcount is not None else len(self.rows)
        self.rows = []
        return 1

    def fetchall(self):
        return tuple(self.rows)

    def fetchone(self):
        return self.rows[0]

    def close(self):
        pass


class FakeConnection:
    def __init__(self, driver, number):
        self.driver = driver
        self.number = number
        self.closed = False

    def cursor(self):
        assert not self.closed, "a discarded connection was used again"
        return FakeCursor(self)

    def commit(self):
        self.driver.statements.append((self.number, "COMMIT", ()))
        if self.driver.commit_failures:
            raise self.driver.commit_failures.pop(0)

    def rollback(self):
        self.driver.statements.append((self.number, "ROLLBACK", ()))

    def close(self):
        self.closed = True


class FakeDriver:
    """The parts of the MySQLdb module ShardStore uses, with scripted failures."""

    Error = Error
    InterfaceError = InterfaceError
    OperationalError = OperationalError
    IntegrityError = IntegrityError

    def __init__(self):
        self.connects = []
        self.connect_failures = []
        # (SQL fragment, exception or None to let one pass), consumed in order by matching statements
        self.failures = []
        self.commit_failures = []
        self.results = {
            "SELECT 1": ([(1,)], None),
            "UPDATE commands SET delivered_at": ((), 0),
            "SELECT COUNT(*), COALESCE": ([(5, 3)], None),
            "SELECT COUNT(*) FROM commands": ([(2,)], None),
        }
        self.statements = []

    def connect(self, **kwargs):
        self.connects.append(kwargs)
        if self.connect_failures:
            raise self.connect_failures.pop(0)
        return FakeConnection(self, len(self.connects))

    def sql(self):
        return [statement for _, statement, _ in self.statements]


class Clock:
    now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture
def driver():
    return FakeDriver()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(config_data, driver, clock):
    return ShardStore(parse_config(config_data), driver=driver, clock=clock)


REQUEST = CheckinRequest(agent_id="agent-0001", tenant="tenant-001", seq=5, status="ok")
LOST = OperationalError(2013, "Lost connection to server during query")
GONE = OperationalError(2006, "Server has gone away")


def in_another_thread(function, *args):
    """Run function(*args) in a new thread; return what it raised (or None)."""
    raised = []

    def run():
        try:
            function(*args)
        except Exception as exc:
            raised.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return raised[0] if raised else None


def starts(statements):
    return [s.split(" (")[0].split(" SET")[0] for s in statements]


def test_checkin_is_one_transaction_committed_before_returning(store, driver):
    result = store.checkin(1, REQUEST, "web-agent-01")

    assert result.duplicate is False
    assert result.commands == []
    assert starts(driver.sql()) == ["INSERT INTO checkins", "INSERT INTO agents", "UPDATE commands", "COMMIT"]
    assert driver.statements[0][2] == ("tenant-001", "agent-0001", 5, "ok", "web-agent-01")


def test_checkin_hands_out_pending_commands(store, driver):
    driver.results["UPDATE commands SET delivered_at"] = ((), 1)
    driver.results["SELECT id, command"] = ([(9, "reboot", datetime(2024, 1, 2, 3, 4, 5, 678000))], None)

    result = store.checkin(1, REQUEST, "web-agent-01")

    assert result.commands == [{"id": 9, "command": "reboot", "created_at": "2024-01-02T03:04:05.678Z"}]
    assert driver.sql()[-2].startswith("SELECT id, command, created_at FROM commands")


def test_duplicate_seq_touches_the_agent_and_repeats_its_commands(store, driver):
    driver.failures.append(("INSERT INTO checkins", IntegrityError(1062, "Duplicate entry")))
    driver.results["SELECT id, command"] = ([(9, "reboot", None)], None)

    result = store.checkin(1, REQUEST, "web-agent-01")

    assert result.duplicate is True
    assert result.commands == [{"id": 9, "command": "reboot", "created_at": None}]
    assert starts(driver.sql()) == [
        "INSERT INTO checkins",
        "UPDATE agents",
        "SELECT id, command, created_at FROM commands WHERE tenant = %s AND agent_id = %s AND delivered_seq = %s "
        "ORDER BY id",
        "COMMIT",
    ]


def test_other_integrity_errors_roll_back_and_are_503(store, driver):
    driver.failures.append(("INSERT INTO agents", IntegrityError(1406, "Data too long")))

    with pytest.raises(StoreUnavailable, match=r"shard 1 unavailable: \(1406\) Data too long"):
        store.checkin(1, REQUEST, "web-agent-01")

    assert driver.sql()[-1] == "ROLLBACK"
    assert "COMMIT" not in driver.sql()


def test_lost_commit_of_a_checkin_is_redone_and_found_duplicate(store, driver):
    driver.commit_failures.append(LOST)
    # The lost COMMIT did reach the server: the redo runs into the unique key.
    driver.failures.extend(
        [("INSERT INTO checkins", None), ("INSERT INTO checkins", IntegrityError(1062, "Duplicate entry"))]
    )

    result = store.checkin(1, REQUEST, "web-agent-01")

    assert result.duplicate is True
    assert len(driver.connects) == 2
    assert [number for number, statement, _ in driver.statements if statement == "COMMIT"] == [1, 2]


def test_server_gone_is_retried_once_on_a_new_connection_even_for_commands(store, driver):
    store.ping(1)  # an idle connection the server has since closed
    driver.failures.append(("INSERT INTO commands", GONE))

    created = store.add_command(1, "tenant-001", "agent-0001", "reboot")

    assert created == {"id": 77, "tenant": "tenant-001", "agent_id": "agent-0001", "command": "reboot"}
    assert len(driver.connects) == 2
    assert driver.statements[-1] == (2, "COMMIT", ())


def test_lost_connection_during_a_command_insert_is_not_redone(store, driver):
    driver.failures.append(("INSERT INTO commands", LOST))

    with pytest.raises(StoreUnavailable, match="Lost connection"):
        store.add_command(1, "tenant-001", "agent-0001", "reboot")

    assert sum(statement.startswith("INSERT INTO commands") for statement in driver.sql()) == 1
    # The broken connection was dropped: the next call connects afresh.
    store.ping(1)
    assert len(driver.connects) == 2


def test_command_for_unknown_agent_is_none(store, driver):
    driver.results["INSERT INTO commands"] = ((), 0)

    assert store.add_command(1, "tenant-001", "ghost", "reboot") is None


def test_idempotent_work_is_retried_only_once(store, driver):
    driver.failures.extend([("SELECT 1", LOST), ("SELECT 1", LOST)])

    with pytest.raises(StoreUnavailable):
        store.ping(1)

    assert len(driver.connects) == 2


def test_deadlock_is_rolled_back_and_redone_on_the_same_connection(store, driver):
    driver.failures.append(("INSERT INTO agents", OperationalError(1213, "Deadlock found")))

    assert store.checkin(1, REQUEST, "web-agent-01").duplicate is False
    assert len(driver.connects) == 1
    assert driver.sql().count("ROLLBACK") == 1
    assert driver.sql()[-1] == "COMMIT"


def test_connect_failure_fails_fast_until_the_retry_window_passed(store, driver, clock):
    driver.connect_failures.append(OperationalError(2003, "Can't connect to server on '172.28.5.10' (111)"))

    with pytest.raises(StoreUnavailable, match=r"shard 1 unavailable: cannot connect to 172\.28\.5\.10:3306: \(2003\)"):
        store.ping(1)
    clock.now += 0.5
    with pytest.raises(StoreUnavailable, match=r"\(2003\) Can't connect .*; next try in 0\.5s$"):
        store.checkin(1, REQUEST, "web-agent-01")
    assert len(driver.connects) == 1

    clock.now += 0.5
    store.ping(1)
    assert len(driver.connects) == 2
    store.ping(1)  # the outage is over: no more waiting
    assert len(driver.connects) == 2


def test_only_one_thread_probes_a_shard_after_an_outage(store, driver, clock, monkeypatch):
    monkeypatch.setattr(store_module, "PROBE_WAIT_SECONDS", 0.05)
    driver.connect_failures.append(OperationalError(2003, "Can't connect"))
    with pytest.raises(StoreUnavailable):
        store.ping(1)
    clock.now += 1.0
    others = []
    real_connect = driver.connect

    def hanging_connect(**kwargs):
        # The probe hangs; another thread's request must not hang with it.
        others.append(in_another_thread(store.ping, 1))
        raise OperationalError(2013, "Lost connection at 'handshake'")

    driver.connect = hanging_connect
    with pytest.raises(StoreUnavailable, match="handshake"):
        store.ping(1)

    assert isinstance(others[0], StoreUnavailable)
    assert str(others[0]).endswith("probing whether it is back")
    driver.connect = real_connect
    with pytest.raises(StoreUnavailable, match=r"handshake.*next try in 1\.0s"):
        store.ping(1)  # the failed probe started a new retry window


def test_threads_waiting_for_a_successful_probe_carry_on(store, driver, clock):
    driver.connect_failures.append(OperationalError(2003, "Can't connect"))
    with pytest.raises(StoreUnavailable):
        store.ping(1)
    clock.now += 1.0
    waiter_result = []
    real_connect = driver.connect

    def slow_connect(**kwargs):
        waiter = threading.Thread(target=lambda: waiter_result.append(in_another_thread(store.ping, 1)))
        waiter.start()
        time.sleep(0.1)  # the waiter is now waiting for this probe
        slow_connect.waiter = waiter
        driver.connect = real_connect
        return real_connect(**kwargs)

    driver.connect = slow_connect
    store.ping(1)
    slow_connect.waiter.join()

    assert waiter_result == [None]  # no StoreUnavailable: it went ahead once the probe passed
    assert len(driver.connects) == 3  # the failure, the probe, the waiter's own connection


def test_existing_connections_fail_fast_during_an_outage(store, driver, clock):
    store.ping(2)  # this thread holds a connection to shard 2
    driver.connect_failures.append(OperationalError(2003, "Can't connect"))
    assert isinstance(in_another_thread(store.ping, 2), StoreUnavailable)  # that thread's connect failed
    statements = len(driver.statements)

    with pytest.raises(StoreUnavailable, match="next try in"):
        store.ping(2)

    assert len(driver.statements) == statements  # no statement sent on the old connection


def test_shards_fail_independently(store, driver):
    driver.connect_failures.append(OperationalError(2003, "Can't connect"))

    with pytest.raises(StoreUnavailable):
        store.ping(1)
    store.ping(2)


def test_connection_settings_bound_every_wait(store, driver):
    store.ping(2)

    settings = driver.connects[0]
    assert settings["host"] == "172.28.5.11"
    assert settings["db"] == "fleet_shard_2"
    assert settings["passwd"] == "s3cret-two"
    assert (settings["connect_timeout"], settings["read_timeout"], settings["write_timeout"]) == (2, 5, 5)
    assert settings["autocommit"] is False
    assert settings["charset"] == "utf8mb4"
    assert "time_zone = '+00:00'" in settings["init_command"]
    assert "innodb_lock_wait_timeout = 3" in settings["init_command"]


def test_one_connection_per_shard_per_thread(store, driver):
    store.ping(1)
    store.ping(1)
    store.ping(2)
    assert len(driver.connects) == 2

    worker = threading.Thread(target=store.ping, args=(1,))
    worker.start()
    worker.join()
    assert len(driver.connects) == 3


def test_programming_errors_roll_back_and_propagate(store, driver, monkeypatch):
    monkeypatch.setattr(FakeCursor, "fetchone", lambda self: None)

    with pytest.raises(TypeError):
        store.shard_stats(1)

    assert driver.sql()[-1] == "ROLLBACK"


def test_agent_listing_query_and_next_cursor(store, driver):
    seen = datetime(2024, 5, 6, 7, 8, 9)
    driver.results["FROM agents WHERE tenant"] = ([(f"agent-{n}", "ok", 1, n, seen, seen) for n in (3, 4, 5)], None)

    page, next_after = store.list_agents(1, "tenant-001", AgentQuery(state="online", limit=2, after="agent-2"))

    sql, args = driver.statements[0][1:]
    assert sql.endswith("WHERE tenant = %s AND online = %s AND agent_id > %s ORDER BY agent_id LIMIT %s")
    assert args == ("tenant-001", 1, "agent-2", 3)
    assert [a["agent_id"] for a in page] == ["agent-3", "agent-4"]
    assert page[0] == {
        "agent_id": "agent-3",
        "status": "ok",
        "online": True,
        "last_seq": 3,
        "last_seen": "2024-05-06T07:08:09.000Z",
        "first_seen": "2024-05-06T07:08:09.000Z",
    }
    assert next_after == "agent-4"


def test_stats_counts(store):
    assert store.shard_stats(1) == {"agents_total": 5, "agents_online": 3, "commands_pending": 2}


def batch_of(*agents_and_seqs):
    return [
        (CheckinRequest(agent_id=agent, tenant="tenant-001", seq=seq, status="ok"), "web-agent-01")
        for agent, seq in agents_and_seqs
    ]


def test_a_batch_of_checkins_is_three_statements_and_one_commit(store, driver):
    items = batch_of(("agent-0002", 7), ("agent-0001", 5))

    outcomes = store._checkin_batch(1, items)

    assert outcomes == [CheckinResult(duplicate=False), CheckinResult(duplicate=False)]
    assert starts(driver.sql()) == [
        "INSERT INTO checkins",
        "INSERT INTO agents",
        "SELECT DISTINCT tenant, agent_id FROM commands WHERE delivered_at IS NULL AND",
        "COMMIT",
    ]
    insert, upsert, pending = driver.statements[:3]
    assert insert[1].endswith("VALUES (%s, %s, %s, %s, NOW(3), %s), (%s, %s, %s, %s, NOW(3), %s)")
    # In key order, whatever the arrival order: concurrent batches lock agents in the same order.
    assert insert[2] == (
        "tenant-001",
        "agent-0001",
        5,
        "ok",
        "web-agent-01",
        "tenant-001",
        "agent-0002",
        7,
        "ok",
        "web-agent-01",
    )
    assert upsert[2] == ("tenant-001", "agent-0001", 5, "ok", "tenant-001", "agent-0002", 7, "ok")
    assert "ON DUPLICATE KEY UPDATE status = IF(VALUES(last_seq) >= last_seq" in upsert[1]
    assert pending[1].endswith("((tenant = %s AND agent_id = %s) OR (tenant = %s AND agent_id = %s))")
    assert pending[2] == ("tenant-001", "agent-0001", "tenant-001", "agent-0002")


def test_a_batch_hands_commands_to_the_agents_that_have_some(store, driver):
    driver.results["SELECT DISTINCT tenant, agent_id"] = ([("tenant-001", "agent-0002")], None)
    driver.results["UPDATE commands SET delivered_at"] = ((), 1)
    driver.results["SELECT id, command"] = ([(9, "reboot", None)], None)
    items = batch_of(("agent-0001", 5), ("agent-0002", 8), ("agent-0002", 9))

    outcomes = store._checkin_batch(1, items)

    assert [outcome.commands for outcome in outcomes] == [[], [{"id": 9, "command": "reboot", "created_at": None}], []]
    updates = [args for _, sql, args in driver.statements if sql.startswith("UPDATE commands")]
    assert updates == [(8, "tenant-001", "agent-0002", 100)]  # once, for the agent's earliest check-in


def test_a_batch_with_a_duplicate_is_rolled_back_and_redone_one_by_one(store, driver):
    driver.failures.extend(
        [
            ("INSERT INTO checkins", IntegrityError(1062, "Duplicate entry")),  # the batch
            ("INSERT INTO checkins", None),  # agent-0001 alone
            ("INSERT INTO checkins", IntegrityError(1062, "Duplicate entry")),  # agent-0002 alone: the retry
        ]
    )
    items = batch_of(("agent-0001", 5), ("agent-0002", 7))

    outcomes = store._checkin_batch(1, items)

    assert [outcome.duplicate for outcome in outcomes] == [False, True]
    assert driver.sql()[1] == "ROLLBACK"
    assert driver.sql().count("COMMIT") == 2


def test_a_batch_that_fails_makes_every_checkin_of_it_unavailable(store, driver):
    driver.failures.append(("INSERT INTO agents", IntegrityError(1406, "Data too long")))

    outcomes = store._checkin_batch(1, batch_of(("agent-0001", 5), ("agent-0002", 7)))

    assert all(isinstance(outcome, StoreUnavailable) for outcome in outcomes)
    assert driver.sql()[-1] == "ROLLBACK"
    assert "COMMIT" not in driver.sql()


def test_a_batch_whose_commit_was_lost_is_redone_and_answered_as_duplicates(store, driver):
    driver.commit_failures.append(LOST)
    driver.failures.extend(
        [
            ("INSERT INTO checkins", None),
            # The lost COMMIT had reached the server: every row of the redo is a duplicate.
            ("INSERT INTO checkins", IntegrityError(1062, "Duplicate entry")),
            ("INSERT INTO checkins", IntegrityError(1062, "Duplicate entry")),
            ("INSERT INTO checkins", IntegrityError(1062, "Duplicate entry")),
        ]
    )

    outcomes = store._checkin_batch(1, batch_of(("agent-0001", 5), ("agent-0002", 7)))

    assert [outcome.duplicate for outcome in outcomes] == [True, True]
    assert len(driver.connects) == 2


def test_concurrent_checkins_share_transactions(store, driver):
    entered = threading.Event()
    release = threading.Event()
    real_commit = FakeConnection.commit

    def slow_first_commit(connection):
        if not entered.is_set():
            entered.set()
            release.wait(5)
        real_commit(connection)

    FakeConnection.commit = slow_first_commit
    try:
        raised = []
        first = threading.Thread(target=lambda: raised.append(in_another_thread(store.checkin, 1, REQUEST, "w")))
        first.start()
        assert entered.wait(5)
        others = [
            threading.Thread(target=store.checkin, args=(1, batch_of((f"agent-01{n}", 1))[0][0], "w")) for n in range(4)
        ]
        for thread in others:
            thread.start()
        group = store._checkin_groups[1]
        deadline = time.monotonic() + 5
        while len(group._queue) < 4:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        release.set()
        for thread in (first, *others):
            thread.join(5)
    finally:
        FakeConnection.commit = real_commit

    assert raised == [None]
    assert driver.sql().count("COMMIT") == 2  # five check-ins, two transactions
    assert sum(sql.startswith("INSERT INTO checkins") for sql in driver.sql()) == 2


READ_ONLY = OperationalError(1290, "The MariaDB server is running with the --read-only option")


class Sleeps:
    """time.sleep for the store: advances the fake clock instead of waiting."""

    def __init__(self, clock):
        self.clock = clock
        self.slept = []

    def __call__(self, seconds):
        self.slept.append(seconds)
        self.clock.now += seconds


def test_a_fenced_primary_costs_latency_not_a_failure(config_data, driver, clock):
    sleeps = Sleeps(clock)
    switching = ShardStore(parse_config(config_data), driver=driver, clock=clock, sleep=sleeps)
    # The old primary refuses the command three times; the fourth connection reaches the new one.
    driver.failures.extend([("INSERT INTO commands", READ_ONLY)] * 3)

    created = switching.add_command(1, "tenant-001", "agent-0001", "reboot")

    assert created["command"] == "reboot"
    assert len(driver.connects) == 4
    assert sleeps.slept == [store_module.SWITCH_POLL_SECONDS] * 3
    assert driver.sql().count("ROLLBACK") == 3


def test_a_read_only_shard_fails_once_the_switch_wait_is_over(config_data, driver, clock):
    config_data["db_switch_wait_seconds"] = 1.0
    sleeps = Sleeps(clock)
    switching = ShardStore(parse_config(config_data), driver=driver, clock=clock, sleep=sleeps)
    driver.failures.extend([("INSERT INTO checkins", READ_ONLY)] * 100)

    with pytest.raises(StoreUnavailable, match="read-only"):
        switching.checkin(1, REQUEST, "web-agent-01")

    # Tried until the wait is over, not one poll more.
    assert 1.0 <= sum(sleeps.slept) <= 1.0 + store_module.SWITCH_POLL_SECONDS + 1e-9


def test_no_switch_wait_when_it_is_zero(config_data, driver, clock):
    config_data["db_switch_wait_seconds"] = 0
    switching = ShardStore(parse_config(config_data), driver=driver, clock=clock, sleep=Sleeps(clock))
    driver.failures.append(("INSERT INTO commands", READ_ONLY))

    with pytest.raises(StoreUnavailable, match="1290"):
        switching.add_command(1, "tenant-001", "agent-0001", "reboot")

    assert len(driver.connects) == 1


def test_a_killed_connection_is_lost_and_idempotent_work_redone_once(store, driver):
    driver.failures.append(("SELECT 1", OperationalError(1927, "Connection was killed")))

    store.ping(1)

    assert len(driver.connects) == 2


def test_a_connection_cut_during_its_handshake_is_tried_once_more(store, driver):
    driver.connect_failures.append(OperationalError(2013, "Lost connection to server at 'handshake: reading initial"))

    store.ping(1)

    assert len(driver.connects) == 2


def test_a_refused_connection_is_an_outage_at_once(store, driver):
    driver.connect_failures.extend([OperationalError(2003, "Can't connect")] * 2)

    with pytest.raises(StoreUnavailable, match="cannot connect"):
        store.ping(1)

    assert len(driver.connects) == 1
