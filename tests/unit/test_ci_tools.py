"""tools/ci/molecule-lanes and tools/ci/stage: lanes side by side, scenarios of a lane in turn, failures passed on.

The molecule the runner calls is a fake command on PATH (the one thing the runner talks to): it logs when each
scenario starts and ends, makes the scenarios named in $MEET wait until all of them have started, and fails for a
scenario named in $FAIL.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LANES = ROOT / "tools" / "ci" / "molecule-lanes"
STAGE = ROOT / "tools" / "ci" / "stage"

FAKE_MOLECULE = """#!/usr/bin/env bash
# molecule test -s SCENARIO
scenario="$3"
echo "start $scenario" >>"$EVENTS"
echo "converging $scenario"
if [[ " ${MEET:-} " == *" $scenario "* ]]; then
  touch "$MARKS/$scenario"
  for other in $MEET; do
    for _ in $(seq 100); do [ -e "$MARKS/$other" ] && break; sleep 0.1; done
    [ -e "$MARKS/$other" ] || { echo "$scenario waited for $other in vain"; exit 3; }
  done
fi
echo "end $scenario" >>"$EVENTS"
[ "$scenario" != "${FAIL:-}" ]
"""


def run_lanes(tmp_path: Path, *lanes: str, **env: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "molecule").write_text(FAKE_MOLECULE)
    (bin_dir / "molecule").chmod(0o755)
    events = tmp_path / "events"
    events.touch()
    done = subprocess.run([str(LANES), str(tmp_path / "stages.tsv"), *lanes], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, check=False,
                          env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "EVENTS": str(events),
                               "MARKS": str(tmp_path), **env})
    return done, events.read_text().splitlines()


def test_lanes_run_side_by_side(tmp_path: Path) -> None:
    # Each of the two waits until the other has started: one after the other, they would wait in vain.
    done, events = run_lanes(tmp_path, "default,failover", "rolling", MEET="default rolling")
    assert done.returncode == 0, done.stdout + done.stderr
    assert events.index("start default") < events.index("end rolling")
    assert events.index("start rolling") < events.index("end default")


def test_the_scenarios_of_a_lane_run_in_turn_each_timed_as_a_stage(tmp_path: Path) -> None:
    done, events = run_lanes(tmp_path, "default,failover")
    assert done.returncode == 0, done.stdout + done.stderr
    assert events == ["start default", "end default", "start failover", "end failover"]
    stages = [line.split("\t") for line in (tmp_path / "stages.tsv").read_text().splitlines()]
    assert [(stage[0], stage[2]) for stage in stages] == [("molecule default", "passed"),
                                                        ("molecule failover", "passed")]
    assert "[failover] converging failover" in done.stdout.splitlines()
    assert "converging default" in (tmp_path / ".build" / "molecule-default-failover.log").read_text()


def test_a_failed_scenario_stops_its_lane_not_the_others_and_fails_the_run(tmp_path: Path) -> None:
    done, events = run_lanes(tmp_path, "default,failover", "rolling", FAIL="default")
    assert done.returncode != 0
    assert "start failover" not in events
    assert "end rolling" in events
    assert "[default] == molecule test -s default failed (exit 1)" in done.stdout
    assert "== lane default,failover failed (exit 1); its output: .build/molecule-default-failover.log" in done.stdout
    stages = dict(line.split("\t")[:3:2] for line in (tmp_path / "stages.tsv").read_text().splitlines())
    assert stages == {"molecule default": "failed (exit 1)", "molecule rolling": "passed"}


def test_the_report_counts_side_by_side_stages_once(tmp_path: Path) -> None:
    stages = tmp_path / "stages.tsv"
    stages.write_text("lint\t60\tpassed\t1000\t1060\n"
                      "molecule default\t900\tpassed\t1060\t1960\n"
                      "molecule rolling\t1200\tfailed (exit 2)\t1060\t2260\n")
    report = subprocess.run([str(STAGE), "--report", str(stages)], capture_output=True, text=True, check=True).stdout
    assert [line.split() for line in report.splitlines()[1:4]] == [
        ["lint", "60", "s", "passed"], ["molecule", "default", "900", "s", "passed"],
        ["molecule", "rolling", "1200", "s", "failed", "(exit", "2)"]]
    assert report.splitlines()[-1].split() == ["total", "1260", "s", "(21.0", "min;", "the", "stages", "add", "up",
                                               "to", "2160", "s)"]


def test_a_stage_passes_on_its_command_status(tmp_path: Path) -> None:
    stages = tmp_path / "stages.tsv"
    done = subprocess.run([str(STAGE), str(stages), "unit", "sh", "-c", "exit 4"], check=False)
    assert done.returncode == 4
    name, seconds, result, started, ended = stages.read_text().rstrip("\n").split("\t")
    assert (name, result) == ("unit", "failed (exit 4)")
    assert int(ended) - int(started) == int(seconds) >= 0
