#!/usr/bin/env python3
"""Benchmark: replacing every web node of the lab under load, from baked tier images and from bare Debian.

Needs the lab up and deployed (`make lab`). In one run it measures:
  1. the baselines: the time to build one web node alone (container, database grant, web role,
     ready: bench/rolling/build_one_node.yml) from the web tier's baked image and from the bare
     base image, each node destroyed again;
  2. steady p99 of check-ins at --rate through the proxy, nothing changing;
  3. the baked build of one node while --rate goes on, nothing replaced: its time and p99 are the
     floor any replacement that builds its nodes on these CPUs and this disk starts from;
  4. playbooks/rolling_replace.yml over every web node (surge --surge), new nodes from the baked
     image, while the simulator keeps --rate going: failed requests, p99 during the replacement,
     lost check-ins (ledger verify), and where each batch's time went (provision, converge, health
     gate, into service, drain, remove and destroy);
  5. the same replacement with new nodes from the bare image (lab_tier_images overridden), same load.
Prints the figures and the ratios against the targets: zero failures and zero lost check-ins in both
replacements; p99 during the baked replacement / steady <= 2; the baked replacement <= 0.5 x the bare
one and <= (nodes / surge) x (baked build + slow start + 10 s). Results: bench/results/rolling.json.

The simulator sends to the first proxy node's own address on the lab network (allowed as exactly
that /32), not to its port published on 127.0.0.1, so docker-proxy's copying does not load the
machine the nodes are built on.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labtools import (
    BARE_IMAGE,
    ROOT,
    allow,
    build_one_node,
    environment,
    first_proxy,
    inventory,
    lab_agent_keys,
    playbook,
)

OUT = ROOT / "bench" / "results"
P99_RATIO_TARGET = 2.0
BAKED_OVER_BARE_TARGET = 0.5
# Per batch, beyond building a node and its slow start: what the flow may add.
BATCH_ALLOWANCE_S = 10.0




def agentsim(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "agentsim", *args], env=environment(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def load(url: str, plan: Path, rate: float, label: str, duration: float,
         ledger: Path | None = None) -> tuple[subprocess.Popen[str], Path]:
    """The simulator sending --rate check-ins through the proxy, and the file its figures go to."""
    result = OUT / f"rolling-{label}.json"
    run = agentsim("run", "--url", url, "--plan", str(plan), "--rate", str(rate), "--duration", str(duration),
                   "--json", str(result), "--label", label, *(["--ledger", str(ledger)] if ledger else []),
                   *allow(url), *lab_agent_keys())
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


def slow_start_seconds(hostvars: dict[str, Any], proxy: str) -> float:
    """proxy_slowstart of the proxies (the inventory's, else the role's default), in seconds."""
    value = hostvars[proxy].get("proxy_slowstart")
    if value is None:
        defaults = (ROOT / "roles" / "proxy" / "defaults" / "main.yml").read_text()
        value = re.search(r"^proxy_slowstart:\s*(\S+)", defaults, re.MULTILINE).group(1)
    number, unit = re.fullmatch(r"(\d+)(ms|s|m)?", str(value)).groups()
    return int(number) * {"ms": 0.001, "s": 1, "m": 60}[unit or "ms"]


def replace(url: str, plan: Path, rate: float, label: str, extra: dict[str, Any], nice: int) -> dict[str, Any]:
    """playbooks/rolling_replace.yml under --rate, then the simulator's ledger checked against the shards."""
    ledger, report_file = OUT / f"rolling-{label}.jsonl", OUT / f"rolling-{label}-report.json"
    total, during = under_load(
        url, plan, rate, label,
        lambda: playbook(ROOT / "playbooks" / "rolling_replace.yml",
                         {**extra, "rolling_report_file": str(report_file)}, OUT / f"rolling-{label}.log", nice=nice),
        ledger=ledger)
    verified = OUT / f"rolling-{label}-verify.json"
    verify = subprocess.run([sys.executable, "-m", "agentsim", "verify", "--ledger", str(ledger), "--plan", str(plan),
                             "--json", str(verified)], env=environment(), capture_output=True, text=True, check=False)
    checked = json.loads(verified.read_text())
    return {"seconds": round(total, 1), "p99_ms": during["latency_ms"]["p99"],
            "requests": during["throughput"]["sent"], "failed": during["errors"]["total"],
            "acknowledged": checked["acknowledged"], "lost": checked["missing"] + checked["found_on_wrong_shard"],
            "verified": verify.returncode == 0, "batches": json.loads(report_file.read_text())["batches"]}


