"""`report`: run reports -> a latency-over-time PNG (and, in cli, a Markdown table).

matplotlib is imported here only, so `run` starts without paying for it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentsim.errors import UsageError

REQUIRED_KEYS = ("settings", "throughput", "latency_ms", "errors", "nodes", "timeseries")
SHORT_RUN_SECONDS = 30


def load_report(path: str | Path) -> dict[str, Any]:
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"report {path}: cannot read the file: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UsageError(f"report {path}: not valid JSON: {exc}") from None
    if not isinstance(report, dict) or report.get("tool") != "fleet-agentsim":
        raise UsageError(f"report {path}: not a run report of fleet-agentsim (written by `run --json`)")
    missing = [key for key in REQUIRED_KEYS if key not in report]
    if missing:
        raise UsageError(f"report {path}: lacks {', '.join(missing)}")
    return report


def render_chart(reports: Sequence[dict[str, Any]], names: Sequence[str], png: str | Path,
                 title: str | None = None) -> None:
    """Latency p50/p99 per second on top, sent and errors per second below, one colour per run."""
    import matplotlib  # noqa: PLC0415  (deliberately lazy, see the module docstring)

    matplotlib.use("Agg")  # no display on the controller
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, (latency_axis, count_axis) = plt.subplots(
        2, 1, figsize=(11, 7), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (name, report) in enumerate(zip(names, reports, strict=True)):
        colour = colours[index % len(colours)]
        label = report.get("label") or name
        series = report["timeseries"]
        seconds = [point["second"] for point in series]
        # A line needs two points: a short run (or a second between gaps) shows as markers.
        marker = "o" if len(series) <= SHORT_RUN_SECONDS else None
        latency_axis.plot(seconds, [_nan(p["p50"]) for p in series], color=colour, linestyle="--", marker=marker,
                          markersize=4, label=f"{label} p50")
        latency_axis.plot(seconds, [_nan(p["p99"]) for p in series], color=colour, marker=marker, markersize=4,
                          label=f"{label} p99")
        count_axis.plot(seconds, [p["sent"] for p in series], color=colour, marker=marker, markersize=4,
                        label=f"{label} sent/s")
        errors = [p["errors"] for p in series]
        if any(errors):
            count_axis.bar(seconds, errors, color=colour, alpha=0.4, label=f"{label} errors/s")
    latency_axis.set_ylabel("latency (ms)")
    latency_axis.set_ylim(bottom=0)
    latency_axis.grid(True, alpha=0.3)
    latency_axis.legend(loc="upper left", fontsize="small")
    count_axis.set_xlabel("second of the run (by schedule)")
    count_axis.set_ylabel("per second")
    count_axis.set_ylim(bottom=0)
    count_axis.grid(True, alpha=0.3)
    count_axis.legend(loc="upper left", fontsize="small")
    figure.suptitle(title or "fleet-agentsim: check-in latency over time")
    figure.tight_layout()
    try:
        figure.savefig(png, dpi=100)
    except OSError as exc:
        raise UsageError(f"--png {png}: cannot write the file: {exc.strerror or exc}") from None
    finally:
        plt.close(figure)


def _nan(value: float | None) -> float:
    # A second without answers has no percentile; NaN leaves a gap instead of a fake zero.
    return float("nan") if value is None else value
