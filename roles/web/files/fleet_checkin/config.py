"""Load and validate the check-in service's JSON config.

Every problem is reported as a ConfigError whose message names the file, the
field (dotted path) and the offending value, so that a bad deployment fails at
start (or at `ansible.builtin.template` validation) with one readable line
instead of a traceback from the first request. Passwords are never echoed.

Run `python3 -m fleet_checkin.config PATH` to check a file.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .credentials import KEY_ID, KEY_ID_RULE, MIN_SECRET_CHARS, ApiKey, check_sha256, tenant_keys

CONFIG_ENV = "FLEET_CHECKIN_CONFIG"
DEFAULT_CONFIG_PATH = "/etc/fleet-checkin/config.json"

# Optional top-level settings: name -> (default, minimum, maximum, kind).
# Timeouts are whole seconds because MySQLdb hands them to the C client as
# unsigned ints.
_OPTIONAL = {
    "startup_delay_seconds": (0.0, 0.0, 3600.0, float),
    "max_body_bytes": (16384, 64, 1048576, int),
    "page_limit_default": (100, 1, 100000, int),
    "page_limit_max": (500, 1, 100000, int),
    "db_connect_timeout": (2, 1, 60, int),
    "db_read_timeout": (5, 1, 300, int),
    "db_write_timeout": (5, 1, 300, int),
    "db_retry_after_seconds": (1.0, 0.0, 60.0, float),
    "db_switch_wait_seconds": (5.0, 0.0, 60.0, float),
}
_REQUIRED = ("node", "version", "drain_file", "tenants", "shards", "api_keys")
# Agent keys: listed per tenant, or derived from the master keys (at least one of the two per tenant).
_AGENT_KEY_FIELDS = ("agent_keys", "agent_master_keys")
_SHARD_FIELDS = ("host", "port", "database", "user", "password")


class ConfigError(ValueError):
    """The config file is missing, unreadable or invalid."""


@dataclass(frozen=True)
class ShardConfig:
    """Where one tenant shard lives and how this service logs in to it."""

    shard_id: int
    host: str
    port: int
    database: str
    user: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class Config:
    """The validated service configuration."""

    node: str
    version: str
    drain_file: str
    tenants: Mapping[str, int]
    shards: Mapping[int, ShardConfig]
    startup_delay_seconds: float = 0.0
    max_body_bytes: int = 16384
    page_limit_default: int = 100
    page_limit_max: int = 500
    db_connect_timeout: int = 2
    db_read_timeout: int = 5
    db_write_timeout: int = 5
    db_retry_after_seconds: float = 1.0
    db_switch_wait_seconds: float = 5.0
    # tenant -> ((key id, secret), ...): the first key issues agent tokens, every one verifies.
    agent_keys: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=dict, repr=False)
    # key id -> user API key (digest and scope).
    api_keys: Mapping[str, ApiKey] = field(default_factory=dict)

    def shard_for(self, tenant: str) -> int | None:
        """The shard holding `tenant`, or None when this service does not route it."""
        return self.tenants.get(tenant)

    @property
    def routed_shards(self) -> list[int]:
        """Shards at least one tenant routes to: the ones readiness depends on."""
        return sorted(set(self.tenants.values()))


def config_path_from_env(environ: Mapping[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    return environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH


def load_config(path: str | None = None) -> Config:
    """Read and validate the config at `path` (default: from the environment)."""
    path = path or config_path_from_env()
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from None
    return parse_config(data, source=path)


def parse_config(data: Any, source: str = "config") -> Config:
    """Validate an already decoded config document."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the config must be a JSON object, got {_kind(data)}")
    # Keys starting with "_" are comments (the role writes "_comment").
    known = (*_REQUIRED, *_AGENT_KEY_FIELDS, *_OPTIONAL)
    unknown = sorted(k for k in data if not k.startswith("_") and k not in known)
    if unknown:
        raise ConfigError(f"{source}: unknown field {unknown[0]!r}")
    for name in _REQUIRED:
        if name not in data:
            raise ConfigError(f"{source}: missing required field {name!r}")

    shards = _parse_shards(data["shards"], source)
    tenants = _parse_tenants(data["tenants"], shards, source)
    drain_file = _string(data["drain_file"], "drain_file", source)
    if not drain_file.startswith("/"):
        raise ConfigError(f"{source}: field 'drain_file' must be an absolute path, got {drain_file!r}")

    agent_keys = _parse_agent_keys(data.get("agent_keys", {}), data.get("agent_master_keys", []), tenants, source)
    api_keys = _parse_api_keys(data["api_keys"], source)
    options = {name: _option(data, name, source) for name in _OPTIONAL}
    if options["page_limit_default"] > options["page_limit_max"]:
        raise ConfigError(
            f"{source}: field 'page_limit_default' ({options['page_limit_default']}) "
            f"must not exceed 'page_limit_max' ({options['page_limit_max']})"
        )
    return Config(
        node=_string(data["node"], "node", source),
        version=_string(data["version"], "version", source),
        drain_file=drain_file,
        tenants=tenants,
        shards=shards,
        agent_keys=agent_keys,
        api_keys=api_keys,
        **options,
    )


