#!/usr/bin/env python3
"""Benchmark: replacing every web node of the lab under load, against building one node alone.

Needs the lab up and deployed (`make lab`). In one run it measures:
  1. the baseline: the time to build one web node alone (container, database grant, web role,
     ready: bench/rolling/build_one_node.yml), the node then destroyed again;
  2. steady p99 of check-ins at --rate through the proxy, nothing changing;
  3. the same build of one node while --rate goes on, nothing replaced: its time and p99 are the
     floor any replacement that builds its nodes on these CPUs and this disk starts from, so the
     report can tell the machine's share of the figures below from the replacement flow's own;
  4. playbooks/rolling_replace.yml over every web node (surge --surge) while the simulator keeps
     --rate going: failed requests, p99 during the replacement, lost check-ins (ledger verify),
     and where each batch's time went (the playbook's report: provision, converge, health gate,
     into service, drain, remove and destroy).
Prints the figures and the ratios against the targets: zero failures, p99 during / steady <= 2,
total time <= 1.5 x (nodes / surge) x single-node build time. Results: bench/results/rolling.json.

The simulator sends to the first proxy node's own address on the lab network (allowed as exactly
that /32), not to its port published on 127.0.0.1, so docker-proxy's copying does not load the
machine the nodes are built on.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labtools import allow, environment, first_proxy, plain

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results"
BIN = Path(sys.executable).parent
INVENTORY = ROOT / "inventories" / "lab" / "lab.fleet.yml"
P99_RATIO_TARGET = 2.0
TIME_FACTOR_TARGET = 1.5




def inventory() -> dict[str, Any]:
    done = subprocess.run([str(BIN / "ansible-inventory"), "-i", str(INVENTORY), "--list"], env=environment(),
                          capture_output=True, text=True, check=True)
    return plain(json.loads(done.stdout))


def playbook(path: Path, extra: dict[str, Any], log: Path, nice: int = 0) -> float:
    started = time.monotonic()
    command = [str(BIN / "ansible-playbook"), "-i", str(INVENTORY), str(path), "-e", json.dumps(extra)]
    done = subprocess.run(["nice", "-n", str(nice), *command] if nice else command,
                          env=environment(), capture_output=True, text=True, check=False)
    log.write_text(done.stdout + done.stderr)
    if done.returncode:
        sys.exit(f"{path.name} failed (see {log}):\n{done.stdout[-3000:]}")
    return time.monotonic() - started


def agentsim(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "agentsim", *args], env=environment(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def load(url: str, plan: Path, rate: float, label: str, duration: float,
         ledger: Path | None = None) -> tuple[subprocess.Popen[str], Path]:
    """The simulator sending --rate check-ins through the proxy, and the file its figures go to."""
    result = OUT / f"rolling-{label}.json"
    run = agentsim("run", "--url", url, "--plan", str(plan), "--rate", str(rate), "--duration", str(duration),
                   "--json", str(result), "--label", label, *(["--ledger", str(ledger)] if ledger else []),
                   *allow(url))
    return run, result


def under_load(url: str, plan: Path, rate: float, label: str, work: Callable[[], float],
               ledger: Path | None = None) -> tuple[float, dict[str, Any]]:
    """work() timed while the simulator sends --rate check-ins; its result and the simulator's figures."""
    run, result = load(url, plan, rate, label, 3000, ledger)
    try:
        time.sleep(2)
        seconds = work()
    finally:
        run.send_signal(signal.SIGINT)
        run.communicate(timeout=120)
    return seconds, json.loads(result.read_text())


def build_one_node(log: Path) -> float:
    """bench/rolling/build_one_node.yml: the seconds its own clock measured (container to ready)."""
    result_file = log.with_suffix(".json")
    playbook(ROOT / "bench" / "rolling" / "build_one_node.yml", {"bench_result_file": str(result_file)}, log)
    return float(json.loads(result_file.read_text())["seconds"])


