"""Fixtures for the check-in service unit tests: config, in-memory store, clients."""

from __future__ import annotations

import copy
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

# The service ships as role files, not as an installed distribution.
# Bytecode is not written so no __pycache__ lands next to the role's files.
sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "roles" / "web" / "files"))

# falcon 3.1 imports the cgi module, deprecated since Python 3.11; not ours to fix.
warnings.filterwarnings("ignore", message="'cgi' is deprecated", category=DeprecationWarning)

from falcon import testing
from fleet_checkin.app import create_app
from fleet_checkin.config import parse_config
from fleet_checkin.credentials import agent_token, api_key_digest
from fleet_checkin.store import CheckinResult, StoreUnavailable

# Test-only secrets: the keys of the config below and what their holders present.
AGENT_KEY_SECRET = "unit-test-agent-key-of-tenant-0001"
ADMIN_API_KEY = "ops-admin.unit-test-admin-secret"
TENANT1_API_KEY = "acme-ops.unit-test-tenant-001-secret"


def agent_authorization(tenant: str, agent_id: str, key_id: str = "k1", secret: str = AGENT_KEY_SECRET) -> str:
    return "Bearer " + agent_token(key_id, secret + tenant[-1], tenant, agent_id)


BASE_CONFIG: dict[str, Any] = {
    "_comment": "unit test config",
    "node": "web-agent-01",
    "version": "1.2.3",
    "drain_file": "/run/fleet-checkin/drain",
    "tenants": {"tenant-001": 1, "tenant-002": 1, "tenant-003": 2},
    "shards": {
        "1": {
            "host": "172.28.5.10",
            "port": 3306,
            "database": "fleet_shard_1",
            "user": "fleet_web",
            "password": "s3cret-one",
        },
        "2": {
            "host": "172.28.5.11",
            "port": 3306,
            "database": "fleet_shard_2",
            "user": "fleet_web",
            "password": "s3cret-two",
        },
    },
    "agent_keys": {
        tenant: [{"id": "k1", "secret": AGENT_KEY_SECRET + tenant[-1]}]
        for tenant in ("tenant-001", "tenant-002", "tenant-003")
    },
    "api_keys": [
        {"id": "ops-admin", "sha256": api_key_digest(ADMIN_API_KEY.split(".", 1)[1]), "admin": True},
        {"id": "acme-ops", "sha256": api_key_digest(TENANT1_API_KEY.split(".", 1)[1]), "tenants": ["tenant-001"]},
    ],
}


