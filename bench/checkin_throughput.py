#!/usr/bin/env python3
"""Benchmark: sustained check-ins per second through the lab stack, against its transport limit.

Needs the lab up and deployed (`make lab`: the lab's web nodes answer web_nginx_static_probe_path
themselves). In one run, with the agent simulator's capacity probe (open loop, a step passes with
p99 <= --slo-p99-ms and no failed request):
  1. full check-ins (POST /agent/checkin: committed check-in row, agent upsert, pending-command
     lookup in the shard database) through HAProxy, nginx and the service;
  2. the transport limit: the same proxy and nginx answering a static response (no service);
then prints both, their ratio and the target (>= 1,000 check-ins/s: 200,000 agents at 30 %/min).
Load goes to the proxy node's own address, not through Docker's published port. With --profile
SECONDS it also measures, during a fixed-rate run at 80 % of the capacity found, the CPU of every
process on the machine (the stack, the simulator, the kernel's helpers) and samples one web worker
with py-spy to split its busy time by component. Results: bench/results/checkin.json.
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

from labtools import allow, environment, first_proxy, plain

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results"
BIN = Path(sys.executable).parent
INVENTORY = ROOT / "inventories" / "lab" / "lab.fleet.yml"
TARGET_PER_S = 1000.0




def lab() -> tuple[str, Path, str, list[str]]:
    """The proxy's published URL, the plan file, the static path and the agent web nodes."""
    done = subprocess.run([str(BIN / "ansible-inventory"), "-i", str(INVENTORY), "--list"], env=environment(),
                          capture_output=True, text=True, check=True)
    data = plain(json.loads(done.stdout))
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
    return f"http://{hostvars[proxy]['fleet_address']}:80", plan, static, data["web_agent"]["hosts"]



def probe(url: str, plan: Path, path: str, start: float, factor: float, ceiling: float, seconds: float,
          slo: float, nodes: int, name: str) -> dict[str, Any]:
    result = OUT / f"checkin-{name}.json"
    done = subprocess.run(
        [sys.executable, "-m", "agentsim", "probe", "--url", url, "--plan", str(plan), "--path", path,
         "--start-rate", str(start), "--step-factor", str(factor), "--max-rate", str(ceiling),
         "--step-seconds", str(seconds), "--slo-p99-ms", str(slo), "--nodes", str(nodes), "--json", str(result),
         "--label", name, "--max-in-flight", "4000", "--connections", "256", *allow(url)],
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


def profile(url: str, plan: Path, rate: float, seconds: int, node: str) -> dict[str, Any]:
    """During a fixed-rate run: the CPU of every process of the stack, and py-spy's view of one web worker."""
    pids = subprocess.run(["docker", "top", node, "-eo", "pid,args"], capture_output=True, text=True,
                          check=True).stdout.splitlines()
    workers = [line.split()[0] for line in pids if "gunicorn" in line][1:]  # the first is the master
    spy = str(BIN / "py-spy") if (BIN / "py-spy").exists() else shutil.which("py-spy")
    run = subprocess.Popen([sys.executable, "-m", "agentsim", "run", "--url", url, "--plan", str(plan), "--rate",
                            str(rate), "--duration", str(seconds + 4), *allow(url)], env=environment(),
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
    hertz = os.sysconf("SC_CLK_TCK")
    cpu = {name: (after[name] - before.get(name, 0)) / hertz / elapsed * 100 for name in after}
    stack_cpu = {name: round(share, 1) for name, share in sorted(cpu.items(), key=lambda i: -i[1]) if share >= 1.0}
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
            "machine_cpu_percent": round(sum(cpu.values()), 1), "cpus": os.cpu_count(),
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
    args = parser.parse_args()
    url, plan, static, agent_nodes = lab()

    print("1/2 full check-ins through the stack", flush=True)
    full = probe(url, plan, "/agent/checkin", 200, 1.25, args.max_rate, args.step_seconds, args.slo_p99_ms,
                 len(agent_nodes), "full")
    print("2/2 the transport limit: the same proxy and nginx, a static answer", flush=True)
    transport = probe(url, plan, static, 500, 1.5, args.max_rate * 5, args.step_seconds, args.slo_p99_ms,
                      len(agent_nodes), "transport")
    capacity, limit = full["capacity_rps"] or 0.0, transport["capacity_rps"] or 0.0
    lag = max((s["schedule_lag_p99_ms"] or 0.0) for s in transport["steps"])
    figures = {
        "checkins_per_s": capacity, "checkins_limited_by": full["limited_by"],
        "transport_per_s": limit, "transport_limited_by": transport["limited_by"],
        "ratio": round(capacity / limit, 3) if limit else None, "target_per_s": TARGET_PER_S,
        "slo_p99_ms": args.slo_p99_ms, "agent_web_nodes": len(agent_nodes),
        "simulator_lag_p99_ms_at_transport_limit": lag,
    }
    if args.profile:
        figures["profile"] = profile(url, plan, max(capacity * 0.8, 100.0), args.profile, agent_nodes[0])
    (OUT / "checkin.json").write_text(json.dumps(figures, indent=2))
    print(f"""
sustained through the lab (p99 <= {args.slo_p99_ms:g} ms, no failed request, {len(agent_nodes)} agent web nodes)
  full check-ins        {capacity:9.1f} /s   (stopped by: {full['limited_by']})
  transport limit       {limit:9.1f} /s   (stopped by: {transport['limited_by']})
  ratio                 {figures['ratio'] if figures['ratio'] is not None else '-'}
  target                {TARGET_PER_S:9.1f} /s   {'met' if capacity >= TARGET_PER_S else 'MISSED'}""")
    if lag > 50:
        print(f"  note: the simulator fell behind its schedule at the transport limit (p99 lag {lag:.0f} ms): "
              "that figure is the simulator's own ceiling on this machine, a floor for the stack's")
    if args.profile:
        print(show_profile(figures["profile"]))
    return 0 if capacity >= TARGET_PER_S else 1


if __name__ == "__main__":
    sys.exit(main())
