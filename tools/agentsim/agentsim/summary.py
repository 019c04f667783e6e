"""Text renderings of a run: the live status line, the human summary and the Markdown table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agentsim.outcome import ERROR_KINDS


def status_line(elapsed: float, duration: float, window: dict[str, Any], interval: float, stats: Any,
                in_flight: int) -> str:
    rate = window["sent"] / interval if interval > 0 else 0.0
    return (
        f"[{elapsed:6.1f}/{duration:g} s] sent {stats.sent} ({rate:.1f}/s) ack {stats.acknowledged} "
        f"p99 {_fmt_ms(window['p99_ms'])} errors {sum(stats.errors.values())} (+{window['errors']}) "
        f"in-flight {in_flight}"
    )


def human_summary(report: dict[str, Any]) -> str:
    t = report["throughput"]
    lat = report["latency_ms"]
    errors = report["errors"]
    settings = report["settings"]
    label = f" [{report['label']}]" if report.get("label") else ""
    lines = [
        f"fleet-agentsim{label}: {report['target']}, {settings['agents']} agents over "
        f"{len(settings['tenants'])} tenants, {settings['rate_per_s']:g}/s for {settings['duration_s']:g} s "
        f"(stopped by {report['stopped_by']})",
        f"  sent {t['sent']} ({t['sent_per_s']:.1f}/s), acknowledged {t['acknowledged']} "
        f"({t['acknowledged_per_s']:.1f}/s), answered {t['answered']}",
        f"  latency ms: p50 {_fmt_ms(lat['p50'])}  p95 {_fmt_ms(lat['p95'])}  p99 {_fmt_ms(lat['p99'])}  "
        f"max {_fmt_ms(lat['max'])}",
        f"  errors {errors['total']}" + "".join(f", {k} {v}" for k, v in errors["by_kind"].items() if v),
    ]
    for kind, samples in errors["samples"].items():
        lines.append(f"    {kind}: {samples[0]}")
    if errors["by_kind"].get("unauthorized") and not settings.get("agent_keys"):
        lines.append("    (the check-ins carried no agent token: give --agent-keys FILE)")
    if report["nodes"]:
        lines.append("  answers by node: " + ", ".join(
            f"{node} {entry['share'] * 100:.1f} %" for node, entry in report["nodes"].items()))
    if report["versions"]:
        lines.append("  versions: " + ", ".join(f"{v} ({n})" for v, n in report["versions"].items()))
    lag = report["schedule_lag_ms"]
    if lag["p99"] is not None and lag["p99"] > 50:
        lines.append(f"  WARNING: the simulator itself fell behind its schedule (p99 lag {lag['p99']:.0f} ms); "
                     "latencies include its own delay")
    if report.get("ledger"):
        lines.append(f"  ledger: {report['ledger']['entries']} acknowledged check-ins in {report['ledger']['path']}")
    return "\n".join(lines)


def markdown_table(reports: Sequence[dict[str, Any]], names: Sequence[str]) -> str:
    header = ("| run | target /s | sent /s | ack /s | p50 ms | p95 ms | p99 ms | max ms | errors | "
              "errors by kind | answers by node |")
    rows = [header, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for name, report in zip(names, reports, strict=True):
        t = report["throughput"]
        lat = report["latency_ms"]
        by_kind = report["errors"]["by_kind"]
        kinds = ", ".join(f"{k} {by_kind[k]}" for k in ERROR_KINDS if by_kind.get(k)) or "-"
        nodes = ", ".join(f"{n} {e['share'] * 100:.0f} %" for n, e in report["nodes"].items()) or "-"
        rows.append(
            f"| {_cell(report.get('label') or name)} | {report['settings']['rate_per_s']:g} | {t['sent_per_s']:.1f} | "
            f"{t['acknowledged_per_s']:.1f} | {_fmt_ms(lat['p50'])} | {_fmt_ms(lat['p95'])} | {_fmt_ms(lat['p99'])} | "
            f"{_fmt_ms(lat['max'])} | {report['errors']['total']} | {_cell(kinds)} | {_cell(nodes)} |"
        )
    return "\n".join(rows)


def _fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _cell(text: str) -> str:
    # A pipe inside a cell would end it.
    return str(text).replace("|", "\\|")
