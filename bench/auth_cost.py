#!/usr/bin/env python3
"""What checking credentials costs the check-in service: check-ins/s with and without it, same run.

The service's own WSGI app (roles/web/files/fleet_checkin, as the web nodes run it) answers
check-ins in this process, each with its agent's token, in alternating rounds:

  with       the app as shipped: the Authorization header read, the token's HMAC-SHA256 verified
  without    the same app with the token check replaced by "accept" (the header is still read)

The store is a no-op, so the figure is the service's own Python path (falcon, JSON, the check),
the worst case for the share of authentication: through the lab a check-in also crosses HAProxy,
nginx and a database commit (bench/checkin_throughput.py), which the check does not touch.
It also times one token check and one API key check alone. Target: with >= 0.90 x without.

    python bench/auth_cost.py [--requests 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
import timeit
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.dont_write_bytecode = True  # no __pycache__ beside the role's files
sys.path.insert(0, str(ROOT / "roles" / "web" / "files"))

import falcon.testing
from fleet_checkin import app as service
from fleet_checkin.config import parse_config
from fleet_checkin.credentials import agent_token, api_key_digest, tenant_keys, verify_agent_token, verify_api_key
from fleet_checkin.store import CheckinResult

TARGET_RATIO = 0.90
MASTER = [("m1", "bench-only-master-agent-key-not-a-secret")]
TENANTS = [f"tenant-{n:03d}" for n in range(1, 5)]
AGENTS = 1000


class NullStore:
    """Acknowledges every check-in at once: the database's part is bench/checkin_throughput.py's."""

    def checkin(self, shard_id: int, request: Any, served_by: str) -> CheckinResult:
        return CheckinResult(duplicate=False, commands=[])


def config() -> Any:
    return parse_config({
        "node": "bench", "version": "bench", "drain_file": "/nonexistent/drain",
        "tenants": dict.fromkeys(TENANTS, 1),
        "shards": {"1": {"host": "127.0.0.1", "port": 3306, "database": "d", "user": "u", "password": "p"}},
        "agent_master_keys": [{"id": key_id, "secret": secret} for key_id, secret in MASTER],
        "api_keys": [{"id": "bench", "sha256": api_key_digest("x" * 43), "admin": True}],
    })


def environs() -> list[tuple[dict[str, Any], bytes]]:
    """One prepared WSGI request (environ, body) per agent, each with its own token."""
    made = []
    for number in range(AGENTS):
        tenant, agent_id = TENANTS[number % len(TENANTS)], f"agent-{number:06d}"
        key_id, secret = tenant_keys(tenant, (), MASTER)[0]
        body = json.dumps({"agent_id": agent_id, "tenant": tenant, "seq": 1, "status": "ok"}).encode()
        made.append((falcon.testing.create_environ(
            method="POST", path="/agent/checkin", body=body,
            headers={"Content-Type": "application/json",
                     "Authorization": f"Bearer {agent_token(key_id, secret, tenant, agent_id)}"}), body))
    return made


def accept(keys: Any, token: str, tenant: str, agent_id: str) -> bool:
    return True


def rate(app: Any, prepared: list[tuple[dict[str, Any], bytes]], requests: int) -> float:
    """Check-ins per second the app answers 200, one after the other."""
    statuses: list[str] = []

    def start_response(status: str, headers: list[Any], exc_info: Any = None) -> None:
        statuses.append(status)

    started = time.perf_counter()
    for k in range(requests):
        template, body = prepared[k % len(prepared)]
        environ = dict(template, **{"wsgi.input": io.BytesIO(body)})
        for _ in app(environ, start_response):
            pass
    elapsed = time.perf_counter() - started
    refused = [s for s in statuses if not s.startswith("200")]
    if refused:
        sys.exit(f"the app refused {len(refused)} of {requests} check-ins: {refused[0]}")
    return requests / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    prepared = environs()
    app = service.create_app(config(), NullStore())
    rounds: dict[str, list[float]] = {"with": [], "without": []}
    for _ in range(args.rounds):
        rounds["with"].append(rate(app, prepared, args.requests))
        # CheckinResource calls the module's name at request time: "without" accepts every token.
        service.verify_agent_token = accept
        try:
            rounds["without"].append(rate(app, prepared, args.requests))
        finally:
            service.verify_agent_token = verify_agent_token
    keys = dict(tenant_keys("tenant-001", (), MASTER))
    token = agent_token("m1", keys["m1"], "tenant-001", "agent-000001")
    verify_us = min(timeit.repeat(lambda: verify_agent_token(keys, token, "tenant-001", "agent-000001"),
                                  number=20000, repeat=5)) / 20000 * 1e6
    api_keys = {"bench": config().api_keys["bench"]}
    api_us = min(timeit.repeat(lambda: verify_api_key(api_keys, "bench." + "x" * 43), number=20000,
                               repeat=5)) / 20000 * 1e6
    with_rate, without_rate = statistics.median(rounds["with"]), statistics.median(rounds["without"])
    ratio = with_rate / without_rate
    print(f"check-ins/s in process (median of {args.rounds} rounds of {args.requests}): "
          f"with the token check {with_rate:,.0f}, without {without_rate:,.0f}: ratio {ratio:.3f} "
          f"(target >= {TARGET_RATIO:.2f}: {'met' if ratio >= TARGET_RATIO else 'missed'})")
    print(f"per request: with {1e6 / with_rate:.1f} us, without {1e6 / without_rate:.1f} us; "
          f"one token check alone {verify_us:.2f} us, one API key check {api_us:.2f} us")
    return 0 if ratio >= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