def show(figures: dict[str, Any], acknowledged: int) -> str:
    """The figures against their targets, and where each batch's time went."""
    lines = [
        f"rolling replacement of every web node ({figures['web_nodes']} nodes, surge {figures['surge']}, "
        f"{figures['rate_per_s']:g} check-ins/s, controller nice {figures.get('controller_nice', 0)})",
        f"  single node build (baseline)   {figures['single_node_build_s']:8.1f} s",
        f"  whole replacement              {figures['replacement_total_s']:8.1f} s  = {figures['time_factor']:.2f} x "
        f"(nodes/surge x build), target <= {TIME_FACTOR_TARGET}",
        f"  p99 steady                     {figures['p99_steady_ms']:8.1f} ms",
        f"  p99 during the replacement     {figures['p99_during_ms']:8.1f} ms = x{figures['p99_ratio']:.2f} steady,"
        f" target <= {P99_RATIO_TARGET}",
        "  the floor: one node built under the same load, nothing replaced",
        f"    build time                   {figures['build_under_load_s']:8.1f} s  = "
        f"{figures['build_under_load_factor']:.2f} x the build alone",
        f"    p99 while it builds          {figures['p99_building_ms']:8.1f} ms = x{figures['p99_building_ratio']:.2f}"
        " steady",
        f"    replacement beyond building  {figures['replacement_beyond_builds_s']:8.1f} s  "
        f"(whole replacement - batches x build under load)",
        f"  failed requests                {figures['failed_requests']:8d} of {figures['requests_during']}, target 0",
        f"  lost acknowledged check-ins    {figures['lost_checkins']:8d} of {acknowledged}, target 0",
        "  where each batch's time went (s):",
    ]
    for batch in figures["batches"]:
        phases = ", ".join(f"{name} {seconds:.0f}" for name, seconds in batch["phases"])
        lines.append(f"    {', '.join(batch['replaced'])} -> {', '.join(batch['by'])}: {batch['seconds']:.0f} = "
                     f"{phases}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="check-ins per second during the runs")
    parser.add_argument("--steady-seconds", type=float, default=20.0)
    parser.add_argument("--surge", type=int, default=1)
    parser.add_argument("--controller-nice", type=int, default=0,
                        help="run the replacement's ansible-playbook at this nice value: the lab's controller "
                             "shares the 2 vCPUs with the nodes it serves, where production's is its own machine")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)

    data = inventory()
    hostvars = data["_meta"]["hostvars"]
    web = sorted(data.get("web_agent", {}).get("hosts", []) + data.get("web_user", {}).get("hosts", []))
    if not web:
        sys.exit("no web node in the lab inventory: run `make lab` first")
    proxy = first_proxy(data)
    url = f"http://{hostvars[proxy]['fleet_address']}:80"
    plan = OUT / "rolling-plan.json"
    plan.write_text(json.dumps({"fleet_plan": hostvars[proxy]["fleet_plan"]}))

    print("1/4 building one web node alone (baseline) ...", flush=True)
    build = build_one_node(OUT / "rolling-build.log")
    print(f"    {build:.1f} s", flush=True)

    print(f"2/4 steady load, {args.rate:g}/s for {args.steady_seconds:g} s ...", flush=True)
    run, steady_file = load(url, plan, args.rate, "steady", args.steady_seconds)
    run.communicate(timeout=args.steady_seconds + 120)
    steady = json.loads(steady_file.read_text())

    print(f"3/4 building one web node under {args.rate:g}/s, nothing replaced (the floor) ...", flush=True)
    loaded_build, building = under_load(url, plan, args.rate, "building",
                                        lambda: build_one_node(OUT / "rolling-build-loaded.log"))
    print(f"    {loaded_build:.1f} s, p99 {building['latency_ms']['p99']} ms", flush=True)

    print(f"4/4 replacing {len(web)} web nodes (surge {args.surge}) under {args.rate:g}/s ...", flush=True)
    ledger, report_file = OUT / "rolling-during.jsonl", OUT / "rolling-report.json"
    total, during = under_load(
        url, plan, args.rate, "during",
        lambda: playbook(ROOT / "playbooks" / "rolling_replace.yml",
                         {"rolling_targets": ["web"], "rolling_surge": args.surge,
                          "rolling_report_file": str(report_file)}, OUT / "rolling-replace.log",
                         nice=args.controller_nice),
        ledger=ledger)
    verify = subprocess.run([sys.executable, "-m", "agentsim", "verify", "--ledger", str(ledger), "--plan", str(plan),
                             "--json", str(OUT / "rolling-verify.json")], env=environment(), capture_output=True,
                            text=True, check=False)
    checked = json.loads((OUT / "rolling-verify.json").read_text())

    batches = math.ceil(len(web) / args.surge)
    budget = TIME_FACTOR_TARGET * batches * build
    p99_ratio = during["latency_ms"]["p99"] / steady["latency_ms"]["p99"]
    lost = checked["missing"] + checked["found_on_wrong_shard"]
    figures = {
        "web_nodes": len(web), "surge": args.surge, "rate_per_s": args.rate, "controller_nice": args.controller_nice,
        "single_node_build_s": round(build, 1), "replacement_total_s": round(total, 1),
        "time_factor": round(total / (batches * build), 2), "time_factor_target": TIME_FACTOR_TARGET,
        "p99_steady_ms": steady["latency_ms"]["p99"], "p99_during_ms": during["latency_ms"]["p99"],
        "p99_ratio": round(p99_ratio, 2), "p99_ratio_target": P99_RATIO_TARGET,
        "build_under_load_s": round(loaded_build, 1), "build_under_load_factor": round(loaded_build / build, 2),
        "p99_building_ms": building["latency_ms"]["p99"],
        "p99_building_ratio": round(building["latency_ms"]["p99"] / steady["latency_ms"]["p99"], 2),
        "replacement_beyond_builds_s": round(total - batches * loaded_build, 1),
        "requests_during": during["throughput"]["sent"], "failed_requests": during["errors"]["total"],
        "lost_checkins": lost, "verified": verify.returncode == 0,
        "batches": json.loads(report_file.read_text())["batches"],
    }
    (OUT / "rolling.json").write_text(json.dumps(figures, indent=2))
    print("\n" + show(figures, checked["acknowledged"]))
    ok = (during["errors"]["total"] == 0 and lost == 0 and p99_ratio <= P99_RATIO_TARGET
          and total <= budget)
    print("  verdict:", "all targets met" if ok else "a target was missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
