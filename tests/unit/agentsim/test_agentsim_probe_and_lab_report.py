"""The capacity probe (steps until the objective breaks) and the lab report (plan against measurement)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from agentsim.errors import UsageError
from agentsim.labreport import backend_shares, lab_table, mermaid_topology, parse_haproxy_csv, text_table
from agentsim.probe import probe_capacity, step_rates, step_verdict

CSV_HEADER = "# pxname,svname,qcur,scur,stot,status,bck,\n"


def haproxy_csv(rows: list[tuple[str, str, int, str, str]]) -> str:
    return CSV_HEADER + "".join(f"{px},{sv},0,0,{stot},{status},{bck},\n" for px, sv, stot, status, bck in rows)


def fake_report(rate: float, p99: float | None, errors: int = 0) -> dict[str, Any]:
    return {
        "throughput": {"arrivals": int(rate * 2), "acknowledged_per_s": rate, "send_window_s": 2.0,
                       "acknowledged": int(rate * 2) - errors},
        "latency_ms": {"p50": None if p99 is None else p99 / 3, "p95": p99, "p99": p99, "max": p99},
        "errors": {"total": errors, "by_kind": {"timeout": errors}},
        "schedule_lag_ms": {"p99": 1.0},
        "nodes": {},
        "settings": {"rate_per_s": rate},
    }


def test_step_rates_grow_by_the_factor_and_end_on_the_ceiling():
    assert step_rates(100, 2, 700) == [100, 200, 400, 700]
    assert step_rates(100, 1.5, 100) == [100]


@pytest.mark.parametrize(("start", "factor", "ceiling", "option"), [
    (0, 2, 100, "--start-rate"), (100, 1, 200, "--step-factor"), (300, 2, 200, "--max-rate")])
def test_step_rates_refuse_a_probe_that_cannot_step(start, factor, ceiling, option):
    with pytest.raises(UsageError, match=option):
        step_rates(start, factor, ceiling)


@pytest.mark.parametrize(("report", "passed", "reason"), [
    (fake_report(100, 40.0), True, "p99 40.0 ms"),
    (fake_report(100, 140.0), False, "above the objective 100 ms"),
    (fake_report(100, 40.0, errors=3), False, "3 failed requests (timeout 3)"),
    (fake_report(100, None), False, "no answer"),
])
def test_a_step_passes_only_without_errors_and_within_the_objective(report, passed, reason):
    ok, why = step_verdict(report, 100.0)
    assert ok is passed
    assert reason in why


@dataclass(frozen=True)
class Template:
    """Stands in for RunSettings: probe_capacity only replaces rate, seq_start and label."""

    rate: float = 1.0
    seq_start: int = 1000
    label: str | None = None


def test_probe_stops_at_the_first_failing_step_and_moves_seqs_on():
    seen = []

    async def run_step(settings):
        seen.append((settings.rate, settings.seq_start))
        # The stack holds 300/s: above it p99 breaks.
        return fake_report(settings.rate, 30.0 if settings.rate <= 300 else 250.0)

    result = asyncio.run(probe_capacity(Template(), [100, 200, 400, 800], 100.0, run_step))
    assert result["capacity_rps"] == 200
    assert [s["passed"] for s in result["steps"]] == [True, True, False]
    assert "above the objective" in result["limited_by"]
    # 800/s never ran; each step starts above every seq the previous one could have used.
    assert [rate for rate, _ in seen] == [100, 200, 400]
    assert seen[1][1] > seen[0][1] + 100 * 2 - 1 and seen[2][1] > seen[1][1] + 200 * 2 - 1


def test_probe_through_the_cli_against_a_live_service(service, plan_file, cli_env, tmp_path: Path):
    result_path = tmp_path / "capacity.json"
    done = subprocess.run(
        [sys.executable, "-m", "agentsim", "probe", "--url", service.url, "--plan", str(plan_file),
         "--start-rate", "20", "--step-factor", "2", "--max-rate", "40", "--step-seconds", "0.5",
         "--nodes", "2", "--json", str(result_path)],
        capture_output=True, text=True, env=cli_env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(result_path.read_text())
    assert [step["rate_per_s"] for step in result["steps"]] == [20, 40]
    assert result["capacity_rps"] == 40
    assert result["capacity_per_node_rps"] == 20
    assert "= 20/s per node" in done.stdout
    # 10 + 20 check-ins, every one a distinct (agent, seq) and committed.
    assert len(service.committed) == 30


def test_backend_shares_come_from_the_growth_of_haproxy_counters():
    before = parse_haproxy_csv(haproxy_csv([("agents", "web-agent-01", 100, "UP", "0"),
                                            ("agents", "web-agent-02", 50, "UP", "0"),
                                            ("agents", "BACKEND", 150, "UP", "0")]), "before")
    after = parse_haproxy_csv(haproxy_csv([("agents", "web-agent-01", 400, "UP", "0"),
                                           ("agents", "web-agent-02", 150, "DRAIN", "0"),
                                           ("agents", "BACKEND", 550, "UP", "0"),
                                           ("users", "web-user-01", 9, "UP", "0")]), "after")
    shares = backend_shares(before, after, "agents")
    assert shares == {
        "web-agent-01": {"requests": 300, "share": 0.75, "status": "UP", "backup": False},
        "web-agent-02": {"requests": 100, "share": 0.25, "status": "DRAIN", "backup": False},
    }


def test_a_file_that_is_not_haproxy_csv_is_refused_naming_it():
    with pytest.raises(UsageError, match=r"haproxy stats stats\.html: not HAProxy CSV"):
        parse_haproxy_csv("<html>login</html>", "stats.html")


PLAN = {
    "agents": 20000,
    "rate": {"per_minute": 6000.0, "per_second": 100.0},
    "hosts": {"proxy": ["proxy-01", "proxy-02"], "web_agent": ["web-agent-01", "web-agent-02"],
              "web_user": ["web-user-01"], "app": ["app-01", "app-02"], "database": ["db-01"]},
    "tiers": {"web_agent": {"nodes": 2, "capacity_rps": 400.0, "utilisation": 0.125},
              "app": {"active": 1}},
    "shards": [{"shard": 1, "host": "db-01", "schema": "fleet_shard_1", "tenants": ["t1", "t2"], "agents": 20000}],
    "tenants": [{"name": "t1"}, {"name": "t2"}],
}


def test_lab_table_sets_each_measurement_against_the_plan():
    run = fake_report(100.0, 12.0)
    verify = {"missing": 0, "found_on_wrong_shard": 0, "acknowledged": 200}
    shares = {"web-agent-01": {"requests": 100, "share": 0.5, "status": "UP", "backup": False},
              "web-agent-02": {"requests": 100, "share": 0.5, "status": "UP", "backup": False}}
    rows = {row[0]: row for row in lab_table(PLAN, run, verify, shares)}
    assert rows["check-ins per minute"][1:] == ["6,000", "6,000", "ok"]
    assert rows["p99 latency"][2:] == ["12.0 ms", "ok"]
    assert rows["lost acknowledged check-ins"][3] == "ok"
    # 100 requests in a 2 s window = 50/s of 400/s.
    assert rows["web-agent-01: share of agent traffic, utilisation"][2] == "50.0 %, 12.5 % (50.0/s, UP)"
    assert "web-agent-01" in text_table(list(rows.values()))


def test_lab_table_marks_every_missed_bound():
    run = fake_report(100.0, 180.0, errors=4)
    run["throughput"]["acknowledged_per_s"] = 60.0
    verify = {"missing": 2, "found_on_wrong_shard": 1, "acknowledged": 196}
    shares = {"web-agent-01": {"requests": 120, "share": 1.0, "status": "DOWN", "backup": False}}
    verdicts = {row[0]: row[3] for row in lab_table(PLAN, run, verify, shares)}
    assert verdicts["check-ins per minute"] == "MISSED"
    assert verdicts["p99 latency"] == "MISSED"
    assert verdicts["failed requests"] == "MISSED"
    assert verdicts["lost acknowledged check-ins"] == "MISSED"
    assert verdicts["web-agent-01: share of agent traffic, utilisation"] == "MISSED"


def test_the_topology_diagram_shows_every_host_and_the_fallback():
    diagram = mermaid_topology(PLAN)
    assert diagram.startswith("flowchart LR")
    for host in ("proxy-01", "proxy-02", "web-agent-01", "web-agent-02", "web-user-01"):
        assert f'"{host}"' in diagram
    assert '"app-01 (active)"' in diagram and '"app-02 (standby)"' in diagram
    assert "db-01: fleet_shard_1, 2 tenants, 20,000 agents" in diagram
    assert "web_user -. fallback .-> web_agent" in diagram
