"""Load and validate the scheduler's JSON config (/etc/fleet-scheduler/config.json).

Every problem is a ConfigError whose message names the file, the field (dotted
path) and the offending value, so a bad deployment fails at start, or when the
role validates the file before installing it, with one readable line instead of
a traceback. Passwords are never echoed.

Run `python3 -m fleet_scheduler.config PATH` to check a file.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from typing import Any

DEFAULT_CONFIG_PATH = "/etc/fleet-scheduler/config.json"

# Optional top-level settings: name -> (default, minimum, maximum).
# Timeouts are whole seconds: MySQLdb hands them to the C client as unsigned ints.
_OPTIONAL: dict[str, tuple[Any, int, int]] = {
    "interval": (5, 1, 3600),
    "missed_checkins": (3, 1, 1000),
    "checkin_interval": (60, 1, 86400),
    "retention_hours": (24, 1, 24 * 366),
    # Bounded by systemd's stop timeout: SIGTERM is handled once GET_LOCK returns.
    "lock_timeout": (10, 1, 60),
    "coordination_shard": (1, 1, 1_000_000),
    "batch_size": (5000, 1, 1_000_000),
    "max_batches": (20, 1, 10_000),
    "connect_timeout": (5, 1, 60),
    "read_timeout": (30, 1, 3600),
}
_STRINGS = {
    "node": None,  # required
    "lock_name": "fleet_scheduler",
    "status_path": "/run/fleet-scheduler/status.json",
    "log_level": "INFO",
}
_SHARD_FIELDS = {"shard", "address", "port", "schema", "user", "password", "tenants"}
_SHARD_REQUIRED = ("shard", "address", "schema", "user", "password")
_LOG_LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR"}
# Schema names end up in connection parameters and in logs; the platform's are fleet_shard_<N>.
_SCHEMA_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")


class ConfigError(ValueError):
    """The config file is missing, unreadable or invalid."""


@dataclass(frozen=True)
class ShardConfig:
    """One tenant shard: where its schema lives and how the scheduler logs in."""

    shard: int
    address: str
    port: int
    schema: str
    user: str
    password: str = field(repr=False)
    # Tenants the plan puts on this shard: they get a tenant_stats row even before any agent checked in.
    tenants: tuple[str, ...] = ()


@dataclass(frozen=True)
class Config:
    """The validated scheduler configuration."""

    node: str
    shards: tuple[ShardConfig, ...]
    interval: int = 5
    missed_checkins: int = 3
    checkin_interval: int = 60
    retention_hours: int = 24
    lock_timeout: int = 10
    coordination_shard: int = 1
    batch_size: int = 5000
    max_batches: int = 20
    connect_timeout: int = 5
    read_timeout: int = 30
    lock_name: str = "fleet_scheduler"
    status_path: str = "/run/fleet-scheduler/status.json"
    log_level: str = "INFO"

    @property
    def offline_after_seconds(self) -> int:
        """An agent silent for this long has missed `missed_checkins` check-ins."""
        return self.missed_checkins * self.checkin_interval

    @property
    def coordination(self) -> ShardConfig:
        """The shard whose server holds the scheduler lock and scheduler_state."""
        return next(shard for shard in self.shards if shard.shard == self.coordination_shard)


def load_config(path: str = DEFAULT_CONFIG_PATH) -> Config:
    """Read and validate the config file at `path`."""
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
    # Keys starting with "_" are comments (the role writes "_managed").
    known = set(_OPTIONAL) | set(_STRINGS) | {"shards"}
    unknown = sorted(key for key in data if not key.startswith("_") and key not in known)
    if unknown:
        raise ConfigError(f"{source}: unknown field {unknown[0]!r}")
    for name in ("node", "shards"):
        if name not in data:
            raise ConfigError(f"{source}: missing required field {name!r}")

    options: dict[str, Any] = {}
    for name, (default, minimum, maximum) in _OPTIONAL.items():
        options[name] = _integer(data[name], name, source, minimum, maximum) if name in data else default
    for name, default in _STRINGS.items():
        options[name] = _string(data[name], name, source) if name in data else default

    if options["log_level"].upper() not in _LOG_LEVELS:
        raise ConfigError(
            f"{source}: field 'log_level' must be one of {sorted(_LOG_LEVELS)}, got {options['log_level']!r}"
        )
    options["log_level"] = options["log_level"].upper()
    if not options["status_path"].startswith("/"):
        raise ConfigError(f"{source}: field 'status_path' must be an absolute path, got {options['status_path']!r}")
    if options["read_timeout"] <= options["lock_timeout"]:
        # GET_LOCK blocks for lock_timeout: a shorter read timeout would cut it off.
        raise ConfigError(
            f"{source}: field 'read_timeout' ({options['read_timeout']}) "
            f"must exceed 'lock_timeout' ({options['lock_timeout']})"
        )

    shards = _parse_shards(data["shards"], source)
    if options["coordination_shard"] not in {shard.shard for shard in shards}:
        raise ConfigError(
            f"{source}: field 'coordination_shard' is {options['coordination_shard']}, which is not in 'shards'"
        )
    return Config(shards=shards, **options)


def _parse_shards(value: Any, source: str) -> tuple[ShardConfig, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{source}: field 'shards' must be a non-empty list, got {_kind(value)}")
    shards = []
    seen: set[int] = set()
    for index, entry in enumerate(value):
        where = f"shards[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{source}: field {where!r} must be an object, got {_kind(entry)}")
        for name in _SHARD_REQUIRED:
            if name not in entry:
                raise ConfigError(f"{source}: missing required field '{where}.{name}'")
        unknown = sorted(set(entry) - _SHARD_FIELDS)
        if unknown:
            raise ConfigError(f"{source}: unknown field '{where}.{unknown[0]}'")
        number = _integer(entry["shard"], f"{where}.shard", source, 1, None)
        if number in seen:
            raise ConfigError(f"{source}: field '{where}.shard' repeats shard {number}")
        seen.add(number)
        schema = _string(entry["schema"], f"{where}.schema", source)
        if not _SCHEMA_NAME.match(schema):
            raise ConfigError(f"{source}: field '{where}.schema' must be a plain schema name, got {schema!r}")
        password = entry["password"]
        if not isinstance(password, str) or not password:
            # Never echo what might be a secret, only its type.
            raise ConfigError(f"{source}: field '{where}.password' must be a non-empty string, got {_kind(password)}")
        tenants = entry.get("tenants", [])
        if not isinstance(tenants, list) or not all(isinstance(t, str) and t for t in tenants):
            raise ConfigError(f"{source}: field '{where}.tenants' must be a list of tenant names, got {tenants!r}")
        shards.append(
            ShardConfig(
                shard=number,
                address=_string(entry["address"], f"{where}.address", source),
                port=_integer(entry.get("port", 3306), f"{where}.port", source, 1, 65535),
                schema=schema,
                user=_string(entry["user"], f"{where}.user", source),
                password=password,
                tenants=tuple(tenants),
            )
        )
    return tuple(shards)


def _integer(value: Any, name: str, source: str, minimum: int, maximum: int | None) -> int:
    # bool is an int in Python; `"interval": true` is a mistake, not 1.
    valid = isinstance(value, int) and not isinstance(value, bool)
    if not valid or value < minimum or (maximum is not None and value > maximum):
        bounds = f"{minimum}-{maximum}" if maximum is not None else f">= {minimum}"
        raise ConfigError(f"{source}: field {name!r} must be an integer {bounds}, got {value!r}")
    return value


def _string(value: Any, name: str, source: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{source}: field {name!r} must be a non-empty string, got {value!r}")
    return value


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def main(argv: list[str] | None = None) -> int:
    """Check a config file: exit 0 when valid, 1 with the reason otherwise."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python3 -m fleet_scheduler.config PATH", file=sys.stderr)
        return 2
    try:
        config = load_config(args[0])
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{args[0]}: valid ({len(config.shards)} shard(s), coordination shard {config.coordination_shard})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
