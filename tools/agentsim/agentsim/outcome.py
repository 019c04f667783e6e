"""What one arrival came to: the unit the client produces and the statistics consume."""

from __future__ import annotations

from dataclasses import dataclass

# Error kinds, in report order. "overload" arrivals were never sent (--max-in-flight reached).
# "unauthorized" is a 401 (no or unreadable token), "forbidden" a 403 (a token, not this agent's);
# "4xx" is every other 4xx.
ERROR_KINDS = ("connect", "timeout", "unauthorized", "forbidden", "4xx", "5xx", "overload", "other")


@dataclass(slots=True)
class Outcome:
    # Seconds from sending to the complete answer; None when nothing was answered
    # (connect, timeout, overload), so that latency statistics cover answered requests only.
    latency: float | None
    error: str | None = None  # one of ERROR_KINDS, None for an acknowledged check-in
    message: str = ""
    status: int | None = None
    node: str | None = None
    version: str | None = None
    duplicate: bool = False

    @property
    def acknowledged(self) -> bool:
        return self.error is None
