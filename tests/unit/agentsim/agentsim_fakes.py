"""A stand-in for the check-in service (roles/web/files/fleet_checkin) behind the proxy, and a fake shard reader.

FakeCheckinService is a real aiohttp server on 127.0.0.1 (random port) in its own thread, so that
both in-process runs and `python -m agentsim` subprocesses can load it. It answers POST
/agent/checkin like the reference service: 200 with {"ok": true, "seq", "duplicate", ...} and the
X-Fleet-Node / X-Fleet-Version headers once the row is "committed", 4xx/5xx with {"ok": false,
"error"}. `behaviour(body)` picks, per request, one of: ok, 503, 400, 404, slow, close, redirect.
With `agent_keys` (tenant -> [{"id", "secret"}], the service config's shape) it authenticates like the
service: 401 without a bearer token, 403 when the token is not the agent's, checked with the service's
own fleet_checkin.credentials (never a copy of the formula).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from fleet_checkin.credentials import bearer, verify_agent_token

Row = tuple[str, str, int]

# The lab's shape in small: two shards, three tenants (what `ansible-inventory --host` gives, trimmed).
PLAN: dict[str, Any] = {
    "agents": 12,
    "rate": {"per_second": 40.0},
    "shards": [
        {"shard": 1, "host": "db-01", "schema": "fleet_shard_1", "address": "172.28.5.10",
         "tenants": ["tenant-001", "tenant-002"]},
        {"shard": 2, "host": "db-02", "schema": "fleet_shard_2", "address": "172.28.5.11",
         "tenants": ["tenant-003"]},
    ],
    "tenants": [
        {"name": "tenant-001", "agents": 6, "shard": 1},
        {"name": "tenant-002", "agents": 3, "shard": 1},
        {"name": "tenant-003", "agents": 3, "shard": 2},
    ],
}


@dataclass
class Received:
    body: dict[str, Any]
    content_type: str
    user_agent: str
    answer: str
    authorization: str | None = None


@dataclass
class FakeCheckinService:
    shards: dict[str, int]  # tenant -> shard, as the service's config routes them
    node: str = "web-agent-01"
    version: str = "1.2.3"
    slow_seconds: float = 1.0
    behaviour: Callable[[dict[str, Any]], str] = lambda body: "ok"
    agent_keys: dict[str, list[dict[str, str]]] | None = None
    received: list[Received] = field(default_factory=list)
    committed: dict[Row, int] = field(default_factory=dict)  # row -> shard it was written to
    acknowledged: list[Row] = field(default_factory=list)  # rows answered 200, in answer order
    url: str = ""

    def start(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-checkin", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/agent/checkin", self._checkin)
        # handler_cancellation: a slow answer the client gave up on does not hold up the shutdown.
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    def _answer(self, status: int, document: dict[str, Any]) -> web.Response:
        return web.json_response(document, status=status,
                                 headers={"X-Fleet-Node": self.node, "X-Fleet-Version": self.version})

    async def _checkin(self, request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read())
        answer = self.behaviour(body)
        authorization = request.headers.get("Authorization")
        self.received.append(Received(body, request.headers.get("Content-Type", ""),
                                      request.headers.get("User-Agent", ""), answer, authorization))
        if self.agent_keys is not None:
            token = bearer(authorization)
            if token is None:
                return self._answer(401, {"ok": False, "error": "agent check-in needs credentials"})
            keys = {key["id"]: key["secret"] for key in self.agent_keys.get(body["tenant"], [])}
            if not verify_agent_token(keys, token, body["tenant"], body["agent_id"]):
                return self._answer(403, {"ok": False, "error": "the credential is not the one of this agent"})
        if answer == "close":
            # Dropped without an answer, as by a crashing backend.
            assert request.transport is not None
            request.transport.close()
            raise asyncio.CancelledError
        if answer == "redirect":
            raise web.HTTPTemporaryRedirect("http://8.8.8.8/agent/checkin")
        if answer == "503":
            return self._answer(503, {"ok": False, "error": "shard 1 is unavailable: lost connection"})
        if answer == "400":
            return self._answer(400, {"ok": False, "error": "seq must be an integer", "field": "seq"})
        tenant = body["tenant"]
        if answer == "404" or tenant not in self.shards:
            return self._answer(404, {"ok": False, "error": f"unknown tenant {tenant!r}"})
        row = (tenant, body["agent_id"], body["seq"])
        duplicate = row in self.committed
        self.committed.setdefault(row, self.shards[tenant])
        if answer == "slow":
            # Committed, but the answer comes too late for the client.
            await asyncio.sleep(self.slow_seconds)
        self.acknowledged.append(row)
        return self._answer(200, {"ok": True, "seq": body["seq"], "duplicate": duplicate, "commands": [],
                                  "node": self.node, "version": self.version})


def unused_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound once by the OS, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class FakeReader:
    """A CheckinReader over rows kept in memory, per shard number; records the ranges it was asked for."""

    def __init__(self, rows_by_shard: dict[int, Iterable[Row]]):
        self.rows_by_shard = {shard: list(rows) for shard, rows in rows_by_shard.items()}
        self.asked: list[tuple[int, dict[str, tuple[int, int]]]] = []

    def read(self, shard: Any, ranges: dict[str, tuple[int, int]]) -> list[Row]:
        self.asked.append((shard.shard, dict(ranges)))
        return [row for row in self.rows_by_shard.get(shard.shard, [])
                if row[0] in ranges and ranges[row[0]][0] <= row[2] <= ranges[row[0]][1]]
