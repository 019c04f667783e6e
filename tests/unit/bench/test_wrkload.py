"""bench/wrkload.py: how wrk's report is read, when a step passes and what the capacity is."""

import importlib.util
import json
import pathlib
import re
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
_SPEC = importlib.util.spec_from_file_location("wrkload", ROOT / "bench" / "wrkload.py")
wrkload = importlib.util.module_from_spec(_SPEC)
# dataclasses look their module up in sys.modules.
sys.modules[_SPEC.name] = wrkload
_SPEC.loader.exec_module(wrkload)

# The tokens come from the simulator's keys file reader, the check from the service's own module.
sys.path.insert(0, str(ROOT / "tools" / "agentsim"))
sys.path.insert(0, str(ROOT / "roles" / "web" / "files"))
# No __pycache__ next to the role's files.
_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True
from agentsim.agentkeys import load_agent_keys
from fleet_checkin.credentials import verify_agent_token

sys.dont_write_bytecode = _bytecode

REPORT = (
    "Running 10s test @ http://172.28.1.10:80\n  2 threads and 8 connections\n"
    'WRK_JSON {"requests":5120,"duration_us":10000000,"connect":0,"read":0,"write":0,"status":0,'
    '"timeout":0,"p50_us":12500,"p99_us":83000,"max_us":150800}\n'
)


def step(connections, per_s, p99_ms, **errors):
    counts = dict.fromkeys(wrkload.ERROR_KINDS, 0) | errors
    return wrkload.Step(connections, 10.0, int(per_s * 10), per_s, p99_ms / 2, p99_ms, p99_ms * 2, counts)


def test_report_gives_rate_latency_and_errors():
    parsed = wrkload.parse_report(REPORT, 8)
    assert parsed.per_s == 512.0
    assert (parsed.p50_ms, parsed.p99_ms, parsed.max_ms) == (12.5, 83.0, 150.8)
    assert parsed.failed == 0
    assert parsed.passes(100.0)
    assert not parsed.passes(80.0)


def test_output_without_report_names_what_wrk_printed():
    with pytest.raises(wrkload.WrkUnavailable, match="no WRK_JSON line; it printed: unable to connect"):
        wrkload.parse_report("unable to connect to 172.28.1.10:80 Connection refused\n", 8)


def test_any_failed_request_fails_a_step_whatever_its_latency():
    failing = step(16, 900.0, 20.0, status=3, timeout=1)
    assert not failing.passes(100.0)
    assert failing.why_not(100.0) == "16 connections: 1 timeout errors, 3 status errors"


def test_probe_stops_at_the_first_failing_step_and_keeps_the_best_passing_rate():
    answers = {1: step(1, 200.0, 9.0), 2: step(2, 380.0, 30.0), 4: step(4, 370.0, 60.0), 8: step(8, 450.0, 140.0)}
    ran = []

    def run(connections):
        ran.append(connections)
        return answers[connections]

    result = wrkload.probe(run, (1, 2, 4, 8, 16), 100.0)
    assert ran == [1, 2, 4, 8]
    assert result["capacity_per_s"] == 380.0
    assert result["at_connections"] == 2
    assert result["limited_by"] == "8 connections: p99 140 ms"


def test_nothing_passing_means_zero_capacity():
    result = wrkload.capacity([step(1, 150.0, 250.0)], 100.0)
    assert result["capacity_per_s"] == 0.0
    assert result["at_connections"] is None


def test_command_keeps_every_seq_of_a_run_apart_per_thread(monkeypatch):
    monkeypatch.setattr(wrkload.shutil, "which", lambda name: "/usr/bin/wrk")
    argv = wrkload.command("http://172.28.1.10:80", 1, 10, "checkin", "/agent/checkin", pathlib.Path("r.txt"), 42)
    assert argv[:3] == ["/usr/bin/wrk", "-t1", "-c1"]
    assert argv[-5:] == ["checkin", "r.txt", "42", "1", "/agent/checkin"]


def test_missing_wrk_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(wrkload.shutil, "which", lambda name: None)
    with pytest.raises(wrkload.WrkUnavailable, match="apt-get install wrk"):
        wrkload.wrk_binary()


def test_roster_lines_carry_each_agents_token(tmp_path):
    keys = {"tenant-001": [{"id": "k1", "secret": "unit-test-wrk-roster-key-of-tenant-001"}],
            "tenant-002": [{"id": "k1", "secret": "unit-test-wrk-roster-key-of-tenant-002"}]}
    keys_file = tmp_path / "agent-keys.json"
    keys_file.write_text(json.dumps({"agent_keys": keys}))
    agents = [("agent-000000", "tenant-001"), ("agent-000001", "tenant-002"), ("agent-000002", "tenant-001")]

    roster = wrkload.write_roster(tmp_path / "roster.txt", agents,
                                  load_agent_keys(str(keys_file), ["tenant-001", "tenant-002"]).token)

    lines = roster.read_text().splitlines()
    assert len(lines) == 3
    for line, (agent_id, tenant) in zip(lines, agents, strict=True):
        # The shape checkin_wrk.lua reads: ^(%S+) (%S+) ?(%S*)$
        assert re.fullmatch(r"(\S+) (\S+) (\S+)", line), line
        read_id, read_tenant, token = line.split(" ")
        assert (read_id, read_tenant) == (agent_id, tenant)
        tenant_keys = {key["id"]: key["secret"] for key in keys[tenant]}
        assert verify_agent_token(tenant_keys, token, tenant, agent_id)
        assert not verify_agent_token(tenant_keys, token, tenant, "agent-999999")


def test_roster_without_keys_has_no_token(tmp_path):
    roster = wrkload.write_roster(tmp_path / "roster.txt", [("agent-000000", "tenant-001")])
    assert roster.read_text() == "agent-000000 tenant-001\n"
