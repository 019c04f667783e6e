-- sysbench 1.0 workload: the check-in transaction of the web tier
-- (roles/web/files/fleet_checkin/store.py, ShardStore.checkin) on a shard
-- schema (roles/database/files/shard_schema.sql) filled by bench/mysql_tuning.py:
-- insert the check-in, upsert the agent row, hand out its pending commands,
-- commit. Agents are picked uniformly; seq is unique per run, thread and event.

sysbench.cmdline.options = {
   agents = {"Agents in the data set (agent-0000001 ...)", 50000},
   tenants = {"Tenants the agents are spread over (tenant-001 ...)", 4},
   run_id = {"Number of this run, so that seq stays unique across runs", 1},
}

local INSERT_CHECKIN = "INSERT INTO checkins (tenant, agent_id, seq, status, received_at, served_by) " ..
   "VALUES ('%s', '%s', %.0f, 'ok', NOW(3), 'bench')"
local UPSERT_AGENT = "INSERT INTO agents (tenant, agent_id, last_seq, status, online, last_seen, first_seen) " ..
   "VALUES ('%s', '%s', %.0f, 'ok', 1, NOW(3), NOW(3)) ON DUPLICATE KEY UPDATE " ..
   "status = IF(VALUES(last_seq) >= last_seq, VALUES(status), status), " ..
   "last_seq = GREATEST(last_seq, VALUES(last_seq)), online = 1, last_seen = NOW(3)"
local DELIVER_PENDING = "UPDATE commands SET delivered_at = NOW(3), delivered_seq = %.0f " ..
   "WHERE tenant = '%s' AND agent_id = '%s' AND delivered_at IS NULL ORDER BY id LIMIT 10"

function thread_init()
   drv = sysbench.sql.driver()
   con = drv:connect()
   events = 0
end

function thread_done()
   con:disconnect()
end

function event()
   local n = sysbench.rand.uniform(1, sysbench.opt.agents)
   local tenant = string.format("tenant-%03d", n % sysbench.opt.tenants + 1)
   local agent = string.format("agent-%07d", n)
   events = events + 1
   -- Below 2^53: exact in Lua's numbers.
   local seq = sysbench.opt.run_id * 1e12 + sysbench.tid * 1e9 + events
   con:query("BEGIN")
   con:query(string.format(INSERT_CHECKIN, tenant, agent, seq))
   con:query(string.format(UPSERT_AGENT, tenant, agent, seq))
   con:query(string.format(DELIVER_PENDING, seq, tenant, agent))
   con:query("COMMIT")
end
