#!/usr/bin/env python3
"""Benchmark: sustained check-ins per second through the lab stack, against its transport limit.

Needs the lab up and deployed (`make lab`: the lab's web nodes answer web_nginx_static_probe_path
themselves) and wrk (Debian's package). Two load generators, each measuring
  1. full check-ins (POST /agent/checkin: committed check-in row, agent upsert, pending-command
     lookup in the shard database) through HAProxy, nginx and the service;
  2. the transport limit: the same proxy and nginx answering a static response (no service):
  - the agent simulator's capacity probe (open loop, a step passes with p99 <= --slo-p99-ms and no
    failed request): the operator's tool, Python, its own CPU cost shares the 2 vCPUs;
  - wrk (closed loop, C: busy connections stepped up until p99 passes the SLO or a request fails),
    whose figure is the stack's own; every check-in wrk saw acknowledged is then counted in the
    shards (rows of the run's seq range), so a figure with lost check-ins fails the benchmark.
Then prints both, their ratios and the target (>= 1,000 check-ins/s: 200,000 agents at 30 %/min),
judged on wrk's figure, with the CPU of every process during wrk's best check-in step.
Load goes to the proxy node's own address, not through Docker's published port. With --profile
SECONDS it also measures, during a fixed-rate run at 80 % of the capacity found, the CPU of every
process on the machine (the stack, the simulator, the kernel's helpers) and samples one web worker
with py-spy to split its busy time by component. Results: bench/results/checkin.json.
The service refuses check-ins without the agent's token: the simulator's runs and wrk's roster
carry each agent's token, from the lab inventory's keys (or --agent-keys FILE).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import wrkload
from labtools import BIN, ROOT, agent_keys_file, allow, environment, first_proxy, inventory

# The simulator ships as a tool directory, not an installed package.
sys.path.insert(0, str(ROOT / "tools" / "agentsim"))
from agentsim.agentkeys import AgentKeys, load_agent_keys
from agentsim.errors import UsageError
from agentsim.plan import FleetPlan, load_plan
from agentsim.roster import Roster
from agentsim.verify import DockerExecReader

OUT = ROOT / "bench" / "results"
TARGET_PER_S = 1000.0
WRK_CHECKIN_CONNECTIONS = (1, 2, 4, 8, 16, 32, 64)
WRK_STATIC_CONNECTIONS = (8, 16, 32, 64, 128, 256)


def lab() -> tuple[str, Path, str, list[str], str]:
    """The proxy's published URL, the plan file, the static path, the agent web nodes and the agent keys file."""
    data = inventory()
    hostvars = data["_meta"]["hostvars"]
    proxy = first_proxy(data)
    static = hostvars[proxy].get("web_nginx_static_probe_path")
    if not static:
        sys.exit("the lab sets no web_nginx_static_probe_path (inventories/lab/group_vars/all/lab.yml)")
    OUT.mkdir(parents=True, exist_ok=True)
    plan = OUT / "checkin-plan.json"
    plan.write_text(json.dumps({"fleet_plan": hostvars[proxy]["fleet_plan"]}))
    # The proxy node's own address: the port Docker publishes on 127.0.0.1 goes through
    # docker-proxy, a userland copy loop that is part of the lab, not of the stack.
    keys = str(agent_keys_file(data, OUT / "agent-keys.json"))
    return f"http://{hostvars[proxy]['fleet_address']}:80", plan, static, data["web_agent"]["hosts"], keys


def write_roster(plan: FleetPlan, path: Path, keys: AgentKeys) -> Path:
    """The plan's agents, named and spread over tenants as the simulator does, with each one's token."""
    roster = Roster({tenant.name: tenant.agents for tenant in plan.tenants}, seq_start=0)
    agents = ((roster.agent(k).agent_id, roster.agent(k).tenant) for k in range(roster.size))
    return wrkload.write_roster(path, agents, keys.token)


def agent_keys(path: str, plan_file: Path) -> tuple[AgentKeys, list[str]]:
    """The keys file, checked against the plan's tenants before any load, and the simulator's option for it."""
    plan = load_plan(plan_file)
    try:
        keys = load_agent_keys(path, [tenant.name for tenant in plan.tenants if tenant.agents > 0])
    except UsageError as exc:
        sys.exit(str(exc))
    return keys, ["--agent-keys", path]


