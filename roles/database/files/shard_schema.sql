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

-- The app tier's coordination (owned by roles/app; used on the coordination
-- shard only, created on every shard like the rest of this file).

-- One row per term of a singleton service: the node that got the singleton's
-- named lock, the epoch it runs under, its last keepalive (heartbeat), its clean
-- hand-over (ended_at; NULL when the holder was lost) and the failover gap (ms
-- from the previous term's last heartbeat to this term's start).
CREATE TABLE IF NOT EXISTS singleton_terms (
    name            VARCHAR(64)     NOT NULL,
    epoch           BIGINT UNSIGNED NOT NULL,
    node            VARCHAR(128)    NOT NULL,
    since           DATETIME(3)     NOT NULL,
    heartbeat       DATETIME(3)     NOT NULL,
    ended_at        DATETIME(3)     NULL DEFAULT NULL,
    previous_holder VARCHAR(128)    NOT NULL DEFAULT '',
    gap_ms          INT UNSIGNED    NULL DEFAULT NULL,
    PRIMARY KEY (name, epoch)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- The sequencer's jobs: next_due is the next due time not yet turned into a
-- run. The row lock serialises creating and claiming the job's runs.
CREATE TABLE IF NOT EXISTS sequencer_jobs (
    job        VARCHAR(64)  NOT NULL,
    schedule   VARCHAR(255) NOT NULL,
    next_due   DATETIME(3)  NULL DEFAULT NULL,
    updated_at DATETIME(3)  NOT NULL,
    PRIMARY KEY (job)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- One row per due run of a job (pending, running, succeeded, failed). epoch is
-- the claim in force (the id of its sequencer_attempts row); lease_until is
-- renewed by the running node, and a run whose lease ended is run again.
CREATE TABLE IF NOT EXISTS sequencer_runs (
    id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    job         VARCHAR(64)     NOT NULL,
    due_at      DATETIME(3)     NOT NULL,
    state       VARCHAR(16)     NOT NULL DEFAULT 'pending',
    attempt     INT UNSIGNED    NOT NULL DEFAULT 0,
    failures    INT UNSIGNED    NOT NULL DEFAULT 0,
    lost        INT UNSIGNED    NOT NULL DEFAULT 0,
    epoch       BIGINT UNSIGNED NOT NULL DEFAULT 0,
    node        VARCHAR(128)    NOT NULL DEFAULT '',
    not_before  DATETIME(3)     NOT NULL,
    lease_until DATETIME(3)     NULL DEFAULT NULL,
    created_at  DATETIME(3)     NOT NULL,
    started_at  DATETIME(3)     NULL DEFAULT NULL,
    ended_at    DATETIME(3)     NULL DEFAULT NULL,
    exit_code   INT             NULL DEFAULT NULL,
    PRIMARY KEY (id),
    -- One run per due time of a job, whichever node creates it.
    UNIQUE KEY uq_sequencer_runs_due (job, due_at),
    -- Claimable runs: WHERE state = 'pending' AND not_before <= ...
    KEY idx_sequencer_runs_queue (state, not_before),
    -- The global cap: running runs of a job; and the claim's pick per job.
    KEY idx_sequencer_runs_job (job, state, not_before),
    -- Expired leases: WHERE state = 'running' AND lease_until < NOW(3)
    KEY idx_sequencer_runs_lease (state, lease_until),
    -- Retention of finished runs.
    KEY idx_sequencer_runs_ended (ended_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- The ledger: one row per execution of a run. id is the epoch (fencing token)
-- of the claim; outcome is running, succeeded, failed, timeout, fenced (the
-- node stopped it when it could not renew its lease) or lost (its lease expired).
CREATE TABLE IF NOT EXISTS sequencer_attempts (
    id         BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    run_id     BIGINT UNSIGNED NOT NULL,
    job        VARCHAR(64)     NOT NULL,
    due_at     DATETIME(3)     NOT NULL,
    attempt    INT UNSIGNED    NOT NULL,
    node       VARCHAR(128)    NOT NULL,
    started_at DATETIME(3)     NOT NULL,
    ended_at   DATETIME(3)     NULL DEFAULT NULL,
    outcome    VARCHAR(16)     NOT NULL DEFAULT 'running',
    exit_code  INT             NULL DEFAULT NULL,
    output     MEDIUMTEXT      NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uq_sequencer_attempts_run (run_id, attempt),
    KEY idx_sequencer_attempts_job (job, started_at),
    KEY idx_sequencer_attempts_ended (ended_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
