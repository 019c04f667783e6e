"""The open-loop arrival clock: arrival k is due at start + k / rate, whatever the answers do.

Nothing here waits for an answer; the load loop asks which arrivals are due, launches each as
its own task and sleeps until the next one. A slow stack therefore shows up as latency and
errors, never as a lower offered rate (the "coordinated omission" of closed-loop tools).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class ArrivalClock:
    rate: float  # arrivals per second
    duration: float  # seconds
    max_arrivals: int  # hard bound, whichever of the two comes first
    start: float  # event loop time of arrival 0
    issued: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        # Arrivals at k / rate for every k with k / rate < duration.
        self.scheduled = math.ceil(self.rate * self.duration - 1e-9)
        self.total = min(self.scheduled, self.max_arrivals)

    @property
    def stopped_by(self) -> str:
        return "max-requests" if self.max_arrivals < self.scheduled else "duration"

    def due_time(self, k: int) -> float:
        return self.start + k / self.rate

    def due(self, now: float) -> range:
        """Arrivals due by now that were not handed out yet (several at once if the loop was late)."""
        first = self.issued
        if first >= self.total:
            return range(first, first)
        # The first one not yet due is floor((now - start) * rate) + 1; the epsilon keeps rounding
        # from making arrival k "not yet due" at exactly its due time.
        last = min(self.total, math.floor((now - self.start) * self.rate + 1e-9) + 1)
        self.issued = max(first, last)
        return range(first, self.issued)

    def next_time(self) -> float | None:
        """When the next arrival is due; None once every arrival was handed out."""
        if self.issued >= self.total:
            return None
        return self.due_time(self.issued)

    @property
    def finished(self) -> bool:
        return self.issued >= self.total