def rows_since(plan: FleetPlan, seq_base: int) -> int:
    """Check-in rows with seq >= seq_base in every shard of the plan (through the shard's node, as `verify` reads)."""
    total = 0
    for shard in plan.shards:
        done = subprocess.run(DockerExecReader().command(shard),
                              input=f"SELECT COUNT(*) FROM checkins WHERE seq >= {int(seq_base)}",
                              capture_output=True, text=True, check=False, timeout=300)
        if done.returncode != 0:
            sys.exit(f"counting shard {shard.shard}'s rows on {shard.host} failed: {done.stderr.strip()}")
        total += int(done.stdout.split()[0])
    return total


def wrk_probe(url: str, plan_file: Path, static: str, slo: float, seconds: float,
              keys: AgentKeys) -> dict[str, Any]:
    """wrk's capacity for check-ins (each step's acknowledged check-ins counted in the shards) and the static answer."""
    plan = load_plan(plan_file)
    roster = write_roster(plan, OUT / "checkin-roster.txt", keys)
    cpu: dict[int, dict[str, float]] = {}
    lost: dict[int, int] = {}

    def checkin_step(connections: int) -> wrkload.Step:
        seq_base = time.time_ns() // 1000
        before, children, started = cpu_ticks(), os.times(), time.monotonic()
        step = wrkload.run_step(url, connections, seconds, "checkin", "/agent/checkin", roster, seq_base)
        after, children_after, elapsed = cpu_ticks(), os.times(), time.monotonic() - started
        machine, shares = cpu_percent(before, after, elapsed)
        # wrk has exited by the second reading of /proc: its CPU comes from this process's children.
        spent = (children_after.children_user + children_after.children_system
                 - children.children_user - children.children_system)
        shares["wrk (the load generator)"] = round(spent / elapsed * 100, 1)
        cpu[connections] = {"machine": round(machine + shares["wrk (the load generator)"], 1),
                            "by_process": dict(sorted(shares.items(), key=lambda item: -item[1]))}
        acknowledged = step.requests - step.errors["status"]
        lost[connections] = max(0, acknowledged - rows_since(plan, seq_base))
        return step

    print("  wrk, full check-ins:", flush=True)
    full = wrkload.probe(checkin_step, WRK_CHECKIN_CONNECTIONS, slo, on_step=lambda s: print(wrkload.show(s)))
    print("  wrk, static answer:", flush=True)
    transport = wrkload.probe(lambda c: wrkload.run_step(url, c, seconds, "static", static), WRK_STATIC_CONNECTIONS,
                              slo, on_step=lambda s: print(wrkload.show(s)))
    full["lost_checkins"] = sum(lost.values())
    full["lost_by_step"] = {str(c): n for c, n in lost.items()}
    best = full["at_connections"]
    full["cpu_percent_at_capacity"] = cpu.get(best) if best else None
    return {"full": full, "transport": transport}


def probe(url: str, plan: Path, path: str, start: float, factor: float, ceiling: float, seconds: float,
          slo: float, nodes: int, name: str, keys_option: list[str]) -> dict[str, Any]:
    result = OUT / f"checkin-{name}.json"
    done = subprocess.run(
        [sys.executable, "-m", "agentsim", "probe", "--url", url, "--plan", str(plan), "--path", path,
         "--start-rate", str(start), "--step-factor", str(factor), "--max-rate", str(ceiling),
         "--step-seconds", str(seconds), "--slo-p99-ms", str(slo), "--nodes", str(nodes), "--json", str(result),
         "--label", name, "--max-in-flight", "4000", "--connections", "256", *keys_option, *allow(url)],
        env=environment(), capture_output=True, text=True, check=False)
    print(done.stdout, end="", flush=True)
    if done.returncode:
        sys.exit(f"the {name} probe failed: {done.stderr}")
    return json.loads(result.read_text())


# Where a sampled worker thread is waiting rather than working (py-spy cannot always tell inside a container).
IDLE_LEAVES = ("_worker (concurrent/futures/thread.py", "select (selectors.py", "wait (threading.py",
               "wait (concurrent/futures/_base.py")
# Components of a busy sample, searched from the innermost frame outwards.
COMPONENTS = (("MySQLdb/", "MySQLdb: statements on the shard, the wait for MariaDB included"),
              ("json/", "JSON encoding and decoding"),
              ("falcon/", "falcon: routing, request and response objects"),
              ("gunicorn/http/", "gunicorn: HTTP parsing and writing"),
              ("gunicorn/", "gunicorn: worker loop and socket handling"),
              ("fleet_checkin/", "the service's own code (validation, routing, SQL flow)"))


