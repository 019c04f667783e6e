"""Fixtures for the agent simulator's tests: the tool on sys.path, a fake check-in service on 127.0.0.1."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
TOOL = HERE.parents[2] / "tools" / "agentsim"
# The fake service checks tokens with the service's own credentials module.
SERVICE_FILES = HERE.parents[2] / "roles" / "web" / "files"
sys.path.insert(0, str(TOOL))
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(SERVICE_FILES))

# No __pycache__ next to the role's files.
_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True
from agentsim_fakes import PLAN, FakeCheckinService

sys.dont_write_bytecode = _bytecode


@pytest.fixture
def service() -> Iterator[FakeCheckinService]:
    fake = FakeCheckinService(shards={t["name"]: t["shard"] for t in PLAN["tenants"]})
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def plan_file(tmp_path: Path) -> Path:
    path = tmp_path / "plan.json"
    # The shape of `ansible-inventory --host proxy-01`: fleet_plan among the other host vars.
    path.write_text(json.dumps({"fleet_address": "172.28.1.10", "fleet_plan": PLAN}), encoding="utf-8")
    return path


@pytest.fixture
def cli_env() -> dict[str, str]:
    """Environment of a `python -m agentsim` subprocess: the tool importable, no proxy settings."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["PYTHONPATH"] = str(TOOL)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env
