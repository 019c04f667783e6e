"""The run engine against a real HTTP server on 127.0.0.1: open-loop rate, ledger, seqs, error kinds, report."""

from __future__ import annotations

import asyncio
import json
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from agentsim.ledger import read_ledger
from agentsim.load import RunSettings, run_load
from agentsim.summary import human_summary, markdown_table
from agentsim.target import check_target
from agentsim_fakes import FakeCheckinService, unused_port

TENANTS = {"tenant-001": 2, "tenant-002": 1, "tenant-003": 1}


def settings_for(url: str, **overrides: Any) -> RunSettings:
    base = RunSettings(
        target=check_target(url),
        tenants=TENANTS,
        rate=50.0,
        duration=0.5,
        max_requests=1_000_000,
        timeout=2.0,
        max_in_flight=1000,
        connections=20,
        seq_start=5000,
    )
    return replace(base, **overrides)


def run(url: str, **overrides: Any) -> dict[str, Any]:
    return asyncio.run(run_load(settings_for(url, **overrides), status_stream=None))


def number_of(agent_id: str) -> int:
    return int(agent_id.removeprefix("agent-"))


def test_offered_rate_is_rate_times_duration(service: FakeCheckinService):
    report = run(service.url, rate=200.0, duration=1.0)

    throughput = report["throughput"]
    assert throughput["arrivals"] == throughput["sent"] == 200
    assert len(service.received) == 200
    assert throughput["acknowledged"] == 200
    assert report["stopped_by"] == "duration"
    assert 0.95 <= report["sending_s"] <= 1.2
    assert throughput["sent_per_s"] == pytest.approx(200, rel=0.1)
    assert report["errors"]["total"] == 0
    assert [point["arrivals"] for point in report["timeseries"]] == [200]


def test_slow_answers_do_not_lower_the_offered_rate(service: FakeCheckinService):
    # Open loop: a closed-loop tool with 20 connections would manage far fewer sends here.
    service.slow_seconds = 0.4
    service.behaviour = lambda body: "slow"

    report = run(service.url, rate=100.0, duration=0.6, connections=100)

    assert report["throughput"]["sent"] == 60
    assert report["sending_s"] < 0.9
    assert report["throughput"]["acknowledged"] == 60
    assert report["latency_ms"]["p50"] >= 400


def test_max_requests_ends_the_run_first(service: FakeCheckinService):
    report = run(service.url, rate=100.0, duration=5.0, max_requests=10)

    assert report["stopped_by"] == "max-requests"
    assert report["throughput"]["sent"] == 10
    assert report["wall_s"] < 1.0


def test_ledger_holds_exactly_the_acknowledged_checkins(service: FakeCheckinService, tmp_path: Path):
    counter = iter(range(1_000_000))

    def every_third_fails(body: dict[str, Any]) -> str:
        n = next(counter)
        return "503" if n % 3 == 0 else "400" if n % 7 == 0 else "ok"

    service.behaviour = every_third_fails
    ledger = tmp_path / "ledger.jsonl"

    report = run(service.url, rate=80.0, duration=0.5, ledger_path=str(ledger))

    entries = list(read_ledger(ledger))
    assert Counter(entry.key for entry in entries) == Counter(service.acknowledged)
    assert len(entries) == report["throughput"]["acknowledged"] == report["ledger"]["entries"]
    assert 0 < len(entries) < report["throughput"]["sent"] == 40
    assert {(entry.node, entry.version) for entry in entries} == {("web-agent-01", "1.2.3")}
    assert report["ledger"]["path"] == str(ledger)


def test_every_agent_sends_its_own_strictly_increasing_seqs(service: FakeCheckinService):
    run(service.url, rate=80.0, duration=0.5)

    by_agent: dict[str, list[int]] = defaultdict(list)
    tenant_of: dict[str, set[str]] = defaultdict(set)
    for request in service.received:
        by_agent[request.body["agent_id"]].append(request.body["seq"])
        tenant_of[request.body["agent_id"]].add(request.body["tenant"])
    # 4 agents, round robin: each sends every 50 ms, so the server sees them in sending order.
    assert sorted(by_agent) == ["agent-000000", "agent-000001", "agent-000002", "agent-000003"]
    for seqs in by_agent.values():
        assert seqs == list(range(5000, 5010))
    assert all(len(tenants) == 1 for tenants in tenant_of.values())
    assert Counter(next(iter(t)) for t in tenant_of.values()) == Counter(TENANTS)
    # What goes on the wire is the service's check-in body.
    request = service.received[0]
    assert set(request.body) == {"agent_id", "tenant", "seq", "status"}
    assert request.content_type == "application/json"
    assert request.user_agent.startswith("fleet-agentsim/")


