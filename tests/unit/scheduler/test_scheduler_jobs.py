"""The shard jobs: the SQL and parameters they send, batching, and the lock check before each unit."""

from __future__ import annotations

import pytest
from fleet_scheduler import jobs
from fleet_scheduler.lock import LeadershipLost


class Guard:
    """Counts lock checks; raises LeadershipLost from the `lose_at`-th call on."""

    def __init__(self, lose_at: int | None = None):
        self.calls = 0
        self.lose_at = lose_at

    def __call__(self) -> None:
        self.calls += 1
        if self.lose_at is not None and self.calls >= self.lose_at:
            raise LeadershipLost("lock gone")


@pytest.fixture
def connection(driver):
    return driver.connect(host="172.28.5.10", port=3306, db="fleet_shard_1")


def work(server):
    """Job statements and COMMITs, without the session setup."""
    return [s for s in server.log if not s.sql.startswith("SET ")]


def test_mark_offline_uses_the_missed_checkin_window_and_commits(server, connection):
    server.stale_agents["fleet_shard_1"] = 7
    changed, caught_up = jobs.mark_offline(connection, 180, batch_size=100, max_batches=3, guard=Guard())

    assert (changed, caught_up) == (7, True)
    update, commit = work(server)
    assert update.sql == (
        "UPDATE agents SET online = 0 WHERE online = 1 AND last_seen < NOW(3) - INTERVAL %s SECOND LIMIT %s"
    )
    assert update.params == (180, 100)
    assert commit.sql == "COMMIT"


def test_batches_repeat_until_a_short_batch_each_after_a_lock_check(server, connection):
    server.old_checkins["fleet_shard_1"] = 250
    guard = Guard()
    deleted, caught_up = jobs.purge_checkins(connection, 24, batch_size=100, max_batches=5, guard=guard)

    assert (deleted, caught_up) == (250, True)
    deletes = server.statements("DELETE FROM checkins")
    assert [d.params for d in deletes] == [(24, 100)] * 3
    assert deletes[0].sql == "DELETE FROM checkins WHERE received_at < NOW(3) - INTERVAL %s HOUR LIMIT %s"
    assert guard.calls == 3
    # Every batch is its own transaction.
    assert [s.sql.split()[0] for s in work(server)] == ["DELETE", "COMMIT"] * 3


def test_batches_stop_at_max_batches_and_report_the_backlog(server, connection):
    server.old_checkins["fleet_shard_1"] = 1000
    deleted, caught_up = jobs.purge_checkins(connection, 24, batch_size=100, max_batches=4, guard=Guard())

    assert (deleted, caught_up) == (400, False)
    assert server.old_checkins["fleet_shard_1"] == 600


def test_no_statement_runs_once_the_lock_is_lost(server, connection):
    server.old_checkins["fleet_shard_1"] = 1000
    with pytest.raises(LeadershipLost):
        jobs.purge_checkins(connection, 24, batch_size=100, max_batches=5, guard=Guard(lose_at=3))

    # Two committed batches, then nothing: the third never reached the server.
    assert [s.sql.split()[0] for s in work(server)] == ["DELETE", "COMMIT"] * 2


def test_roll_up_seeds_planned_tenants_then_counts_in_one_transaction(server, connection):
    guard = Guard()
    jobs.roll_up_tenant_stats(connection, ["tenant-001", "tenant-002"], guard)

    statements = work(server)
    assert [s.params for s in statements[:2]] == [("tenant-001",), ("tenant-002",)]
    seed = "INSERT INTO tenant_stats (tenant, agents_total, agents_online, updated_at) VALUES (%s, 0, 0, NOW(3))"
    assert all(s.sql.startswith(seed) for s in statements[:2])
    assert statements[2].sql.startswith(
        "INSERT INTO tenant_stats (tenant, agents_total, agents_online, updated_at) "
        "SELECT tenant, COUNT(*), COALESCE(SUM(online), 0), NOW(3) FROM agents GROUP BY tenant ON DUPLICATE KEY UPDATE"
    )
    assert statements[3].sql.startswith("UPDATE tenant_stats SET agents_total = 0, agents_online = 0")
    assert "NOT EXISTS (SELECT 1 FROM agents WHERE agents.tenant = tenant_stats.tenant)" in statements[3].sql
    assert [s.sql for s in statements[4:]] == ["COMMIT"]
    assert guard.calls == 1


def test_roll_up_checks_the_lock_first(server, connection):
    with pytest.raises(LeadershipLost):
        jobs.roll_up_tenant_stats(connection, ["tenant-001"], Guard(lose_at=1))
    assert work(server) == []


def test_run_shard_runs_every_job_in_order(server, connection, make_config):
    config = make_config(batch_size=10, max_batches=2)
    server.stale_agents["fleet_shard_1"] = 4
    server.old_checkins["fleet_shard_1"] = 25

    report = jobs.run_shard(connection, config.shards[0], config, Guard())

    assert report == jobs.ShardReport(shard=1, marked_offline=4, purged=20, caught_up=False)
    kinds = [s.sql.split()[0] + " " + s.sql.split()[1] for s in work(server) if s.sql != "COMMIT"]
    assert kinds == [
        "UPDATE agents",
        "INSERT INTO",  # the two planned tenants of shard 1
        "INSERT INTO",
        "INSERT INTO",  # the roll-up
        "UPDATE tenant_stats",
        "DELETE FROM",
        "DELETE FROM",
    ]
    # The offline window comes from the config: 3 missed check-ins x 60 s.
    assert server.statements("UPDATE agents")[0].params == (180, 10)