def _parse_shards(value: Any, source: str) -> dict[int, ShardConfig]:
    if not isinstance(value, dict) or not value:
        raise ConfigError(f"{source}: field 'shards' must be a non-empty object, got {_kind(value)}")
    shards = {}
    for key, entry in value.items():
        where = f"shards.{key}"
        if not (isinstance(key, str) and key.isdigit() and int(key) >= 1):
            raise ConfigError(f"{source}: shard key {key!r} must be a shard number >= 1")
        if not isinstance(entry, dict):
            raise ConfigError(f"{source}: field {where!r} must be an object, got {_kind(entry)}")
        for name in _SHARD_FIELDS:
            if name not in entry:
                raise ConfigError(f"{source}: missing required field '{where}.{name}'")
        unknown = sorted(set(entry) - set(_SHARD_FIELDS))
        if unknown:
            raise ConfigError(f"{source}: unknown field '{where}.{unknown[0]}'")
        password = entry["password"]
        if not isinstance(password, str):
            # Never echo what might be a secret, only its type.
            raise ConfigError(f"{source}: field '{where}.password' must be a string, got {_kind(password)}")
        shards[int(key)] = ShardConfig(
            shard_id=int(key),
            host=_string(entry["host"], f"{where}.host", source),
            port=_integer(entry["port"], f"{where}.port", source, 1, 65535),
            database=_string(entry["database"], f"{where}.database", source),
            user=_string(entry["user"], f"{where}.user", source),
            password=password,
        )
    return shards


def _parse_tenants(value: Any, shards: Mapping[int, ShardConfig], source: str) -> dict[str, int]:
    if not isinstance(value, dict) or not value:
        raise ConfigError(f"{source}: field 'tenants' must be a non-empty object, got {_kind(value)}")
    tenants = {}
    for tenant, routed_to in value.items():
        if not tenant:
            raise ConfigError(f"{source}: field 'tenants' has an empty tenant name")
        where = f"tenants.{tenant}"
        shard = _integer(routed_to, where, source, 1, None)
        if shard not in shards:
            raise ConfigError(f"{source}: field {where!r} routes to shard {shard}, which is not in 'shards'")
        tenants[tenant] = shard
    return tenants


def _parse_agent_keys(
    listed: Any, master: Any, tenants: Mapping[str, int], source: str,
) -> dict[str, tuple[tuple[str, str], ...]]:
    """Every routed tenant needs at least one key, or none of its agents could check in."""
    if not isinstance(listed, dict):
        raise ConfigError(f"{source}: field 'agent_keys' must be an object of tenant -> keys, got {_kind(listed)}")
    unknown = sorted(set(listed) - set(tenants))
    if unknown:
        raise ConfigError(f"{source}: field 'agent_keys' names tenant {unknown[0]!r}, which is not in 'tenants'")
    master_pairs = _key_list(master, "agent_master_keys", source, allow_empty=True)
    keys = {}
    for tenant in tenants:
        pairs = _key_list(listed[tenant], f"agent_keys.{tenant}", source, masters=dict(master_pairs)) \
            if tenant in listed else ()
        keys[tenant] = tenant_keys(tenant, pairs, master_pairs)
        if not keys[tenant]:
            raise ConfigError(
                f"{source}: tenant {tenant!r} has no agent key: list its keys in 'agent_keys' or give "
                "'agent_master_keys'")
    return keys