def test_errors_are_classified_by_kind(service: FakeCheckinService, tmp_path: Path):
    answers = ["ok", "503", "404", "slow", "close", "redirect"]
    service.behaviour = lambda body: answers[number_of(body["agent_id"])]
    service.slow_seconds = 1.0
    ledger = tmp_path / "ledger.jsonl"

    report = run(service.url, tenants={"tenant-001": 6}, rate=60.0, duration=0.5, timeout=0.3,
                 ledger_path=str(ledger))

    errors = report["errors"]
    assert errors["by_kind"] == {"connect": 5, "timeout": 5, "unauthorized": 0, "forbidden": 0, "4xx": 5, "5xx": 5,
                                 "overload": 0, "other": 5}
    assert errors["total"] == 25
    assert report["throughput"]["acknowledged"] == 5
    assert report["status_codes"] == {"200": 5, "307": 5, "404": 5, "503": 5}
    assert "HTTP 503" in errors["samples"]["5xx"][0]
    assert "unknown tenant" in errors["samples"]["4xx"][0]
    assert "307" in errors["samples"]["other"][0]
    # A dropped POST is not sent again, and a redirect is never followed.
    assert len(service.received) == 30
    # Committed but answered too late: no claim in the ledger.
    assert {entry.agent_id for entry in read_ledger(ledger)} == {"agent-000000"}
    assert report["wall_s"] < 1.5


def test_nothing_listening_is_a_connect_error():
    report = run(f"http://127.0.0.1:{unused_port()}", rate=40.0, duration=0.25)

    assert report["errors"]["by_kind"]["connect"] == report["throughput"]["sent"] == 10
    assert report["throughput"]["answered"] == 0
    assert report["latency_ms"]["p50"] is None
    assert report["nodes"] == {}
    assert "agents over" in human_summary(report)


def test_arrivals_beyond_max_in_flight_are_overload_not_queued(service: FakeCheckinService):
    service.behaviour = lambda body: "slow"
    service.slow_seconds = 0.8

    report = run(service.url, rate=40.0, duration=0.5, max_in_flight=2)

    assert report["throughput"]["arrivals"] == 20
    assert report["throughput"]["sent"] == 2
    assert report["errors"]["by_kind"]["overload"] == 18
    assert len(service.received) == 2


def test_report_fields(service: FakeCheckinService, tmp_path: Path):
    ledger = tmp_path / "ledger.jsonl"

    report = run(service.url, rate=40.0, duration=0.5, label="baseline", seed=7, first_agent=3,
                 ledger_path=str(ledger))

    json.dumps(report)  # the report is what `run --json` writes
    assert report["tool"] == "fleet-agentsim"
    assert report["label"] == "baseline"
    assert report["target"] == service.url
    assert report["target_addresses"] == ["127.0.0.1"]
    assert report["settings"] == {
        "agents": 4, "tenants": TENANTS, "rate_per_s": 40.0, "duration_s": 0.5, "max_requests": 1_000_000,
        "timeout_s": 2.0, "max_in_flight": 1000, "connections": 20, "keep_alive": True, "seed": 7,
        "first_agent": 3, "seq_start": 5000, "agent_keys": None,
    }
    assert set(report) >= {"started_at", "stopped_by", "sending_s", "wall_s", "unix_start", "throughput",
                           "latency_ms", "errors", "status_codes", "nodes", "versions", "schedule_lag_ms",
                           "timeseries", "ledger"}
    assert report["throughput"]["sent"] == 20
    assert set(report["latency_ms"]) == {"count", "p50", "p95", "p99", "max", "mean"}
    assert report["latency_ms"]["count"] == 20
    assert report["latency_ms"]["p50"] <= report["latency_ms"]["p99"] <= report["latency_ms"]["max"]
    assert report["nodes"] == {"web-agent-01": {"answers": 20, "share": 1.0}}
    assert report["versions"] == {"1.2.3": 20}
    assert report["status_codes"] == {"200": 20}
    assert report["ledger"] == {"path": str(ledger), "entries": 20}
    assert service.received[0].body["agent_id"] == "agent-000003"

    text = human_summary(report)
    assert "fleet-agentsim [baseline]" in text
    assert "web-agent-01 100.0 %" in text
    table = markdown_table([report], ["a"]).splitlines()
    assert len(table) == 3
    assert table[2].startswith("| baseline | 40 |")
