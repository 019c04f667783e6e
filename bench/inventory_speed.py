#!/usr/bin/env python3
"""Benchmark: `ansible-inventory --list` on a planned fleet against the same hosts as static YAML.

Plans 1,000,000 agents across 2,000 tenants with the fleet inventory plugin, writes a static
YAML inventory holding exactly the same hosts, groups and variables, then times
`ansible-inventory --list` on both, interleaved, in the same run. Prints both medians and
the ratio (target: plugin / static <= 1.2).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import statistics
import subprocess
import sys
import time

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results"
TARGET_RATIO = 1.2


def environment():
    return dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
                ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".build" / "collections"), ANSIBLE_NOCOLOR="1")


def tenants(count, agents, seed=20261121):
    """Tenant sizes from a skewed distribution, summing exactly to `agents`, none above a shard."""
    rng = random.Random(seed)
    weights = [rng.paretovariate(1.6) for _ in range(count)]
    total = sum(weights)
    sizes = [max(1, min(45_000, int(agents * w / total))) for w in weights]
    sizes[0] += agents - sum(sizes)
    while sizes[0] > 45_000:  # spread any remainder over the smallest tenants
        smallest = min(range(1, count), key=sizes.__getitem__)
        moved = min(sizes[0] - 45_000, 45_000 - sizes[smallest])
        sizes[0] -= moved
        sizes[smallest] += moved
    return [{"name": "tenant-%04d" % (i + 1), "agents": size} for i, size in enumerate(sizes)]


def write_spec(path, agents, count):
    spec = {
        "plugin": "fleetscale.split.fleet",
        "tenants": tenants(count, agents),
        "network": {"subnet": "10.64.0.0/12", "first_address": {
            "proxy": "10.64.1.10", "web_agent": "10.65.0.10", "web_user": "10.66.0.10",
            "app": "10.67.0.10", "database": "10.68.0.10"}},
    }
    path.write_text(yaml.safe_dump(spec, sort_keys=False))


def inventory_list(source):
    done = subprocess.run([str(ROOT / ".venv" / "bin" / "ansible-inventory"), "-i", str(source), "--list"],
                          capture_output=True, text=True, env=environment(), cwd=ROOT, check=False)
    if done.returncode != 0:
        sys.exit("ansible-inventory failed on %s:\n%s" % (source, done.stderr))
    return json.loads(done.stdout)


def plain(value):
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def write_static(listing, path):
    """The YAML inventory holding what the plugin produced: same groups, hosts and variables."""
    listing = plain(listing)
    hostvars = listing["_meta"]["hostvars"]
    shared = {}
    groups = {}
    for name, group in listing.items():
        if name in ("_meta", "all"):
            continue
        entry = {}
        if group.get("hosts"):
            entry["hosts"] = {}
            for host in group["hosts"]:
                own = dict(hostvars.get(host, {}))
                shared.setdefault("fleet_plan", own.pop("fleet_plan", None))
                own.pop("fleet_plan", None)
                entry["hosts"][host] = own or None
                hostvars[host] = {}
        if group.get("children"):
            entry["children"] = {child: None for child in group["children"]}
        groups[name] = entry
    document = {"all": {"vars": shared, "children": {g: groups[g] for g in listing["all"]["children"] if g in groups}}}
    for name, entry in groups.items():
        if name not in listing["all"]["children"]:
            document["all"]["children"].setdefault(name, entry)
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def timed(source):
    start = time.perf_counter()
    inventory_list(source)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1_000_000)
    parser.add_argument("--tenants", type=int, default=2_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    spec = OUT / "bench.fleet.yml"
    static = OUT / "bench-static.yml"
    write_spec(spec, args.agents, args.tenants)
    planned = inventory_list(spec)
    write_static(planned, static)
    reference = plain(inventory_list(static))
    hosts = sorted(plain(planned)["_meta"]["hostvars"])
    if sorted(reference["_meta"]["hostvars"]) != hosts:
        sys.exit("the static inventory does not hold the same hosts")
    for host in hosts:
        if plain(planned)["_meta"]["hostvars"][host] != reference["_meta"]["hostvars"][host]:
            sys.exit("the static inventory differs from the plugin's on host %s" % host)
    plugin_times, static_times = [], []
    for _ in range(args.runs):
        plugin_times.append(timed(spec))
        static_times.append(timed(static))
    plugin_median = statistics.median(plugin_times)
    static_median = statistics.median(static_times)
    ratio = plugin_median / static_median
    print("inventory benchmark: %d agents, %d tenants, %d hosts, %d runs each"
          % (args.agents, args.tenants, len(hosts), args.runs))
    print("  fleet plugin  median %.3f s  (spec %d KiB)" % (plugin_median, spec.stat().st_size // 1024))
    print("  static YAML   median %.3f s  (file %d KiB)" % (static_median, static.stat().st_size // 1024))
    print("  ratio plugin/static %.2f (target <= %.1f): %s"
          % (ratio, TARGET_RATIO, "met" if ratio <= TARGET_RATIO else "NOT met"))
    (OUT / "inventory_speed.json").write_text(json.dumps({
        "agents": args.agents, "tenants": args.tenants, "hosts": len(hosts), "runs": args.runs,
        "plugin_median_s": plugin_median, "static_median_s": static_median, "ratio": ratio}, indent=2))
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
