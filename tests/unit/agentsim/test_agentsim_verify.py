"""verify: every acknowledged check-in must be on its tenant's shard, and on no other."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest
from agentsim.errors import ReaderUnavailable, UsageError
from agentsim.ledger import LedgerEntry, read_ledger
from agentsim.load import RunSettings, run_load
from agentsim.plan import load_plan, parse_plan
from agentsim.target import check_target
from agentsim.verify import DockerExecReader, checkins_query, verify_ledger, verify_summary
from agentsim_fakes import PLAN, FakeCheckinService, FakeReader

FLEET = parse_plan(PLAN, "test")
ENTRIES = [
    LedgerEntry("tenant-001", "agent-000000", 100, node="web-agent-01"),
    LedgerEntry("tenant-001", "agent-000000", 101, node="web-agent-01"),
    LedgerEntry("tenant-002", "agent-000001", 100, node="web-agent-02"),
    LedgerEntry("tenant-003", "agent-000002", 105, node="web-agent-02"),
]
SHARD_1 = [e.key for e in ENTRIES if e.tenant != "tenant-003"]
SHARD_2 = [e.key for e in ENTRIES if e.tenant == "tenant-003"]


def test_all_rows_on_their_shards_is_ok():
    reader = FakeReader({1: SHARD_1, 2: SHARD_2})

    result = verify_ledger(ENTRIES, FLEET, reader)

    assert result["ok"] is True
    assert (result["acknowledged"], result["found"], result["missing"], result["found_on_wrong_shard"]) == (4, 4, 0, 0)
    assert result["per_shard"]["1"] == {"host": "db-01", "schema": "fleet_shard_1", "expected": 3, "found": 3,
                                        "misplaced": 0, "rows_not_in_ledger": 0}
    assert result["per_shard"]["2"]["found"] == 1
    # Every shard is read, each for the ledger's tenants within the ledger's seq range only.
    ranges = {"tenant-001": (100, 101), "tenant-002": (100, 100), "tenant-003": (105, 105)}
    assert reader.asked == [(1, ranges), (2, ranges)]
    assert verify_summary(result).startswith("verify OK: acknowledged 4, found on the right shard 4, missing 0")


def test_a_missing_row_fails():
    reader = FakeReader({1: SHARD_1[1:], 2: SHARD_2})

    result = verify_ledger(ENTRIES, FLEET, reader)

    assert result["ok"] is False
    assert result["missing"] == 1
    assert result["missing_by_node"] == {"web-agent-01": 1}
    example = result["missing_examples"][0]
    assert (example["tenant"], example["agent_id"], example["seq"], example["expected_shard"]) == (
        "tenant-001", "agent-000000", 100, 1)
    assert "missing: tenant-001 agent-000000 seq 100 (acknowledged by web-agent-01, expected on shard 1)" in (
        verify_summary(result))


def test_a_row_on_the_wrong_shard_fails_even_when_also_on_the_right_one():
    moved = verify_ledger(ENTRIES, FLEET, FakeReader({1: SHARD_1 + SHARD_2, 2: []}))
    assert moved["ok"] is False
    assert (moved["missing"], moved["found_on_wrong_shard"]) == (1, 1)
    assert moved["wrong_shard_examples"][0]["found_on_shards"] == [1]
    assert moved["per_shard"]["1"]["misplaced"] == 1

    doubled = verify_ledger(ENTRIES, FLEET, FakeReader({1: SHARD_1 + SHARD_2, 2: SHARD_2}))
    assert doubled["ok"] is False
    assert (doubled["missing"], doubled["found_on_wrong_shard"]) == (0, 1)
    assert "wrong shard: tenant-003 agent-000002 seq 105 on shard(s) [1], expected 2" in verify_summary(doubled)


def test_rows_nobody_was_promised_do_not_fail():
    # Committed after the client gave up: in the table but not in the ledger.
    extra = ("tenant-001", "agent-000009", 100)
    result = verify_ledger(ENTRIES, FLEET, FakeReader({1: [*SHARD_1, extra], 2: SHARD_2}))
    assert result["ok"] is True
    assert result["per_shard"]["1"]["rows_not_in_ledger"] == 1


def test_a_tenant_the_plan_does_not_know_fails():
    stray = LedgerEntry("tenant-999", "agent-000003", 100)
    result = verify_ledger([*ENTRIES, ENTRIES[0], stray], FLEET, FakeReader({1: SHARD_1, 2: SHARD_2}))
    assert result["ok"] is False
    assert result["tenants_not_in_plan"] == ["tenant-999"]
    assert result["ledger_duplicates"] == 1


def test_a_run_verified_against_what_the_service_committed(service: FakeCheckinService, tmp_path: Path):
    counter = iter(range(1_000_000))
    service.behaviour = lambda body: "503" if next(counter) % 4 == 0 else "ok"
    ledger = tmp_path / "ledger.jsonl"
    settings = RunSettings(target=check_target(service.url), tenants={t.name: t.agents for t in FLEET.tenants},
                           rate=60.0, duration=0.4, max_requests=1000, timeout=2.0, max_in_flight=100,
                           connections=10, seq_start=7000, ledger_path=str(ledger))
    asyncio.run(run_load(settings, status_stream=None))
    by_shard: dict[int, list[tuple[str, str, int]]] = {1: [], 2: []}
    for row, shard in service.committed.items():
        by_shard[shard].append(row)

    result = verify_ledger(read_ledger(ledger), FLEET, FakeReader(by_shard))
    assert result["ok"] is True
    assert result["acknowledged"] == len(service.acknowledged) == 18

    by_shard[2].pop()
    assert verify_ledger(read_ledger(ledger), FLEET, FakeReader(by_shard))["missing"] == 1


def test_the_query_reads_only_and_refuses_odd_tenant_names():
    query = checkins_query({"tenant-002": (5, 9), "tenant-001": (1, 3)})
    assert query == (
        "SET SESSION TRANSACTION READ ONLY;\n"
        "SELECT tenant, agent_id, seq FROM checkins WHERE (tenant = 'tenant-001' AND seq BETWEEN 1 AND 3) OR "
        "(tenant = 'tenant-002' AND seq BETWEEN 5 AND 9);\n"
    )
    with pytest.raises(UsageError, match="not a valid tenant name"):
        checkins_query({"x' OR '1'='1": (1, 2)})


class FakeRun:
    def __init__(self, returncode: int = 0, stdout: str = "", stderr: str = "", raises: Exception | None = None):
        self.result = (returncode, stdout, stderr)
        self.raises = raises
        self.calls: list[tuple[list[str], str]] = []

    def __call__(self, command: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
        self.calls.append((command, kwargs["input"]))
        if self.raises is not None:
            raise self.raises
        return subprocess.CompletedProcess(command, *self.result)


def test_docker_exec_reader_runs_mysql_in_the_shard_container():
    run = FakeRun(stdout="tenant-003\tagent-000002\t105\n")
    reader = DockerExecReader(container_for=lambda shard: f"lab-{shard.host}", run=run)

    rows = reader.read(FLEET.shard(2), {"tenant-003": (105, 105)})

    assert rows == [("tenant-003", "agent-000002", 105)]
    command, stdin = run.calls[0]
    assert command == ["docker", "exec", "-i", "lab-db-02", "mysql", "-N", "-B", "fleet_shard_2"]
    assert stdin == checkins_query({"tenant-003": (105, 105)})


@pytest.mark.parametrize(("run", "message"), [
    (FakeRun(1, stderr="Error response from daemon: No such container: db-01"),
     "failed (exit 1): Error response from daemon: No such container: db-01"),
    (FakeRun(raises=FileNotFoundError()), "cannot run 'docker': not found"),
    (FakeRun(raises=subprocess.TimeoutExpired(["docker"], 5)), "no answer within 300 s"),
    (FakeRun(stdout="ERROR 1146: Table 'checkins' doesn't exist\n"), "unexpected output line 1"),
])
def test_an_unreadable_shard_is_reader_unavailable(run: FakeRun, message: str):
    with pytest.raises(ReaderUnavailable, match="shard 1 \\(db-01, schema fleet_shard_1\\)") as error:
        DockerExecReader(run=run).read(FLEET.shard(1), {"tenant-001": (1, 2)})
    assert message in str(error.value)


def test_the_plan_is_read_from_ansible_inventory_output(plan_file: Path, tmp_path: Path):
    plan = load_plan(plan_file)
    assert [t.name for t in plan.tenants] == ["tenant-001", "tenant-002", "tenant-003"]
    assert plan.shard_of("tenant-003").host == "db-02"
    assert plan.rate_per_second == 40.0

    listing = tmp_path / "list.json"
    listing.write_text(json.dumps({"_meta": {"hostvars": {"proxy-01": {"fleet_plan": PLAN}}}}))
    assert load_plan(listing).agents == 12

    broken = tmp_path / "broken.json"
    broken.write_text('{"fleet_plan": {"tenants": [{"name": "t", "agents": 1, "shard": 3}], "shards": []}}')
    with pytest.raises(UsageError, match="tenant 't' is placed on shard 3"):
        load_plan(broken)
