-- wrk script of bench/checkin_throughput.py (driven by bench/wrkload.py): closed-loop load
-- from a C load generator, so that the stack is measured without the agent simulator's own
-- cost per request.
--
-- Arguments (after `--`): MODE ROSTER SEQ_BASE THREADS PATH
--   MODE     checkin: POST a check-in of the roster's next agent; static: GET PATH
--   ROSTER   a file of "agent_id tenant [token]" lines (the plan's agents, as the simulator names
--            them, and each agent's token, sent as "Authorization: Bearer <token>"; wrkload.write_roster)
--   SEQ_BASE first seq of this run; request k of thread t sends SEQ_BASE + k * THREADS + t,
--            so every seq of the run is unique and the run's rows are those with seq >= SEQ_BASE
-- At the end one line "WRK_JSON {...}" carries the figures wrkload.py reads.

local mode, path = "static", "/"
local agents, tenants, bearers, roster_size = {}, {}, {}, 0
local seq_base, stride, counter = 0, 1, 0
local next_tid = 0

function setup(thread)
   thread:set("tid", next_tid)
   next_tid = next_tid + 1
end

function init(args)
   mode, path = args[1], args[5]
   seq_base, stride = tonumber(args[3]), tonumber(args[4])
   if mode == "checkin" then
      for line in io.lines(args[2]) do
         local agent, tenant, token = line:match("^(%S+) (%S+) ?(%S*)$")
         roster_size = roster_size + 1
         agents[roster_size], tenants[roster_size] = agent, tenant
         if token ~= "" then
            bearers[roster_size] = "Bearer " .. token
         end
      end
   end
   counter = 0
end

wrk.headers["Content-Type"] = "application/json"

function request()
   if mode ~= "checkin" then
      return wrk.format("GET", path)
   end
   local n = counter * stride + tid
   counter = counter + 1
   local i = n % roster_size + 1
   local body = string.format('{"agent_id":"%s","tenant":"%s","seq":%d,"status":"ok"}',
                              agents[i], tenants[i], seq_base + n)
   -- This thread's own headers; nil (a roster without tokens) leaves the header out.
   wrk.headers["Authorization"] = bearers[i]
   return wrk.format("POST", path, nil, body)
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'WRK_JSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,' ..
      '"timeout":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
      summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(99), latency.max))
end