def show(figures: dict[str, Any]) -> str:
    """The figures against their targets, and where each batch's time went."""
    baked, bare = figures["baked"], figures["bare"]
    lines = [
        f"rolling replacement of every web node ({figures['web_nodes']} nodes, surge {figures['surge']}, "
        f"{figures['rate_per_s']:g} check-ins/s, controller nice {figures['controller_nice']})",
        f"  one node built alone, baked image {figures['build_baked_s']:8.1f} s",
        f"  one node built alone, bare image  {figures['build_bare_s']:8.1f} s  (baked = "
        f"{figures['build_baked_over_bare']:.2f} x bare)",
        f"  whole replacement, baked images   {baked['seconds']:8.1f} s",
        f"  whole replacement, bare image     {bare['seconds']:8.1f} s",
        f"  baked / bare replacement          {figures['baked_over_bare']:8.2f}    target <= {BAKED_OVER_BARE_TARGET}",
        f"  baked replacement budget          {figures['budget_s']:8.1f} s  = {figures['batches']} batches x (build "
        f"{figures['build_baked_s']:.1f} + slow start {figures['slow_start_s']:g} + {BATCH_ALLOWANCE_S:g}); "
        f"used {baked['seconds'] / figures['budget_s']:.2f} of it",
        f"  p99 steady                        {figures['p99_steady_ms']:8.1f} ms",
        f"  p99 during the baked replacement  {baked['p99_ms']:8.1f} ms = x{figures['p99_ratio']:.2f} steady, "
        f"target <= {P99_RATIO_TARGET}",
        f"  p99 during the bare replacement   {bare['p99_ms']:8.1f} ms = x{figures['p99_ratio_bare']:.2f} steady",
        f"  the floor: one baked node built under the same load, nothing replaced: {figures['build_under_load_s']:.1f}"
        f" s, p99 {figures['p99_building_ms']:.1f} ms = x{figures['p99_building_ratio']:.2f} steady",
    ]
    for name, run in (("baked", baked), ("bare", bare)):
        lines.append(f"  {name}: failed requests {run['failed']} of {run['requests']}, lost acknowledged check-ins "
                     f"{run['lost']} of {run['acknowledged']}, targets 0; where each batch's time went (s):")
        for batch in run["batches"]:
            phases = ", ".join(f"{phase} {seconds:.0f}" for phase, seconds in batch["phases"])
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
    bare_images = {**hostvars[proxy]["lab_tier_images"], "web_agent": BARE_IMAGE, "web_user": BARE_IMAGE}

    print("1/5 building one web node alone from the baked image, then from the bare image ...", flush=True)
    build = build_one_node(OUT / "rolling-build.log")
    build_bare = build_one_node(OUT / "rolling-build-bare.log", image=BARE_IMAGE)
    print(f"    baked {build:.1f} s, bare {build_bare:.1f} s", flush=True)

    print(f"2/5 steady load, {args.rate:g}/s for {args.steady_seconds:g} s ...", flush=True)
    run, steady_file = load(url, plan, args.rate, "steady", args.steady_seconds)
    run.communicate(timeout=args.steady_seconds + 120)
    steady = json.loads(steady_file.read_text())

    print(f"3/5 building one web node under {args.rate:g}/s, nothing replaced (the floor) ...", flush=True)
    loaded_build, building = under_load(url, plan, args.rate, "building",
                                        lambda: build_one_node(OUT / "rolling-build-loaded.log"))
    print(f"    {loaded_build:.1f} s, p99 {building['latency_ms']['p99']} ms", flush=True)

    request = {"rolling_targets": ["web"], "rolling_surge": args.surge}
    print(f"4/5 replacing {len(web)} web nodes (surge {args.surge}) from the baked image under {args.rate:g}/s ...",
          flush=True)
    baked = replace(url, plan, args.rate, "baked", request, args.controller_nice)
    print(f"    {baked['seconds']:.1f} s", flush=True)
    print(f"5/5 replacing them again from the bare image under {args.rate:g}/s ...", flush=True)
    bare = replace(url, plan, args.rate, "bare", {**request, "lab_tier_images": bare_images}, args.controller_nice)
    print(f"    {bare['seconds']:.1f} s", flush=True)

    batches = math.ceil(len(web) / args.surge)
    slow_start = slow_start_seconds(hostvars, proxy)
    budget = batches * (build + slow_start + BATCH_ALLOWANCE_S)
    steady_p99 = steady["latency_ms"]["p99"]
    figures = {
        "web_nodes": len(web), "surge": args.surge, "batches": batches, "rate_per_s": args.rate,
        "controller_nice": args.controller_nice, "slow_start_s": slow_start,
        "build_baked_s": round(build, 1), "build_bare_s": round(build_bare, 1),
        "build_baked_over_bare": round(build / build_bare, 2),
        "baked_over_bare": round(baked["seconds"] / bare["seconds"], 2),
        "baked_over_bare_target": BAKED_OVER_BARE_TARGET, "budget_s": round(budget, 1),
        "p99_steady_ms": steady_p99, "p99_ratio": round(baked["p99_ms"] / steady_p99, 2),
        "p99_ratio_bare": round(bare["p99_ms"] / steady_p99, 2), "p99_ratio_target": P99_RATIO_TARGET,
        "build_under_load_s": round(loaded_build, 1), "p99_building_ms": building["latency_ms"]["p99"],
        "p99_building_ratio": round(building["latency_ms"]["p99"] / steady_p99, 2),
        "baked": baked, "bare": bare,
    }
    (OUT / "rolling.json").write_text(json.dumps(figures, indent=2))
    print("\n" + show(figures))
    ok = (all(run["failed"] == 0 and run["lost"] == 0 and run["verified"] for run in (baked, bare))
          and figures["p99_ratio"] <= P99_RATIO_TARGET and figures["baked_over_bare"] <= BAKED_OVER_BARE_TARGET
          and baked["seconds"] <= budget)
    print("  verdict:", "all targets met" if ok else "a target was missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