def cpu_ticks() -> dict[str, int]:
    """CPU ticks (user + system) used so far by every process on the machine, summed by command name."""
    ticks: dict[str, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            raw = stat.read_text()
        except OSError:
            continue  # the process ended meanwhile
        name, fields = raw[raw.index("(") + 1:raw.rindex(")")], raw[raw.rindex(")") + 2:].split()
        ticks[name] = ticks.get(name, 0) + int(fields[11]) + int(fields[12])
    return ticks


def cpu_percent(before: dict[str, int], after: dict[str, int], elapsed: float) -> tuple[float, dict[str, float]]:
    """Percent of one CPU used between two cpu_ticks() readings: by the whole machine, and by each command at
    1 % and over, largest first."""
    hertz = os.sysconf("SC_CLK_TCK")
    cpu = {name: (after[name] - before.get(name, 0)) / hertz / elapsed * 100 for name in after}
    shares = {name: round(share, 1) for name, share in sorted(cpu.items(), key=lambda i: -i[1]) if share >= 1.0}
    return round(sum(cpu.values()), 1), shares


def profile(url: str, plan: Path, rate: float, seconds: int, node: str, keys_option: list[str]) -> dict[str, Any]:
    """During a fixed-rate run: the CPU of every process of the stack, and py-spy's view of one web worker."""
    pids = subprocess.run(["docker", "top", node, "-eo", "pid,args"], capture_output=True, text=True,
                          check=True).stdout.splitlines()
    workers = [line.split()[0] for line in pids if "gunicorn" in line][1:]  # the first is the master
    spy = str(BIN / "py-spy") if (BIN / "py-spy").exists() else shutil.which("py-spy")
    run = subprocess.Popen([sys.executable, "-m", "agentsim", "run", "--url", url, "--plan", str(plan), "--rate",
                            str(rate), "--duration", str(seconds + 4), *keys_option, *allow(url)], env=environment(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    samples = OUT / "checkin-profile.txt"
    samples.unlink(missing_ok=True)
    try:
        time.sleep(2)  # past the simulator's start
        before, started = cpu_ticks(), time.monotonic()
        if spy:
            subprocess.run([spy, "record", "--duration", str(seconds), "--format", "raw", "--output", str(samples),
                            "--pid", workers[0], "--nonblocking"], capture_output=True, check=False,
                           timeout=seconds + 30)
        else:
            time.sleep(seconds)
        after, elapsed = cpu_ticks(), time.monotonic() - started
    finally:
        run.wait(timeout=seconds + 60)
    machine, stack_cpu = cpu_percent(before, after, elapsed)
    busy = idle = 0
    parts: dict[str, int] = {}
    for line in samples.read_text().splitlines() if samples.exists() else []:
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if any(marker in frames[-1] for marker in IDLE_LEAVES):
            idle += int(count)
            continue
        busy += int(count)
        part = next((label for frame in reversed(frames) for marker, label in COMPONENTS if marker in frame), "other")
        parts[part] = parts.get(part, 0) + int(count)
    return {"rate_per_s": rate, "seconds": round(elapsed, 1), "cpu_percent_by_process": stack_cpu,
            "machine_cpu_percent": machine, "cpus": os.cpu_count(),
            "worker_busy_share": round(busy / (busy + idle), 3) if busy + idle else None,
            "worker_busy_by_component": {k: round(v / busy, 3) for k, v in sorted(parts.items(), key=lambda i: -i[1])}
            if busy else {}, "py_spy": bool(spy)}


def show_profile(figures: dict[str, Any]) -> str:
    lines = [f"where the time goes at {figures['rate_per_s']:.0f} check-ins/s "
             f"(CPU of the whole machine: {figures['machine_cpu_percent']:.0f} % of {figures['cpus'] * 100} %):"]
    lines += [f"  {share:6.1f} %  {name}" for name, share in figures["cpu_percent_by_process"].items()]
    if figures["worker_busy_by_component"]:
        lines.append(f"one gunicorn worker (py-spy): busy {figures['worker_busy_share'] * 100:.0f} % of samples, "
                     "its busy time by component:")
        lines += [f"  {share * 100:6.1f} %  {name}" for name, share in figures["worker_busy_by_component"].items()]
    elif not figures["py_spy"]:
        lines.append("(py-spy is not installed: pip install py-spy, for the web worker's own split)")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slo-p99-ms", type=float, default=100.0)
    parser.add_argument("--step-seconds", type=float, default=10.0)
    parser.add_argument("--max-rate", type=float, default=4000.0)
    parser.add_argument("--profile", type=int, default=0, metavar="SECONDS")
    parser.add_argument("--agent-keys", metavar="FILE",
                        help="the agents' keys as agentsim reads them (default: the lab inventory's "
                             "fleet_agent_master_keys and fleet_agent_keys): every check-in carries its agent's token")
    args = parser.parse_args()
    try:
        wrkload.wrk_binary()
    except wrkload.WrkUnavailable as exc:
        sys.exit(str(exc))
    url, plan, static, agent_nodes, lab_keys = lab()
    keys, keys_option = agent_keys(args.agent_keys or lab_keys, plan)

    print("1/3 the agent simulator (open loop): full check-ins through the stack", flush=True)
    full = probe(url, plan, "/agent/checkin", 200, 1.25, args.max_rate, args.step_seconds, args.slo_p99_ms,
                 len(agent_nodes), "full", keys_option)
    print("2/3 the agent simulator: the transport limit (the same proxy and nginx, a static answer)", flush=True)
    transport = probe(url, plan, static, 500, 1.5, args.max_rate * 5, args.step_seconds, args.slo_p99_ms,
                      len(agent_nodes), "transport", keys_option)
    print("3/3 wrk (closed loop, busy connections): full check-ins, then the static answer", flush=True)
    try:
        by_wrk = wrk_probe(url, plan, static, args.slo_p99_ms, args.step_seconds, keys)
    except wrkload.WrkUnavailable as exc:
        sys.exit(str(exc))
    capacity, limit = full["capacity_rps"] or 0.0, transport["capacity_rps"] or 0.0
    wrk_capacity, wrk_limit = by_wrk["full"]["capacity_per_s"], by_wrk["transport"]["capacity_per_s"]
    lost = by_wrk["full"]["lost_checkins"]
    lag = max((s["schedule_lag_p99_ms"] or 0.0) for s in transport["steps"])
    figures = {
        "checkins_per_s": capacity, "checkins_limited_by": full["limited_by"],
        "transport_per_s": limit, "transport_limited_by": transport["limited_by"],
        "ratio": round(capacity / limit, 3) if limit else None, "target_per_s": TARGET_PER_S,
        "slo_p99_ms": args.slo_p99_ms, "agent_web_nodes": len(agent_nodes),
        "simulator_lag_p99_ms_at_transport_limit": lag,
        "wrk": {**by_wrk, "ratio": round(wrk_capacity / wrk_limit, 3) if wrk_limit else None},
    }
    if args.profile:
        figures["profile"] = profile(url, plan, max(capacity * 0.8, 100.0), args.profile, agent_nodes[0],
                                     keys_option)
    (OUT / "checkin.json").write_text(json.dumps(figures, indent=2))
    met = wrk_capacity >= TARGET_PER_S and lost == 0

    def ratio(value: float | None) -> str:
        return f"{value:9.3f}" if value is not None else "        -"

    print(f"""
sustained through the lab (p99 <= {args.slo_p99_ms:g} ms, no failed request, {len(agent_nodes)} agent web nodes)
                        agent simulator (open loop)   wrk (closed loop)
  full check-ins        {capacity:9.1f} /s                  {wrk_capacity:9.1f} /s
  transport limit       {limit:9.1f} /s                  {wrk_limit:9.1f} /s
  ratio                 {ratio(figures['ratio'])}                     {ratio(figures['wrk']['ratio'])}
  stopped by (check-ins) simulator: {full['limited_by']}; wrk: {by_wrk['full']['limited_by']}
  stopped by (static)    simulator: {transport['limited_by']}; wrk: {by_wrk['transport']['limited_by']}
  lost check-ins (wrk's acknowledged ones missing from the shards): {lost}
  target                {TARGET_PER_S:9.1f} /s (on wrk's figure, the stack's own)   {'met' if met else 'MISSED'}""")
    if lag > 50:
        print(f"  note: the simulator fell behind its schedule at the transport limit (p99 lag {lag:.0f} ms): "
              "that figure is the simulator's own ceiling on this machine, a floor for the stack's")
    at_capacity = by_wrk["full"]["cpu_percent_at_capacity"]
    if at_capacity:
        print(f"CPU during wrk's best check-in step ({by_wrk['full']['at_connections']} connections, "
              f"{wrk_capacity:.0f}/s; the whole machine: {at_capacity['machine']:.0f} % of "
              f"{(os.cpu_count() or 1) * 100} %):")
        print("\n".join(f"  {share:6.1f} %  {name}" for name, share in at_capacity["by_process"].items()))
    if args.profile:
        print(show_profile(figures["profile"]))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
