#!/usr/bin/env python3
"""Benchmark: sustained check-ins per second through the lab stack, against its transport limit.

Needs the lab up and deployed (`make lab`: the lab's web nodes answer web_nginx_static_probe_path
themselves). In one run, with the agent simulator's capacity probe (open loop, a step passes with
p99 <= --slo-p99-ms and no failed request):
  1. full check-ins (POST /agent/checkin: committed check-in row, agent upsert, pending-command
     lookup in the shard database) through HAProxy, nginx and the service;
  2. the transport limit: the same proxy and nginx answering a static response (no service);
then prints both, their ratio and the target (>= 1,000 check-ins/s: 200,000 agents at 30 %/min).
With --profile SECONDS it also samples the check-in service's workers with py-spy (pip install
py-spy) during a fixed-rate run, to show where the time goes. Results: bench/results/checkin.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results"
BIN = Path(sys.executable).parent
INVENTORY = ROOT / "inventories" / "lab" / "lab.fleet.yml"
TARGET_PER_S = 1000.0


def environment() -> dict[str, str]:
    return dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), PYTHONPATH=str(ROOT / "tools" / "agentsim"),
                ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".build" / "collections"), ANSIBLE_NOCOLOR="1")


def plain(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return plain(value["__ansible_unsafe"])
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def lab() -> tuple[str, Path, str, list[str]]:
    """The proxy's published URL, the plan file, the static path and the agent web nodes."""
    done = subprocess.run([str(BIN / "ansible-inventory"), "-i", str(INVENTORY), "--list"], env=environment(),
                          capture_output=True, text=True, check=True)
    data = plain(json.loads(done.stdout))
    hostvars = data["_meta"]["hostvars"]
    proxy = next(h for h in data["proxy"]["hosts"] if hostvars[h]["fleet_index"] == 1)
    port = next(s.split(":")[1] for s in hostvars[proxy]["lab_published_ports"]["1"] if s.endswith(":80"))
    static = hostvars[proxy].get("web_nginx_static_probe_path")
    if not static:
        sys.exit("the lab sets no web_nginx_static_probe_path (inventories/lab/group_vars/all/lab.yml)")
    OUT.mkdir(parents=True, exist_ok=True)
    plan = OUT / "checkin-plan.json"
    plan.write_text(json.dumps({"fleet_plan": hostvars[proxy]["fleet_plan"]}))
    return f"http://127.0.0.1:{port}", plan, static, data["web_agent"]["hosts"]


def probe(url: str, plan: Path, path: str, start: float, factor: float, ceiling: float, seconds: float,
          slo: float, nodes: int, name: str) -> dict[str, Any]:
    result = OUT / f"checkin-{name}.json"
    done = subprocess.run(
        [sys.executable, "-m", "agentsim", "probe", "--url", url, "--plan", str(plan), "--path", path,
         "--start-rate", str(start), "--step-factor", str(factor), "--max-rate", str(ceiling),
         "--step-seconds", str(seconds), "--slo-p99-ms", str(slo), "--nodes", str(nodes), "--json", str(result),
         "--label", name, "--max-in-flight", "4000", "--connections", "256"],
        env=environment(), capture_output=True, text=True, check=False)
    print(done.stdout, end="", flush=True)
    if done.returncode:
        sys.exit(f"the {name} probe failed: {done.stderr}")
    return json.loads(result.read_text())


def profile(url: str, plan: Path, rate: float, seconds: int, node: str) -> str:
    """py-spy's top functions of one web node's gunicorn workers during a fixed-rate run."""
    if shutil.which("py-spy") is None and not (BIN / "py-spy").exists():
        return "(py-spy is not installed: pip install py-spy)"
    pids = subprocess.run(["docker", "top", node, "-eo", "pid,args"], capture_output=True, text=True,
                          check=True).stdout.splitlines()
    workers = [line.split()[0] for line in pids if "gunicorn" in line][1:]  # the first is the master
    run = subprocess.Popen([sys.executable, "-m", "agentsim", "run", "--url", url, "--plan", str(plan), "--rate",
                            str(rate), "--duration", str(seconds + 4)], env=environment(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    spy = str(BIN / "py-spy") if (BIN / "py-spy").exists() else "py-spy"
    svg = OUT / "checkin-profile.txt"
    try:
        subprocess.run([spy, "record", "--duration", str(seconds), "--format", "raw", "--output", str(svg),
                        "--pid", workers[0], "--nonblocking"], capture_output=True, check=False, timeout=seconds + 30)
    finally:
        run.wait(timeout=seconds + 60)
    counts: dict[str, int] = {}
    total = 0
    for line in svg.read_text().splitlines() if svg.exists() else []:
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        total += int(count)
        # Charge each sample to the innermost frame of our own code or of a library we call.
        leaf = frames[-1]
        counts[leaf] = counts.get(leaf, 0) + int(count)
    top = sorted(counts.items(), key=lambda item: -item[1])[:12]
    return "\n".join(f"  {count / total * 100:5.1f} %  {frame}" for frame, count in top) if total else "(no samples)"


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
        print("where a web worker's time goes (py-spy, innermost frames):\n" + figures["profile"])
    return 0 if capacity >= TARGET_PER_S else 1


if __name__ == "__main__":
    sys.exit(main())
