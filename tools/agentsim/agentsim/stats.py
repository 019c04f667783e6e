"""Measurements of a run: counts, latency percentiles, errors by kind and a per-second series.

Latencies are kept exactly (8 bytes each, per second of the schedule) rather than in a
histogram: runs are bounded (--max-requests), and exact percentiles leave nothing to argue
about when two runs are compared.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import chain
from typing import Any

from agentsim.outcome import ERROR_KINDS, Outcome

SAMPLES_PER_KIND = 5
NO_NODE = "(no X-Fleet-Node)"
NO_VERSION = "(no X-Fleet-Version)"


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of already sorted values: the smallest value with at least p % at or below it."""
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {p}")
    if not sorted_values:
        return None
    rank = math.ceil(p / 100 * len(sorted_values))
    return sorted_values[max(rank, 1) - 1]


def latency_summary(values_seconds: Iterable[float]) -> dict[str, float | int | None]:
    """p50/p95/p99/max/mean in milliseconds (None when nothing was answered)."""
    values = sorted(values_seconds)
    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 3)
    return {
        "count": len(values),
        "p50": ms(percentile(values, 50)),
        "p95": ms(percentile(values, 95)),
        "p99": ms(percentile(values, 99)),
        "max": ms(values[-1] if values else None),
        "mean": ms(sum(values) / len(values) if values else None),
    }


class SecondBucket:
    """Arrivals scheduled within one second of the run (bucketed by schedule, not by answer)."""

    __slots__ = ("acknowledged", "arrivals", "errors", "latencies", "sent")

    def __init__(self) -> None:
        self.arrivals = 0
        self.sent = 0
        self.acknowledged = 0
        self.errors = 0
        self.latencies = array("d")


class RunStats:
    def __init__(self) -> None:
        self.arrivals = 0
        self.sent = 0
        self.answered = 0
        self.acknowledged = 0
        self.duplicates = 0
        self.errors: Counter[str] = Counter()
        self.samples: dict[str, list[str]] = {}
        self.status_codes: Counter[str] = Counter()
        self.nodes: Counter[str] = Counter()
        self.versions: Counter[str] = Counter()
        self.lags = array("d")  # how late each send left compared to its schedule (seconds)
        self.buckets: dict[int, SecondBucket] = {}
        # The live status line reports the interval since it was last printed.
        self._window_latencies = array("d")
        self._window_sent = 0
        self._window_errors = 0

    def _bucket(self, second: int) -> SecondBucket:
        bucket = self.buckets.get(second)
        if bucket is None:
            bucket = self.buckets[second] = SecondBucket()
        return bucket

    def record_overload(self, second: int) -> None:
        self.arrivals += 1
        bucket = self._bucket(second)
        bucket.arrivals += 1
        self._error(bucket, "overload", "--max-in-flight reached: arrival not sent")

    def record_sent(self, second: int, lag: float) -> None:
        self.arrivals += 1
        self.sent += 1
        self._window_sent += 1
        bucket = self._bucket(second)
        bucket.arrivals += 1
        bucket.sent += 1
        self.lags.append(max(lag, 0.0))

    def record(self, second: int, outcome: Outcome) -> None:
        bucket = self._bucket(second)
        if outcome.latency is not None:
            self.answered += 1
            bucket.latencies.append(outcome.latency)
            self._window_latencies.append(outcome.latency)
            self.nodes[outcome.node or NO_NODE] += 1
            self.versions[outcome.version or NO_VERSION] += 1
        if outcome.status is not None:
            self.status_codes[str(outcome.status)] += 1
        if outcome.error is None:
            self.acknowledged += 1
            bucket.acknowledged += 1
            self.duplicates += outcome.duplicate
        else:
            self._error(bucket, outcome.error, outcome.message)

    def _error(self, bucket: SecondBucket, kind: str, message: str) -> None:
        self.errors[kind] += 1
        bucket.errors += 1
        self._window_errors += 1
        samples = self.samples.setdefault(kind, [])
        if len(samples) < SAMPLES_PER_KIND and message and message not in samples:
            samples.append(message[:300])

    def take_window(self) -> dict[str, Any]:
        """Figures since the previous call, for the live status line."""
        values = sorted(self._window_latencies)
        window = {"sent": self._window_sent, "errors": self._window_errors, "p99_ms": _ms(percentile(values, 99))}
        self._window_latencies = array("d")
        self._window_sent = 0
        self._window_errors = 0
        return window

    def measurements(self, send_window: float) -> dict[str, Any]:
        """The measured sections of the run report."""
        all_latencies = chain.from_iterable(b.latencies for b in self.buckets.values())
        lags = sorted(self.lags)
        answered = sum(self.nodes.values())
        return {
            "throughput": {
                "arrivals": self.arrivals,
                "sent": self.sent,
                "answered": self.answered,
                "acknowledged": self.acknowledged,
                "duplicates_acknowledged": self.duplicates,
                "send_window_s": round(send_window, 3),
                "sent_per_s": _rate(self.sent, send_window),
                "acknowledged_per_s": _rate(self.acknowledged, send_window),
            },
            "latency_ms": latency_summary(all_latencies),
            "errors": {
                "total": sum(self.errors.values()),
                "by_kind": {kind: self.errors.get(kind, 0) for kind in ERROR_KINDS},
                "samples": {kind: self.samples[kind] for kind in ERROR_KINDS if kind in self.samples},
            },
            "status_codes": dict(sorted(self.status_codes.items())),
            "nodes": {
                node: {"answers": count, "share": round(count / answered, 4)}
                for node, count in sorted(self.nodes.items())
            },
            "versions": dict(sorted(self.versions.items())),
            # A late schedule means the simulator itself (CPU) could not keep the rate: read the
            # latency figures with that in mind.
            "schedule_lag_ms": {"p99": _ms(percentile(lags, 99)), "max": _ms(lags[-1] if lags else None)},
            "timeseries": self.timeseries(),
        }

    def timeseries(self) -> list[dict[str, Any]]:
        series = []
        last = max(self.buckets, default=-1)
        for second in range(last + 1):
            bucket = self.buckets.get(second) or SecondBucket()
            values = sorted(bucket.latencies)
            series.append({
                "second": second,
                "arrivals": bucket.arrivals,
                "sent": bucket.sent,
                "acknowledged": bucket.acknowledged,
                "errors": bucket.errors,
                "p50": _ms(percentile(values, 50)),
                "p99": _ms(percentile(values, 99)),
                "max": _ms(values[-1] if values else None),
            })
        return series


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 3)


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 3) if seconds > 0 else 0.0
