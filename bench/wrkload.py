"""Closed-loop load from wrk, the C load generator of Debian's `wrk` package, for the lab benchmarks.

The agent simulator (tools/agentsim) is the operator's tool: open loop, a ledger, verify. It is
also Python, and on a 2-vCPU machine it spends as much CPU per request as a part of the stack
does. wrk keeps a fixed number of connections busy (the method of the issue's reference figures)
at a small fraction of that cost, so its figures are the stack's own. A step passes with zero
failed requests (connect, read, write, timeout errors and non-2xx answers) and p99 within the SLO;
the capacity is the highest rate of a passing step. The script's agents come from a roster file
(write_roster), each with its token: the service refuses a check-in without one (401).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).with_name("checkin_wrk.lua")
REPORT_PREFIX = "WRK_JSON "
ERROR_KINDS = ("connect", "read", "write", "timeout", "status")
# Longer than any answer the SLO admits; a request over it counts as a timeout error.
REQUEST_TIMEOUT = "5s"


class WrkUnavailable(RuntimeError):
    """wrk is missing or printed no report."""


@dataclass(frozen=True)
class Step:
    connections: int
    seconds: float
    requests: int
    per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: dict[str, int]

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    def passes(self, slo_p99_ms: float) -> bool:
        return self.failed == 0 and self.p99_ms <= slo_p99_ms

    def why_not(self, slo_p99_ms: float) -> str:
        """What stopped this step, for the report ('' when it passed)."""
        reasons = [f"{count} {kind} errors" for kind, count in self.errors.items() if count]
        if self.p99_ms > slo_p99_ms:
            reasons.append(f"p99 {self.p99_ms:.0f} ms")
        return f"{self.connections} connections: " + ", ".join(reasons) if reasons else ""


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if not found:
        raise WrkUnavailable("wrk is not installed: apt-get install wrk (Debian's package; `make bench` installs it)")
    return found


def parse_report(output: str, connections: int) -> Step:
    """The step's figures from the WRK_JSON line that checkin_wrk.lua prints at the end."""
    line = next((line for line in output.splitlines() if line.startswith(REPORT_PREFIX)), None)
    if line is None:
        shown = " ".join(output.split())[-300:] or "nothing"
        raise WrkUnavailable(f"wrk printed no {REPORT_PREFIX.strip()} line; it printed: {shown}")
    report = json.loads(line[len(REPORT_PREFIX):])
    seconds = report["duration_us"] / 1e6
    return Step(
        connections=connections,
        seconds=round(seconds, 2),
        requests=report["requests"],
        per_s=round(report["requests"] / seconds, 1) if seconds > 0 else 0.0,
        p50_ms=report["p50_us"] / 1000,
        p99_ms=report["p99_us"] / 1000,
        max_ms=report["max_us"] / 1000,
        errors={kind: report[kind] for kind in ERROR_KINDS},
    )


def command(url: str, connections: int, seconds: float, mode: str, path: str, roster: Path | None,
            seq_base: int) -> list[str]:
    threads = min(2, connections)
    return [wrk_binary(), f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", REQUEST_TIMEOUT,
            "-s", str(SCRIPT), url, "--", mode, str(roster or "-"), str(seq_base), str(threads), path]


def run_step(url: str, connections: int, seconds: float, mode: str, path: str, roster: Path | None = None,
             seq_base: int = 0) -> Step:
    argv = command(url, connections, seconds, mode, path, roster, seq_base)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if done.returncode != 0:
        raise WrkUnavailable(f"`{' '.join(argv)}` failed (exit {done.returncode}): {done.stderr.strip()[:300]}")
    return parse_report(done.stdout, connections)


def write_roster(path: Path, agents: Iterable[tuple[str, str]],
                 token_for: Callable[[str, str], str] | None = None) -> Path:
    """The ROSTER of checkin_wrk.lua: one "agent_id tenant token" line per (agent_id, tenant).

    The token (token_for(tenant, agent_id)) is computed here, once per agent, so that the script
    only adds `Authorization: Bearer <token>`; without token_for the lines have none and the script
    sends no header.
    """
    with path.open("w", encoding="utf-8") as roster:
        for agent_id, tenant in agents:
            token = f" {token_for(tenant, agent_id)}" if token_for else ""
            roster.write(f"{agent_id} {tenant}{token}\n")
    return path


def capacity(steps: Iterable[Step], slo_p99_ms: float) -> dict[str, Any]:
    """The best passing step and what stopped the first failing one."""
    steps = list(steps)
    passing = [step for step in steps if step.passes(slo_p99_ms)]
    best = max(passing, key=lambda step: step.per_s, default=None)
    failing = next((step for step in steps if not step.passes(slo_p99_ms)), None)
    return {
        "capacity_per_s": best.per_s if best else 0.0,
        "at_connections": best.connections if best else None,
        "p99_ms_at_capacity": best.p99_ms if best else None,
        "limited_by": failing.why_not(slo_p99_ms) if failing else "the last step passed",
        "steps": [asdict(step) for step in steps],
    }


def probe(run: Callable[[int], Step], connections: Iterable[int], slo_p99_ms: float,
          on_step: Callable[[Step], None] = lambda step: None) -> dict[str, Any]:
    """Steps up the connections until a step fails; `run(connections)` runs one step."""
    steps = []
    for count in connections:
        step = run(count)
        steps.append(step)
        on_step(step)
        if not step.passes(slo_p99_ms):
            break
    return capacity(steps, slo_p99_ms)


def show(step: Step) -> str:
    failed = f"{step.failed} failed" if step.failed else "no failure"
    return (f"  {step.connections:4d} connections  {step.per_s:9.1f} /s  p50 {step.p50_ms:6.1f} ms  "
            f"p99 {step.p99_ms:6.1f} ms  max {step.max_ms:7.1f} ms  {failed}")
