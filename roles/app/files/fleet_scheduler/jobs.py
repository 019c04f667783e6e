"""The periodic work on one shard, as small committed units.

Every unit starts with `guard()`, which raises LeadershipLost when this node no
longer holds the scheduler lock, and ends with a COMMIT: a deposed scheduler
stops between two units, never with a transaction half done. Large changes run
in batches of `batch_size` rows so row locks are held briefly and check-ins
writing the same rows are not stalled; at most `max_batches` per round, the
rest waits for the next round.

Times are compared on the database server (NOW(3), UTC sessions), the clock
the check-in service stamps last_seen and received_at with.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .config import Config, ShardConfig

MARK_OFFLINE = """
UPDATE agents SET online = 0
WHERE online = 1 AND last_seen < NOW(3) - INTERVAL %s SECOND
LIMIT %s
"""
# Tenants of the plan get a row before their first agent checks in.
ENSURE_TENANT_ROW = """
INSERT INTO tenant_stats (tenant, agents_total, agents_online, updated_at)
VALUES (%s, 0, 0, NOW(3))
ON DUPLICATE KEY UPDATE tenant = tenant
"""
ROLL_UP_TENANT_STATS = """
INSERT INTO tenant_stats (tenant, agents_total, agents_online, updated_at)
SELECT tenant, COUNT(*), COALESCE(SUM(online), 0), NOW(3) FROM agents GROUP BY tenant
ON DUPLICATE KEY UPDATE
    agents_total = VALUES(agents_total),
    agents_online = VALUES(agents_online),
    updated_at = VALUES(updated_at)
"""
# A tenant whose agents are all gone is absent from the GROUP BY above.
ZERO_TENANTS_WITHOUT_AGENTS = """
UPDATE tenant_stats SET agents_total = 0, agents_online = 0, updated_at = NOW(3)
WHERE NOT EXISTS (SELECT 1 FROM agents WHERE agents.tenant = tenant_stats.tenant)
"""
PURGE_CHECKINS = """
DELETE FROM checkins
WHERE received_at < NOW(3) - INTERVAL %s HOUR
LIMIT %s
"""

Guard = Callable[[], None]


@dataclass(frozen=True)
class ShardReport:
    """What one round did on one shard."""

    shard: int
    marked_offline: int
    purged: int
    # False when max_batches ran out before the work did (it continues next round).
    caught_up: bool


def run_shard(connection: Any, shard: ShardConfig, config: Config, guard: Guard) -> ShardReport:
    """One round of every job on one shard."""
    offline, offline_done = mark_offline(
        connection, config.offline_after_seconds, config.batch_size, config.max_batches, guard
    )
    roll_up_tenant_stats(connection, shard.tenants, guard)
    purged, purge_done = purge_checkins(
        connection, config.retention_hours, config.batch_size, config.max_batches, guard
    )
    return ShardReport(shard=shard.shard, marked_offline=offline, purged=purged, caught_up=offline_done and purge_done)


def mark_offline(
    connection: Any, silent_seconds: int, batch_size: int, max_batches: int, guard: Guard
) -> tuple[int, bool]:
    """Set online = 0 on agents silent for `silent_seconds`; (rows changed, caught up)."""
    return _in_batches(connection, MARK_OFFLINE, (silent_seconds,), batch_size, max_batches, guard)


def roll_up_tenant_stats(connection: Any, planned_tenants: Sequence[str], guard: Guard) -> None:
    """Refresh agents_total / agents_online of every tenant of the shard, in one transaction."""
    guard()
    cursor = connection.cursor()
    try:
        if planned_tenants:
            cursor.executemany(ENSURE_TENANT_ROW, [(tenant,) for tenant in planned_tenants])
        cursor.execute(ROLL_UP_TENANT_STATS)
        cursor.execute(ZERO_TENANTS_WITHOUT_AGENTS)
    finally:
        cursor.close()
    connection.commit()


def purge_checkins(
    connection: Any, retention_hours: int, batch_size: int, max_batches: int, guard: Guard
) -> tuple[int, bool]:
    """Delete check-ins older than `retention_hours`; (rows deleted, caught up)."""
    return _in_batches(connection, PURGE_CHECKINS, (retention_hours,), batch_size, max_batches, guard)


def _in_batches(
    connection: Any, sql: str, params: tuple[Any, ...], batch_size: int, max_batches: int, guard: Guard
) -> tuple[int, bool]:
    """Run `sql ... LIMIT batch_size` until a batch comes back short, at most `max_batches` times."""
    total = 0
    for _ in range(max_batches):
        guard()
        cursor = connection.cursor()
        try:
            cursor.execute(sql, (*params, batch_size))
            affected = cursor.rowcount
        finally:
            cursor.close()
        connection.commit()
        total += affected
        if affected < batch_size:
            return total, True
    return total, False
