#!/usr/bin/env python3
"""Benchmark: one web node built from its baked tier image against one built from the bare base image.

Needs the lab up and deployed (`make lab`). Each round builds one spare web node the way a replacement
does (bench/rolling/build_one_node.yml: container, database grant, web role, /readyz answering 200)
from the bare base image, destroys it, then the same from the web tier's baked image (playbooks/bake.yml),
so both see the same machine in the same minutes. Prints each build, the medians and the ratio
baked / bare against the target (<= 0.25). Results: bench/results/node-build.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from labtools import BARE_IMAGE, ROOT, build_one_node, inventory

OUT = ROOT / "bench" / "results"
RATIO_TARGET = 0.25


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="builds of each kind, alternating (1 to 10)")
    args = parser.parse_args()
    if not 1 <= args.rounds <= 10:
        parser.error(f"--rounds must be 1 to 10, not {args.rounds}")
    data = inventory()
    if not data.get("web_agent", {}).get("hosts"):
        sys.exit("no web node in the lab inventory: run `make lab` first")
    baked_image = data["_meta"]["hostvars"][data["web_agent"]["hosts"][0]]["lab_tier_images"]["web_agent"]
    OUT.mkdir(parents=True, exist_ok=True)

    builds: dict[str, list[float]] = {"bare": [], "baked": []}
    for round_number in range(1, args.rounds + 1):
        for kind, image in (("bare", BARE_IMAGE), ("baked", baked_image)):
            seconds = build_one_node(OUT / f"node-build-{kind}-{round_number}.log", image=image)
            builds[kind].append(seconds)
            print(f"round {round_number}: {kind:5} ({image}) {seconds:6.1f} s", flush=True)

    bare, baked = statistics.median(builds["bare"]), statistics.median(builds["baked"])
    figures = {"baked_image": baked_image, "bare_image": BARE_IMAGE, "builds_s": builds,
               "median_bare_s": round(bare, 1), "median_baked_s": round(baked, 1),
               "baked_over_bare": round(baked / bare, 3), "target": RATIO_TARGET}
    (OUT / "node-build.json").write_text(json.dumps(figures, indent=2))
    print(f"\none web node, container to ready ({args.rounds} rounds, medians)")
    print(f"  from the bare image   {bare:6.1f} s")
    print(f"  from the baked image  {baked:6.1f} s = {baked / bare:.2f} x bare, target <= {RATIO_TARGET}")
    ok = baked / bare <= RATIO_TARGET
    print("  verdict:", "target met" if ok else "target missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
