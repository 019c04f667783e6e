-- fleetscale.split: the schema of one tenant shard (fleet_shard_<N>).
--
-- Managed in roles/database/files/shard_schema.sql (owned by the web/check-in
-- service). The database role applies it to every fleet_shard_<N> schema of
-- its host, so it has no USE statement and every statement is idempotent:
-- re-applying it to a populated schema changes nothing.
--
-- Times are UTC (the check-in service sets time_zone = '+00:00' per session).
-- Key columns use utf8mb4_bin: agent ids are case-sensitive and keyset paging
-- (ORDER BY agent_id) must agree with the unique keys.

-- One row per agent, upserted by every check-in.
CREATE TABLE IF NOT EXISTS agents (
    tenant      VARCHAR(64)     NOT NULL,
    agent_id    VARCHAR(64)     NOT NULL,
    last_seq    BIGINT UNSIGNED NOT NULL DEFAULT 0,
    status      VARCHAR(32)     NOT NULL DEFAULT 'ok',
    online      TINYINT(1)      NOT NULL DEFAULT 0,
    last_seen   DATETIME(3)     NOT NULL,
    first_seen  DATETIME(3)     NOT NULL,
    PRIMARY KEY (tenant, agent_id),
    -- GET /api/tenants/{tenant}/agents?state=...: keyset pages per state.
    KEY idx_agents_state (tenant, online, agent_id),
    -- The scheduler marks agents offline: WHERE online = 1 AND last_seen < ...
    KEY idx_agents_online_seen (online, last_seen)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Every accepted check-in. The unique key makes a retried check-in (same
-- tenant, agent and seq) a no-op instead of a second row.
CREATE TABLE IF NOT EXISTS checkins (
    id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    tenant      VARCHAR(64)     NOT NULL,
    agent_id    VARCHAR(64)     NOT NULL,
    seq         BIGINT UNSIGNED NOT NULL,
    status      VARCHAR(32)     NOT NULL,
    received_at DATETIME(3)     NOT NULL,
    served_by   VARCHAR(64)     NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uq_checkins_agent_seq (tenant, agent_id, seq),
    -- Rates over a time window and retention by age.
    KEY idx_checkins_received (received_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Commands queued for agents; handed out (and marked delivered) by the next
-- check-in. delivered_seq remembers which check-in took them, so a retry of
-- that check-in answers the same commands again instead of losing them.
CREATE TABLE IF NOT EXISTS commands (
    id            BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    tenant        VARCHAR(64)     NOT NULL,
    agent_id      VARCHAR(64)     NOT NULL,
    command       VARCHAR(1024)   NOT NULL,
    created_at    DATETIME(3)     NOT NULL,
    delivered_at  DATETIME(3)     NULL DEFAULT NULL,
    delivered_seq BIGINT UNSIGNED NULL DEFAULT NULL,
    PRIMARY KEY (id),
    -- The pending lookup of every check-in: WHERE tenant, agent_id AND delivered_at IS NULL ORDER BY id.
    KEY idx_commands_pending (tenant, agent_id, delivered_at, id),
    -- A retried check-in: WHERE tenant, agent_id AND delivered_seq = ?
    KEY idx_commands_delivered_seq (tenant, agent_id, delivered_seq),
    -- Shard-wide count of undelivered commands (GET /api/stats).
    KEY idx_commands_undelivered (delivered_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Per-tenant counters, refreshed by the app tier's scheduler.
CREATE TABLE IF NOT EXISTS tenant_stats (
    tenant        VARCHAR(64)  NOT NULL,
    agents_total  INT UNSIGNED NOT NULL DEFAULT 0,
    agents_online INT UNSIGNED NOT NULL DEFAULT 0,
    updated_at    DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (tenant)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- The app tier's singleton lease: one row per lease name. The holder renews
-- heartbeat; a standby takes over (epoch + 1) once heartbeat is stale. An empty
-- holder means nobody holds the lease; the epoch fences a deposed holder.
CREATE TABLE IF NOT EXISTS scheduler_state (
    name      VARCHAR(64)     NOT NULL,
    holder    VARCHAR(128)    NOT NULL DEFAULT '',
    epoch     BIGINT UNSIGNED NOT NULL DEFAULT 0,
    since     DATETIME(3)     NOT NULL DEFAULT '1970-01-01 00:00:00.000',
    heartbeat DATETIME(3)     NOT NULL DEFAULT '1970-01-01 00:00:00.000',
    PRIMARY KEY (name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