class FakeStore:
    """In-memory stand-in for ShardStore with the same observable behaviour."""

    def __init__(self) -> None:
        self.down: set[int] = set()
        self.agents: dict[tuple[int, str, str], dict[str, Any]] = {}
        self.checkins: dict[tuple[int, str, str, int], dict[str, Any]] = {}
        self.commands: list[dict[str, Any]] = []
        self.calls: list[tuple[str, int]] = []

    def _check(self, name: str, shard_id: int) -> None:
        self.calls.append((name, shard_id))
        if shard_id in self.down:
            raise StoreUnavailable(shard_id, "cannot connect to 172.28.5.10:3306: (2003) Can't connect")

    def checkin(self, shard_id, request, served_by):
        self._check("checkin", shard_id)
        key = (shard_id, request.tenant, request.agent_id)
        if (*key, request.seq) in self.checkins:
            delivered = [c for c in self.commands if c["key"] == key and c["delivered_seq"] == request.seq]
            return CheckinResult(duplicate=True, commands=[{"id": c["id"], "command": c["command"]} for c in delivered])
        self.checkins[(*key, request.seq)] = {"status": request.status, "served_by": served_by}
        agent = self.agents.setdefault(key, {"agent_id": request.agent_id, "last_seq": -1})
        if request.seq >= agent["last_seq"]:
            agent.update(last_seq=request.seq, status=request.status)
        agent["online"] = True
        pending = [c for c in self.commands if c["key"] == key and c["delivered_seq"] is None]
        for command in pending:
            command["delivered_seq"] = request.seq
        return CheckinResult(duplicate=False, commands=[{"id": c["id"], "command": c["command"]} for c in pending])

    def list_agents(self, shard_id, tenant, query):
        self._check("list_agents", shard_id)
        rows = sorted(
            (agent for (shard, t, _), agent in self.agents.items() if shard == shard_id and t == tenant),
            key=lambda agent: agent["agent_id"],
        )
        if query.state is not None:
            rows = [a for a in rows if a["online"] == (query.state == "online")]
        if query.after is not None:
            rows = [a for a in rows if a["agent_id"] > query.after]
        page = [dict(a) for a in rows[: query.limit]]
        return page, (page[-1]["agent_id"] if len(rows) > query.limit else None)

    def add_command(self, shard_id, tenant, agent_id, command):
        self._check("add_command", shard_id)
        key = (shard_id, tenant, agent_id)
        if key not in self.agents:
            return None
        entry = {"id": len(self.commands) + 1, "key": key, "command": command, "delivered_seq": None}
        self.commands.append(entry)
        return {"id": entry["id"], "tenant": tenant, "agent_id": agent_id, "command": command}

    def shard_stats(self, shard_id):
        self._check("shard_stats", shard_id)
        agents = [a for (shard, _, _), a in self.agents.items() if shard == shard_id]
        pending = [c for c in self.commands if c["key"][0] == shard_id and c["delivered_seq"] is None]
        return {
            "agents_total": len(agents),
            "agents_online": sum(1 for a in agents if a["online"]),
            "commands_pending": len(pending),
        }

    def ping(self, shard_id):
        self._check("ping", shard_id)


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def config_data() -> dict[str, Any]:
    """A fresh, valid config document each test may modify."""
    return copy.deepcopy(BASE_CONFIG)


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def drained_paths() -> set[str]:
    """Paths the fake file system says exist: add the drain file to drain."""
    return set()


class CredentialedClient(testing.TestClient):
    """A well-behaved caller: check-ins carry their agent's token, /api/ calls the admin key.

    A test that gives its own Authorization header (or None to send none) overrides it.
    """

    def simulate_request(self, method="GET", path="/", *args, headers=None, **kwargs):
        headers = dict(headers or {})
        if "Authorization" not in headers:
            if path == "/agent/checkin":
                tenant, agent_id = _claimed_identity(kwargs)
                headers["Authorization"] = agent_authorization(tenant, agent_id)
            elif path.startswith("/api/") or path == "/readyz":
                headers["Authorization"] = "Bearer " + ADMIN_API_KEY
        headers = {name: value for name, value in headers.items() if value is not None}
        return super().simulate_request(method, path, *args, headers=headers, **kwargs)


def _claimed_identity(kwargs: dict[str, Any]) -> tuple[str, str]:
    """The tenant and agent a check-in body names (the default test agent when it names none)."""
    body = kwargs.get("json")
    if body is None and isinstance(kwargs.get("body"), (str, bytes)):
        try:
            body = json.loads(kwargs["body"])
        except ValueError:
            body = None
    body = body if isinstance(body, dict) else {}
    tenant, agent_id = body.get("tenant"), body.get("agent_id")
    if not (isinstance(tenant, str) and tenant and isinstance(agent_id, str)):
        return "tenant-001", "agent-0001"
    return tenant, agent_id


@pytest.fixture
def make_client(config_data, store, clock, drained_paths):
    """Build a credentialed falcon test client; keyword overrides go into the config document."""

    def build(**overrides: Any) -> testing.TestClient:
        config = parse_config({**config_data, **overrides})
        app = create_app(config, store, clock=clock, path_exists=drained_paths.__contains__)
        return CredentialedClient(app)

    return build


@pytest.fixture
def client(make_client) -> testing.TestClient:
    return make_client()