def _key_list(
    value: Any, where: str, source: str, allow_empty: bool = False, masters: Mapping[str, str] | None = None,
) -> tuple[tuple[str, str | None], ...]:
    """A list of {"id", "secret"}: the first issues tokens, all verify.

    With `masters` (a tenant's list), {"id": <master key id>, "derived": true} stands for the tenant's
    key derived from that master key (secret None).
    """
    if not isinstance(value, list) or not (value or allow_empty):
        raise ConfigError(f"{source}: field {where!r} must be a non-empty list of keys, got {_kind(value)}")
    pairs: list[tuple[str, str | None]] = []
    for index, entry in enumerate(value):
        here = f"{where}[{index}]"
        if masters is not None and isinstance(entry, dict) and set(entry) == {"id", "derived"}:
            if entry["derived"] is not True or entry["id"] not in masters:
                raise ConfigError(
                    f"{source}: field {here!r} stands for a derived key: 'derived' must be true and 'id' the id of "
                    f"one of 'agent_master_keys' ({sorted(masters)}), got {entry['id']!r:.60}")
            pairs.append((entry["id"], None))
            continue
        if not isinstance(entry, dict) or set(entry) != {"id", "secret"}:
            fields = sorted(entry) if isinstance(entry, dict) else _kind(entry)
            raise ConfigError(
                f"{source}: field {here!r} must be an object with exactly 'id' and 'secret', got {fields}")
        key_id, secret = entry["id"], entry["secret"]
        if not isinstance(key_id, str) or not KEY_ID.fullmatch(key_id):
            raise ConfigError(f"{source}: field '{here}.id' must be {KEY_ID_RULE}, got {key_id!r:.60}")
        if not isinstance(secret, str) or len(secret) < MIN_SECRET_CHARS:
            # Never echo what might be a secret, only what is wrong with it.
            got = f"{len(secret)} characters" if isinstance(secret, str) else _kind(secret)
            raise ConfigError(
                f"{source}: field '{here}.secret' must be a string of at least {MIN_SECRET_CHARS} characters "
                f"(got {got})")
        if key_id in dict(pairs):
            raise ConfigError(f"{source}: field '{here}.id' repeats key id {key_id!r}")
        pairs.append((key_id, secret))
    return tuple(pairs)


def _parse_api_keys(value: Any, source: str) -> dict[str, ApiKey]:
    if not isinstance(value, list):
        raise ConfigError(f"{source}: field 'api_keys' must be a list, got {_kind(value)}")
    keys: dict[str, ApiKey] = {}
    for index, entry in enumerate(value):
        where = f"api_keys[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{source}: field {where!r} must be an object, got {_kind(entry)}")
        unknown = sorted(set(entry) - {"id", "sha256", "tenants", "admin"})
        if unknown:
            raise ConfigError(f"{source}: unknown field '{where}.{unknown[0]}'")
        key_id = entry.get("id")
        if not isinstance(key_id, str) or not KEY_ID.fullmatch(key_id):
            raise ConfigError(f"{source}: field '{where}.id' must be {KEY_ID_RULE}, got {key_id!r:.60}")
        if key_id in keys:
            raise ConfigError(f"{source}: field '{where}.id' repeats key id {key_id!r}")
        if not check_sha256(entry.get("sha256")):
            raise ConfigError(
                f"{source}: field '{where}.sha256' must be 64 lowercase hex digits (the secret's SHA-256)")
        tenants = entry.get("tenants", [])
        if not isinstance(tenants, list) or not all(isinstance(t, str) and t for t in tenants):
            raise ConfigError(f"{source}: field '{where}.tenants' must be a list of tenant names, got {tenants!r:.80}")
        admin = entry.get("admin", False)
        if not isinstance(admin, bool):
            raise ConfigError(f"{source}: field '{where}.admin' must be true or false, got {admin!r:.40}")
        if not tenants and not admin:
            raise ConfigError(f"{source}: field {where!r} (key {key_id!r}) grants nothing: give it tenants or admin")
        keys[key_id] = ApiKey(key_id=key_id, sha256=entry["sha256"], tenants=frozenset(tenants), admin=admin)
    return keys


def _option(data: Mapping[str, Any], name: str, source: str) -> int | float:
    default, minimum, maximum, kind = _OPTIONAL[name]
    if name not in data:
        return default
    if kind is int:
        return _integer(data[name], name, source, minimum, maximum)
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not minimum <= value <= maximum:
        raise ConfigError(f"{source}: field {name!r} must be a number {minimum}-{maximum}, got {value!r}")
    return float(value)


def _string(value: Any, name: str, source: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{source}: field {name!r} must be a non-empty string, got {value!r}")
    return value


def _integer(value: Any, name: str, source: str, minimum: int, maximum: int | None) -> int:
    # bool is an int subclass in Python; `true` is never a valid port or shard.
    valid = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
    if valid and maximum is not None:
        valid = value <= maximum
    if not valid:
        bounds = f"{minimum}-{maximum}" if maximum is not None else f">= {minimum}"
        raise ConfigError(f"{source}: field {name!r} must be an integer {bounds}, got {value!r}")
    return value


def _kind(value: Any) -> str:
    if isinstance(value, dict) and not value:
        return "an empty object"
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def main(argv: list[str] | None = None) -> int:
    """Check a config file: exit 0 and print a summary, or exit 1 with the error."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python3 -m fleet_checkin.config CONFIG.json", file=sys.stderr)
        return 2
    try:
        config = load_config(argv[0])
    except ConfigError as exc:
        print(f"invalid: {exc}", file=sys.stderr)
        return 1
    print(f"ok: node {config.node}, {len(config.tenants)} tenants on shards {config.routed_shards}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
