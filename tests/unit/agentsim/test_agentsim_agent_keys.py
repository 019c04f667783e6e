"""--agent-keys: every check-in carries its agent's token, checked by the fake with the service's own module.

The keys file is read once and refused, before anything is sent, when it is not usable; its errors
name the file, the tenant and the field, never a secret.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from agentsim.agentkeys import AgentKeys, load_agent_keys
from agentsim.errors import UsageError
from agentsim.load import RunSettings, run_load
from agentsim.summary import human_summary
from agentsim.target import check_target
from agentsim_fakes import PLAN, FakeCheckinService
from fleet_checkin.config import parse_config
from fleet_checkin.credentials import verify_agent_token

# Test-only secrets. The second key of tenant-001 verifies but does not issue.
KEYS = {
    "tenant-001": [{"id": "k2", "secret": "unit-test-agentsim-key-2-of-tenant-001"},
                   {"id": "k1", "secret": "unit-test-agentsim-key-1-of-tenant-001"}],
    "tenant-002": [{"id": "k1", "secret": "unit-test-agentsim-key-1-of-tenant-002"}],
    "tenant-003": [{"id": "k1", "secret": "unit-test-agentsim-key-1-of-tenant-003"}],
}
TENANTS = {"tenant-001": 2, "tenant-002": 1, "tenant-003": 1}


def settings_for(url: str, **overrides: Any) -> RunSettings:
    base = RunSettings(target=check_target(url), tenants=TENANTS, rate=80.0, duration=0.25, max_requests=1_000_000,
                       timeout=2.0, max_in_flight=1000, connections=20, seq_start=1)
    return replace(base, **overrides)


def keys_file(tmp_path: Path, keys: Any = KEYS, text: str | None = None) -> str:
    path = tmp_path / "agent-keys.json"
    # The service config's field; a test giving something else than a dict writes it as it is.
    document = {"agent_keys": keys} if isinstance(keys, dict) else keys
    path.write_text(json.dumps(document) if text is None else text, encoding="utf-8")
    return str(path)


def agentsim(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agentsim", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=30, check=False)


class CountingKeys:
    """AgentKeys that count the tokens they compute."""

    def __init__(self, keys: AgentKeys):
        self.path, self._keys = keys.path, keys
        self.calls: list[tuple[str, str]] = []

    def token(self, tenant: str, agent_id: str) -> str:
        self.calls.append((tenant, agent_id))
        return self._keys.token(tenant, agent_id)


def test_every_checkin_carries_its_agents_token_computed_once_per_agent(service: FakeCheckinService,
                                                                        tmp_path: Path):
    service.agent_keys = KEYS
    keys = CountingKeys(load_agent_keys(keys_file(tmp_path), TENANTS))

    report = asyncio.run(run_load(settings_for(service.url, agent_keys=keys), status_stream=None))

    assert report["throughput"]["sent"] == 20
    assert report["throughput"]["acknowledged"] == 20, report["errors"]
    assert report["settings"]["agent_keys"] == keys.path
    for request in service.received:
        scheme, token = request.authorization.split(" ")
        assert scheme == "Bearer"
        tenant, agent_id = request.body["tenant"], request.body["agent_id"]
        assert verify_agent_token({k["id"]: k["secret"] for k in KEYS[tenant]}, token, tenant, agent_id)
        # Issued by the tenant's first key, and only valid for this very agent.
        first = KEYS[tenant][0]
        assert token.startswith(f"{first['id']}.")
        assert not verify_agent_token({first["id"]: first["secret"]}, token, tenant, "agent-999999")
    assert len({request.authorization for request in service.received}) == 4
    assert sorted(keys.calls) == sorted({(r.body["tenant"], r.body["agent_id"]) for r in service.received})


def test_without_keys_the_service_answers_401_counted_as_unauthorized(service: FakeCheckinService):
    service.agent_keys = KEYS

    report = asyncio.run(run_load(settings_for(service.url), status_stream=None))

    assert {request.authorization for request in service.received} == {None}
    errors = report["errors"]
    assert errors["by_kind"]["unauthorized"] == errors["total"] == report["throughput"]["sent"] == 20
    assert report["throughput"]["acknowledged"] == 0
    assert report["status_codes"] == {"401": 20}
    assert "HTTP 401" in errors["samples"]["unauthorized"][0]
    text = human_summary(report)
    assert "errors 20, unauthorized 20" in text
    assert "give --agent-keys FILE" in text


def test_another_tenants_key_is_answered_403_counted_as_forbidden(service: FakeCheckinService, tmp_path: Path):
    service.agent_keys = KEYS
    # The file the simulator holds gives tenant-003 the key of tenant-002: tokens the service refuses.
    wrong = KEYS | {"tenant-003": KEYS["tenant-002"]}

    report = asyncio.run(run_load(settings_for(service.url, agent_keys=load_agent_keys(
        keys_file(tmp_path, wrong), TENANTS)), status_stream=None))

    assert report["errors"]["by_kind"]["forbidden"] == report["errors"]["total"] == 5
    assert report["throughput"]["acknowledged"] == 15
    assert "give --agent-keys" not in human_summary(report)


def test_cli_run_sends_tokens(service: FakeCheckinService, plan_file: Path, cli_env, tmp_path: Path):
    service.agent_keys = KEYS

    run = agentsim(["run", "--url", service.url, "--plan", str(plan_file), "--duration", "0.25",
                    "--agent-keys", keys_file(tmp_path), "--fail-on-errors"], cli_env, tmp_path)

    assert run.returncode == 0, run.stderr
    assert "acknowledged 10" in run.stdout
    assert all(request.authorization for request in service.received)


@pytest.mark.parametrize(("keys", "text", "message"), [
    (None, "{not json", "not valid JSON"),
    (["tenant-001"], None, "must be a JSON object with 'agent_keys' and/or 'agent_master_keys', got list"),
    ({"tenant-001": {"id": "k1"}}, None, "tenant 'tenant-001': must be a list of keys, got dict"),
    ({"tenant-001": ["k1"]}, None, "tenant 'tenant-001': key 0: must be an object with 'id' and 'secret', got str"),
    ({"tenant-001": [{"secret": "x" * 40}]}, None, "tenant 'tenant-001': key 0: field 'id' is missing"),
    ({"tenant-001": [{"id": "k1"}]}, None, "tenant 'tenant-001': key 0: field 'secret' is missing"),
    ({"tenant-001": [{"id": "k 1", "secret": "x" * 40}]}, None, "tenant 'tenant-001': key 0: field 'id' must be"),
    ({"tenant-001": [{"id": "k1", "secret": 12345}]}, None, "field 'secret' must be a string of at least 32 "
                                                             "characters, got int"),
    ({"tenant-001": []}, None, "tenant 'tenant-001' of the roster has an empty list of keys"),
    ({"tenant-002": KEYS["tenant-002"]}, None, "tenant 'tenant-001' of the roster has no key in the file"),
    (None, json.dumps({"agent_keys": {}, "tenant-001": []}), "unknown field 'tenant-001'"),
    (None, json.dumps({"agent_master_keys": [{"id": "m1", "secret": "short"}]}),
     "field 'agent_master_keys': key 0 (m1): field 'secret' must be a string of at least 32"),
])
def test_unusable_keys_files_are_refused_naming_file_tenant_and_field(tmp_path: Path, keys, text, message):
    path = keys_file(tmp_path, keys, text)

    with pytest.raises(UsageError) as refused:
        load_agent_keys(path, ["tenant-001"])

    assert str(refused.value).startswith(f"--agent-keys {path}: ")
    assert message in str(refused.value)


def test_master_keys_derive_each_tenants_key_as_the_service_does(tmp_path: Path):
    master = [{"id": "m1", "secret": "unit-test-agentsim-master-key-of-the-fleet"}]
    listed = {"tenant-002": KEYS["tenant-002"]}
    path = keys_file(tmp_path, None, json.dumps({"agent_master_keys": master, "agent_keys": listed}))

    keys = load_agent_keys(path, ["tenant-001", "tenant-002"])

    # The service's config loader derives the keys it verifies with.
    config = parse_config({"node": "n", "version": "1", "drain_file": "/run/d", "api_keys": [],
                           "tenants": {"tenant-001": 1, "tenant-002": 1},
                           "shards": {"1": {"host": "h", "port": 3306, "database": "d", "user": "u", "password": "p"}},
                           "agent_master_keys": master, "agent_keys": listed})
    for tenant in ("tenant-001", "tenant-002"):
        token = keys.token(tenant, "agent-000001")
        assert verify_agent_token(dict(config.agent_keys[tenant]), token, tenant, "agent-000001")
    assert keys.token("tenant-002", "agent-000001").startswith("k1.")
    assert keys.token("tenant-001", "agent-000001").startswith("m1.")




def test_cli_refuses_a_tenant_of_the_plan_without_a_key(service: FakeCheckinService, plan_file: Path, cli_env,
                                                        tmp_path: Path):
    path = keys_file(tmp_path, {name: KEYS[name] for name in ("tenant-001", "tenant-002")})

    run = agentsim(["run", "--url", service.url, "--plan", str(plan_file), "--duration", "0.25",
                    "--agent-keys", path], cli_env, tmp_path)

    assert run.returncode == 2
    assert run.stderr == (f"agentsim: error: --agent-keys {path}: tenant 'tenant-003' of the roster has no key "
                          "in the file (none in 'agent_keys', no 'agent_master_keys'): its agents could not check in\n")
    assert service.received == []


def test_cli_refuses_a_short_secret_without_echoing_it(service: FakeCheckinService, plan_file: Path, cli_env,
                                                       tmp_path: Path):
    short = "short-secret-of-tenant-002"
    path = keys_file(tmp_path, KEYS | {"tenant-002": [{"id": "k1", "secret": short}]})

    probe = ["probe", "--start-rate", "20", "--max-rate", "50", "--step-seconds", "0.2"]
    for command in (["run", "--duration", "0.25"], probe):
        run = agentsim([*command, "--url", service.url, "--plan", str(plan_file), "--agent-keys", path],
                       cli_env, tmp_path)

        assert run.returncode == 2
        assert f"--agent-keys {path}: tenant 'tenant-002': key 0 (k1): field 'secret' must be a string of at " \
               f"least 32 characters, got {len(short)} characters" in run.stderr
        assert short not in run.stderr + run.stdout
        assert "short-secret" not in run.stderr + run.stdout
    assert service.received == []


def test_only_tenants_that_send_need_a_key(service: FakeCheckinService, plan_file: Path, cli_env, tmp_path: Path):
    service.agent_keys = KEYS
    # 2 agents over the plan's 6/3/3: tenant-003 gets none, so it needs no key.
    path = keys_file(tmp_path, {name: KEYS[name] for name in ("tenant-001", "tenant-002")})

    run = agentsim(["run", "--url", service.url, "--plan", str(plan_file), "--agents", "2", "--duration", "0.25",
                    "--agent-keys", path, "--fail-on-errors"], cli_env, tmp_path)

    assert run.returncode == 0, run.stderr
    assert {request.body["tenant"] for request in service.received} == {"tenant-001", "tenant-002"}
    assert PLAN["tenants"][2]["name"] == "tenant-003"


def test_the_secrets_stay_out_of_repr(tmp_path: Path):
    keys = load_agent_keys(keys_file(tmp_path), TENANTS)

    assert keys.issuing["tenant-001"] == ("k2", KEYS["tenant-001"][0]["secret"])
    assert "unit-test" not in repr(keys)
