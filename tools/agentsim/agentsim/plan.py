"""Reading the fleet plan (fleet_plan of the fleetscale.split.fleet inventory plugin) from a JSON file.

Accepted shapes, so that a playbook can hand over whatever it has at hand:
  * the output of `ansible-inventory --host <any host>` (an object with a `fleet_plan` key),
  * the output of `ansible-inventory --list` (fleet_plan under all.vars or in _meta.hostvars),
  * the fleet_plan object itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentsim.errors import UsageError


@dataclass(frozen=True)
class TenantPlan:
    name: str
    agents: int
    shard: int


@dataclass(frozen=True)
class ShardPlan:
    shard: int
    host: str
    schema: str
    address: str | None
    tenants: tuple[str, ...]


@dataclass(frozen=True)
class FleetPlan:
    tenants: tuple[TenantPlan, ...]
    shards: tuple[ShardPlan, ...]
    agents: int | None
    rate_per_second: float | None

    def shard_of(self, tenant: str) -> ShardPlan | None:
        for entry in self.tenants:
            if entry.name == tenant:
                return self.shard(entry.shard)
        return None

    def shard(self, number: int) -> ShardPlan | None:
        return next((s for s in self.shards if s.shard == number), None)


def load_plan(path: str | Path) -> FleetPlan:
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"--plan {path}: cannot read the file: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UsageError(f"--plan {path}: not valid JSON: {exc}") from None
    return parse_plan(find_fleet_plan(document, str(path)), str(path))


def find_fleet_plan(document: Any, source: str) -> dict[str, Any]:
    if isinstance(document, dict):
        if isinstance(document.get("fleet_plan"), dict):
            return document["fleet_plan"]
        all_vars = document.get("all", {}).get("vars", {}) if isinstance(document.get("all"), dict) else {}
        if isinstance(all_vars, dict) and isinstance(all_vars.get("fleet_plan"), dict):
            return all_vars["fleet_plan"]
        hostvars = document.get("_meta", {}).get("hostvars", {}) if isinstance(document.get("_meta"), dict) else {}
        for host_vars in hostvars.values() if isinstance(hostvars, dict) else ():
            if isinstance(host_vars, dict) and isinstance(host_vars.get("fleet_plan"), dict):
                return host_vars["fleet_plan"]
        if "tenants" in document and "shards" in document:
            return document
    raise UsageError(
        f"--plan {source}: no fleet plan found; expected the JSON of `ansible-inventory --host <host>` "
        "(with a fleet_plan key), of `ansible-inventory --list`, or the fleet_plan object itself"
    )


def parse_plan(plan: dict[str, Any], source: str) -> FleetPlan:
    tenants = tuple(_tenant(entry, i, source) for i, entry in enumerate(_list(plan, "tenants", source)))
    shards = tuple(_shard(entry, i, source) for i, entry in enumerate(_list(plan, "shards", source)))
    if not tenants:
        raise UsageError(f"--plan {source}: fleet_plan.tenants is empty")
    numbers = {s.shard for s in shards}
    for tenant in tenants:
        if tenant.shard not in numbers:
            raise UsageError(
                f"--plan {source}: tenant {tenant.name!r} is placed on shard {tenant.shard}, "
                f"which fleet_plan.shards does not list (shards: {sorted(numbers)})"
            )
    names = [t.name for t in tenants]
    if len(set(names)) != len(names):
        raise UsageError(f"--plan {source}: fleet_plan.tenants lists a tenant name twice")
    rate = plan.get("rate", {})
    per_second = rate.get("per_second") if isinstance(rate, dict) else None
    agents = plan.get("agents")
    return FleetPlan(
        tenants=tenants,
        shards=shards,
        agents=agents if isinstance(agents, int) and not isinstance(agents, bool) else None,
        rate_per_second=float(per_second) if _is_number(per_second) else None,
    )


def _list(plan: dict[str, Any], key: str, source: str) -> list[Any]:
    value = plan.get(key)
    if not isinstance(value, list):
        raise UsageError(f"--plan {source}: fleet_plan.{key} must be a list, got {type(value).__name__}")
    return value


def _tenant(entry: Any, index: int, source: str) -> TenantPlan:
    where = f"--plan {source}: fleet_plan.tenants[{index}]"
    if not isinstance(entry, dict):
        raise UsageError(f"{where} must be an object, got {entry!r}")
    return TenantPlan(
        name=_string(entry, "name", where),
        agents=_count(entry, "agents", where, minimum=0),
        shard=_count(entry, "shard", where, minimum=1),
    )


def _shard(entry: Any, index: int, source: str) -> ShardPlan:
    where = f"--plan {source}: fleet_plan.shards[{index}]"
    if not isinstance(entry, dict):
        raise UsageError(f"{where} must be an object, got {entry!r}")
    tenants = entry.get("tenants", [])
    if not isinstance(tenants, list) or not all(isinstance(t, str) for t in tenants):
        raise UsageError(f"{where}.tenants must be a list of tenant names, got {tenants!r}")
    address = entry.get("address")
    return ShardPlan(
        shard=_count(entry, "shard", where, minimum=1),
        host=_string(entry, "host", where),
        schema=_string(entry, "schema", where),
        address=address if isinstance(address, str) else None,
        tenants=tuple(tenants),
    )


def _string(entry: dict[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value:
        raise UsageError(f"{where}.{key} must be a non-empty string, got {value!r}")
    return value


def _count(entry: dict[str, Any], key: str, where: str, minimum: int) -> int:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UsageError(f"{where}.{key} must be an integer >= {minimum}, got {value!r}")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0
