"""The `run` engine: an open-loop, bounded check-in load against one checked target.

Every arrival is launched as its own task at its scheduled time; the loop never waits for an
answer. If --max-in-flight tasks are already outstanding the arrival is counted as an
`overload` error instead of being queued, so the schedule (and the offered rate) holds.
The run ends by itself after --duration or --max-requests arrivals, whichever comes first,
then waits at most --timeout for the requests still in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

from agentsim import __version__
from agentsim.agentkeys import AgentKeys
from agentsim.client import CheckinClient, checkin_body
from agentsim.ledger import LedgerWriter
from agentsim.outcome import Outcome
from agentsim.roster import Agent, Roster
from agentsim.schedule import ArrivalClock
from agentsim.stats import RunStats
from agentsim.summary import status_line
from agentsim.target import CHECKIN_PATH, Target

# The scheduler re-checks for a stop request at least this often, even at very low rates.
STOP_POLL_SECONDS = 0.1
# Requests are bounded by their own timeout; this only absorbs timer granularity at the end.
DRAIN_GRACE_SECONDS = 0.25


@dataclass(frozen=True)
class RunSettings:
    target: Target
    tenants: dict[str, int]  # agents per tenant
    rate: float
    duration: float
    max_requests: int
    timeout: float
    max_in_flight: int
    connections: int
    seq_start: int
    first_agent: int = 0
    seed: int | None = None
    new_connections: bool = False
    tls: bool | ssl.SSLContext = field(default=True, compare=False)
    label: str | None = None
    status_every: float | None = None
    ledger_path: str | None = None
    # Another path than the check-in (a static answer of the same stack, for its transport limit).
    path: str = CHECKIN_PATH
    # --agent-keys: every check-in carries its agent's token; None sends none (the service answers 401).
    agent_keys: AgentKeys | None = field(default=None, compare=False)


ClientFactory = Callable[[RunSettings], Any]


def default_client(settings: RunSettings) -> CheckinClient:
    return CheckinClient(
        settings.target,
        timeout=settings.timeout,
        connections=settings.connections,
        new_connections=settings.new_connections,
        tls=settings.tls,
        path=settings.path,
    )


async def run_load(
    settings: RunSettings,
    status_stream: TextIO | None = sys.stderr,
    handle_signals: bool = False,
    client_factory: ClientFactory = default_client,
) -> dict[str, Any]:
    """Run the load and return the report (see README of the tool for its fields)."""
    token_for = settings.agent_keys.token if settings.agent_keys is not None else None
    roster = Roster(settings.tenants, seq_start=settings.seq_start, offset=settings.first_agent, token_for=token_for)
    ledger = LedgerWriter(settings.ledger_path) if settings.ledger_path else None
    try:
        async with client_factory(settings) as client:
            run = _Run(settings, roster, client, ledger, status_stream)
            return await run.execute(handle_signals)
    finally:
        if ledger is not None:
            ledger.close()


class _Run:
    def __init__(self, settings: RunSettings, roster: Roster, client: Any, ledger: LedgerWriter | None,
                 status_stream: TextIO | None):
        self.settings = settings
        self.roster = roster
        self.client = client
        self.ledger = ledger
        self.status_stream = status_stream
        self.stats = RunStats()
        self.tasks: set[asyncio.Task[None]] = set()
        self.stop = asyncio.Event()
        self.first_launch: float | None = None
        self.last_launch: float | None = None

    async def execute(self, handle_signals: bool) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        started_at = datetime.now(UTC)
        start = loop.time()
        clock = ArrivalClock(self.settings.rate, self.settings.duration, self.settings.max_requests, start)
        if handle_signals:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, self.stop.set)
        status = None
        if self.status_stream is not None and self.settings.status_every:
            status = asyncio.create_task(self._status_loop(start))
        try:
            await self._schedule(clock, loop)
            sending_ended = loop.time()
            await self._drain()
        finally:
            if status is not None:
                status.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await status
            if handle_signals:
                for signum in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(signum)
        stopped_by = clock.stopped_by if clock.finished else "interrupted"
        return self._report(started_at, start, sending_ended, loop.time(), stopped_by)

    async def _schedule(self, clock: ArrivalClock, loop: asyncio.AbstractEventLoop) -> None:
        while not self.stop.is_set():
            now = loop.time()
            for k in clock.due(now):
                self._launch(k, clock.due_time(k) - clock.start, now - clock.due_time(k), now)
            next_time = clock.next_time()
            if next_time is None:
                return
            delay = next_time - loop.time()
            if delay > 0:
                await asyncio.sleep(min(delay, STOP_POLL_SECONDS))

    def _launch(self, k: int, offset: float, lag: float, now: float) -> None:
        second = int(offset)
        if len(self.tasks) >= self.settings.max_in_flight:
            self.stats.record_overload(second)
            return
        agent = self.roster.for_arrival(k)
        seq = agent.take_seq()
        self.stats.record_sent(second, lag)
        if self.first_launch is None:
            self.first_launch = now
        self.last_launch = now
        task = asyncio.create_task(self._one(second, agent, seq))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _one(self, second: int, agent: Agent, seq: int) -> None:
        try:
            outcome = await self.client.checkin(checkin_body(agent.agent_id, agent.tenant, seq), agent.authorization)
        except asyncio.CancelledError:
            self.stats.record(second, Outcome(latency=None, error="timeout",
                                              message="still unanswered when the run ended"))
            raise
        except Exception as exc:  # a bug in the client must not silently lose a request
            outcome = Outcome(latency=None, error="other", message=f"{type(exc).__name__}: {exc}")
        self.stats.record(second, outcome)
        if outcome.acknowledged and self.ledger is not None:
            self.ledger.write(agent.tenant, agent.agent_id, seq, outcome.node, outcome.version)

    async def _drain(self) -> None:
        if not self.tasks:
            return
        _, pending = await asyncio.wait(set(self.tasks), timeout=self.settings.timeout + DRAIN_GRACE_SECONDS)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _status_loop(self, start: float) -> None:
        loop = asyncio.get_running_loop()
        every = self.settings.status_every or 1.0
        previous = start
        while True:
            await asyncio.sleep(every)
            now = loop.time()
            window = self.stats.take_window()
            line = status_line(
                elapsed=now - start,
                duration=self.settings.duration,
                window=window,
                interval=now - previous,
                stats=self.stats,
                in_flight=len(self.tasks),
            )
            previous = now
            print(line, file=self.status_stream, flush=True)

    def _report(self, started_at: datetime, start: float, sending_ended: float, ended: float,
                stopped_by: str) -> dict[str, Any]:
        settings = self.settings
        if self.first_launch is not None and self.last_launch is not None:
            # Sends at t0 .. t0 + (n-1)/rate cover n/rate seconds of schedule.
            send_window = self.last_launch - self.first_launch + 1 / settings.rate
        else:
            send_window = 0.0
        report: dict[str, Any] = {
            "tool": "fleet-agentsim",
            "tool_version": __version__,
            "label": settings.label,
            "target": settings.target.url,
            "target_addresses": list(settings.target.addresses),
            "started_at": started_at.isoformat(timespec="milliseconds"),
            "settings": {
                "agents": self.roster.size,
                "tenants": dict(self.roster.counts),
                "rate_per_s": settings.rate,
                "duration_s": settings.duration,
                "max_requests": settings.max_requests,
                "timeout_s": settings.timeout,
                "max_in_flight": settings.max_in_flight,
                "connections": settings.connections,
                "keep_alive": not settings.new_connections,
                "seed": settings.seed,
                "first_agent": self.roster.offset,
                "seq_start": settings.seq_start,
                "agent_keys": settings.agent_keys.path if settings.agent_keys is not None else None,
            },
            "stopped_by": stopped_by,
            "sending_s": round(sending_ended - start, 3),
            "wall_s": round(ended - start, 3),
            "unix_start": round(time.time() - (ended - start), 3),
        }
        report.update(self.stats.measurements(send_window))
        report["ledger"] = (
            {"path": str(self.ledger.path), "entries": self.ledger.count} if self.ledger is not None else None
        )
        return report
