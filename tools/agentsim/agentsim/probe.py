"""`probe`: the capacity of the stack, found by stepping the open-loop rate up until it breaks.

Each step is a full `run` at one rate. A step passes when every arrival was acknowledged (no error of
any kind, overload included) and p99 stayed at or under the objective; the probe stops at the first
step that fails or at the rate ceiling. The capacity is the rate of the last step that passed. Each
step uses fresh sequence numbers (the roster's seq_start moves on), so the ledgers of all steps
together are one consistent ledger.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from agentsim.errors import UsageError

RunStep = Callable[[Any], Awaitable[dict[str, Any]]]


def step_rates(start: float, factor: float, ceiling: float) -> list[float]:
    """start, start x factor, ... up to and including the ceiling (the last step is the ceiling itself)."""
    if start <= 0:
        raise UsageError(f"--start-rate must be above 0, got {start:g}")
    if factor <= 1:
        raise UsageError(f"--step-factor must be above 1, got {factor:g}")
    if ceiling < start:
        raise UsageError(f"--max-rate {ceiling:g} is below --start-rate {start:g}")
    rates = []
    rate = start
    while rate < ceiling:
        rates.append(round(rate, 3))
        rate *= factor
    rates.append(round(ceiling, 3))
    return rates


def step_verdict(report: dict[str, Any], slo_p99_ms: float) -> tuple[bool, str]:
    errors = report["errors"]["total"]
    p99 = report["latency_ms"]["p99"]
    if errors:
        kinds = ", ".join(f"{k} {v}" for k, v in report["errors"]["by_kind"].items() if v)
        return False, f"{errors} failed requests ({kinds})"
    if p99 is None:
        return False, "no answer at all"
    if p99 > slo_p99_ms:
        return False, f"p99 {p99:.1f} ms above the objective {slo_p99_ms:g} ms"
    return True, f"p99 {p99:.1f} ms, no error"


async def probe_capacity(settings: Any, rates: list[float], slo_p99_ms: float, run_step: RunStep,
                         on_step: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run one step per rate until one fails; `settings` is a RunSettings used as the template of each step."""
    steps = []
    passed_rate = None
    limit = "max-rate"
    seq_start = settings.seq_start
    for rate in rates:
        step_settings = dataclasses.replace(settings, rate=rate, seq_start=seq_start,
                                            label=f"{settings.label or 'probe'} {rate:g}/s")
        report = await run_step(step_settings)
        # Every agent took at most ceil(arrivals / agents) seqs: the next step starts above them.
        seq_start += report["throughput"]["arrivals"] + 1
        ok, reason = step_verdict(report, slo_p99_ms)
        step = {
            "rate_per_s": rate,
            "passed": ok,
            "reason": reason,
            "acknowledged_per_s": report["throughput"]["acknowledged_per_s"],
            "latency_ms": report["latency_ms"],
            "errors": report["errors"]["total"],
            "schedule_lag_p99_ms": report["schedule_lag_ms"]["p99"],
            "nodes": report["nodes"],
        }
        steps.append(step)
        if on_step is not None:
            on_step(step)
        if not ok:
            limit = reason
            break
        passed_rate = rate
    return {
        "tool": "fleet-agentsim",
        "kind": "capacity-probe",
        "slo_p99_ms": slo_p99_ms,
        "capacity_rps": passed_rate,
        "limited_by": limit,
        "steps": steps,
    }


def probe_summary(result: dict[str, Any], nodes: int) -> str:
    lines = [f"capacity probe (p99 objective {result['slo_p99_ms']:g} ms):"]
    for step in result["steps"]:
        lines.append(f"  {step['rate_per_s']:>9.1f}/s  ack {step['acknowledged_per_s']:9.1f}/s  "
                     f"{'pass' if step['passed'] else 'FAIL'}: {step['reason']}")
    capacity = result["capacity_rps"]
    if capacity is None:
        lines.append("  no step passed: the stack does not meet the objective even at the start rate")
    else:
        lines.append(f"  sustained {capacity:g} check-ins/s through {nodes} agent web nodes = "
                     f"{capacity / nodes:g}/s per node (limited by: {result['limited_by']})")
    return "\n".join(lines)
