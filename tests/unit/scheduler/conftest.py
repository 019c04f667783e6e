"""Fixtures for the scheduler unit tests: configs, a clock and fake MariaDBs behind fake DB-API drivers."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pytest

# The service ships as role files, not as an installed distribution. Bytecode is
# not written so no __pycache__ lands next to the role's files (the role copies them).
sys.dont_write_bytecode = True
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2] / "roles" / "app" / "files"))
sys.path.insert(0, str(HERE))

from fleet_scheduler.config import parse_config
from scheduler_fakes import FakeDriver, FakeServer
from sequencer_fakes import FakeLedgerDriver, FakeLedgerServer

BASE_CONFIG: dict[str, Any] = {
    "_managed": "unit test config",
    "node": "app-01",
    "interval": 5,
    "missed_checkins": 3,
    "checkin_interval": 60,
    "retention_hours": 24,
    "lock_timeout": 10,
    "batch_size": 100,
    "max_batches": 3,
    "status_path": "/run/fleet-scheduler/status.json",
    "shards": [
        {
            "shard": 1,
            "address": "172.28.5.10",
            "port": 3306,
            "schema": "fleet_shard_1",
            "user": "fleet_app",
            "password": "s3cret-one",
            "tenants": ["tenant-001", "tenant-002"],
        },
        {
            "shard": 2,
            "address": "172.28.5.11",
            "port": 3306,
            "schema": "fleet_shard_2",
            "user": "fleet_app",
            "password": "s3cret-two",
            "tenants": ["tenant-003"],
        },
    ],
}


@pytest.fixture
def config_data() -> dict[str, Any]:
    """A fresh, valid config document each test may modify."""
    return copy.deepcopy(BASE_CONFIG)


@pytest.fixture
def make_config(config_data):
    """Build a validated Config; keyword overrides go into the document."""

    def build(**overrides: Any):
        return parse_config({**config_data, **overrides})

    return build


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def driver(server) -> FakeDriver:
    return FakeDriver(server)


@pytest.fixture
def status_files() -> dict[str, list[dict[str, Any]]]:
    """Status documents written, per node (a stand-in for /run/fleet-scheduler/status.json)."""
    return {}


DATABASE: dict[str, Any] = {
    "address": "172.28.5.10",
    "port": 3306,
    "schema": "fleet_shard_1",
    "user": "fleet_app",
    "password": "s3cret-one",
}


@pytest.fixture
def singleton_data() -> dict[str, Any]:
    return {
        "_managed": "unit test config",
        "name": "probe",
        "node": "app-01",
        "command": "sleep infinity",
        "lock_timeout": 10,
        "keepalive": 2,
        "stop_timeout": 3,
        "status_path": "/run/probe/status.json",
        "database": copy.deepcopy(DATABASE),
    }


@pytest.fixture
def sequencer_data() -> dict[str, Any]:
    return {
        "_managed": "unit test config",
        "node": "app-01",
        "poll": 0.5,
        "lease": 10,
        "keepalive": 2,
        "stop_timeout": 3,
        "node_max_parallel": 4,
        "claim_delay": 1.0,
        "database": copy.deepcopy(DATABASE),
        "jobs": [{"name": "tick", "command": "true", "schedule": "*:*:*"}],
    }


@pytest.fixture
def ledger_server() -> FakeLedgerServer:
    return FakeLedgerServer()


@pytest.fixture
def ledger_driver(ledger_server) -> FakeLedgerDriver:
    return FakeLedgerDriver(ledger_server)
