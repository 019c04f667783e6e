"""Configs of the singleton supervisors and of the sequencer (JSON, written by the role).

/etc/fleet-scheduler/singletons/<name>.json, one per singleton service:

    {"name", "node", "command" | "unit", "user", "lock", "lock_timeout", "keepalive", "acquire_wait",
     "stop_timeout", "restart_delay", "status_path", "log_level", "connect_timeout",
     "database": {"address", "port", "schema", "user", "password"}}

/etc/fleet-scheduler/sequencer.json, the scheduled jobs of the tier:

    {"node", "poll", "lease", "keepalive", "stop_timeout", "node_max_parallel",
     "claim_delay", "catchup", "output_bytes", "history_days", "status_path",
     "log_level", "connect_timeout", "database": {...},
     "jobs": [{"name", "command", "schedule", "timeout", "max_retries", "backoff",
               "max_parallel", "node_max_parallel", "user"}]}

Errors are ConfigError lines naming the file and the field, as in config.py.
Run `python3 -m fleet_scheduler.tierconfig singleton|sequencer PATH` to check
a file; for the sequencer this also checks every schedule against
`systemd-analyze calendar` when it is installed (`--no-systemd` skips it).
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from typing import Any

from . import oncalendar
from .config import ConfigError, ShardConfig, _integer, _kind, _string

# Singleton and job names end up in unit names, lock names and file names.
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,47}$")
_LOG_LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR"}
_DATABASE_FIELDS = {"address", "port", "schema", "user", "password"}
# Seconds the supervisor keeps between the child's stop and the earliest moment the
# server can hand the lock to another node (see supervisor.py).
FENCE_MARGIN = 1.0


@dataclass(frozen=True)
class SingletonConfig:
    """One singleton service: what runs, and how its lock is kept."""

    name: str
    node: str
    database: ShardConfig
    command: str | None = None
    unit: str | None = None
    # Account the command runs as (the supervisor runs as root); None: the supervisor's own.
    user: str | None = None
    # The MariaDB named lock; default fleet-singleton:NAME.
    lock: str | None = None
    # The lock session's wait_timeout: a holder silent this long (dead, cut off)
    # loses the lock; it bounds the failover time with keepalive.
    lock_timeout: int = 10
    keepalive: int = 2
    # Seconds a standby waits in GET_LOCK per attempt (then it publishes its status again).
    acquire_wait: int = 2
    # Seconds between SIGTERM and SIGKILL when the child must stop.
    stop_timeout: int = 3
    # First delay before restarting a child that exited (doubles, at most 30 s).
    restart_delay: int = 1
    connect_timeout: int = 5
    status_path: str = "/run/fleet-singleton/status.json"
    log_level: str = "INFO"

    @property
    def lock_name(self) -> str:
        return self.lock or f"fleet-singleton:{self.name}"

    @property
    def read_timeout(self) -> int:
        # A standby blocks in GET_LOCK for acquire_wait: its reads must outlast it.
        return self.acquire_wait + self.lock_timeout

    @property
    def lease_seconds(self) -> float:
        """After a keepalive sent at t, the child must be gone by t + lease_seconds + stop_timeout."""
        return self.lock_timeout - self.stop_timeout - FENCE_MARGIN

    @property
    def failover_bound(self) -> int:
        """Worst case, in seconds, from the holder's death to the standby's takeover."""
        return self.keepalive + self.lock_timeout


@dataclass(frozen=True)
class JobConfig:
    """One scheduled job of the sequencer."""

    name: str
    command: str
    schedule: oncalendar.CalendarSpec
    timeout: int = 300
    max_retries: int = 0
    backoff: int = 10
    max_parallel: int = 1
    node_max_parallel: int = 1
    user: str | None = None


@dataclass(frozen=True)
class SequencerConfig:
    """The sequencer of one node."""

    node: str
    database: ShardConfig
    jobs: tuple[JobConfig, ...]
    poll: float = 1.0
    lease: int = 10
    keepalive: int = 2
    stop_timeout: int = 3
    node_max_parallel: int = 4
    claim_delay: float = 1.0
    catchup: int = 10
    output_bytes: int = 8192
    history_days: int = 7
    connect_timeout: int = 5
    status_path: str = "/run/fleet-sequencer/status.json"
    log_level: str = "INFO"
    by_name: dict[str, JobConfig] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.by_name.update({job.name: job for job in self.jobs})

    @property
    def read_timeout(self) -> int:
        return self.lease

    @property
    def lease_seconds(self) -> float:
        """After a renewal sent at t, a run's process must be gone by t + lease_seconds + stop_timeout."""
        return self.lease - self.stop_timeout - FENCE_MARGIN


# name -> (default, minimum, maximum)
_SINGLETON_INTEGERS: dict[str, tuple[int, int, int]] = {
    "lock_timeout": (10, 3, 300),
    "keepalive": (2, 1, 60),
    "acquire_wait": (2, 1, 60),
    "stop_timeout": (3, 1, 120),
    "restart_delay": (1, 1, 300),
    "connect_timeout": (5, 1, 60),
}
_SEQUENCER_INTEGERS: dict[str, tuple[int, int, int]] = {
    "lease": (10, 3, 3600),
    "keepalive": (2, 1, 600),
    "stop_timeout": (3, 1, 120),
    "node_max_parallel": (4, 1, 1000),
    "catchup": (10, 1, 10_000),
    "output_bytes": (8192, 0, 60_000),
    "history_days": (7, 1, 3660),
    "connect_timeout": (5, 1, 60),
}
_SEQUENCER_NUMBERS: dict[str, tuple[float, float, float]] = {
    "poll": (1.0, 0.05, 60.0),
    "claim_delay": (1.0, 0.0, 60.0),
}
_JOB_INTEGERS: dict[str, tuple[int, int, int]] = {
    "timeout": (300, 1, 7 * 86400),
    "max_retries": (0, 0, 100),
    "backoff": (10, 0, 86400),
    "max_parallel": (1, 1, 1000),
    "node_max_parallel": (1, 1, 1000),
}
_JOB_FIELDS = {"name", "command", "schedule", "user", *_JOB_INTEGERS}


def parse_singleton(data: Any, source: str = "config") -> SingletonConfig:
    """Validate a decoded singleton config."""
    data = _object(data, source)
    known = {"name", "node", "command", "unit", "user", "lock", "database", "status_path", "log_level"}
    known |= set(_SINGLETON_INTEGERS)
    _no_unknown(data, known, source)
    options: dict[str, Any] = {
        name: _integer(data[name], name, source, low, high) if name in data else default
        for name, (default, low, high) in _SINGLETON_INTEGERS.items()
    }
    name = _name(data, "name", source)
    has_command, has_unit = "command" in data, "unit" in data
    if has_command == has_unit:
        raise ConfigError(f"{source}: give exactly one of 'command' and 'unit'")
    if "lock" in data:
        lock = _string(data["lock"], "lock", source)
        if len(lock) > 64:
            raise ConfigError(
                f"{source}: field 'lock' must be at most 64 characters (a MariaDB lock name), got {lock!r}"
            )
        options["lock"] = lock
    if has_unit:
        unit = _string(data["unit"], "unit", source)
        if not re.match(r"^[A-Za-z0-9:_.@-]+\.service$", unit):
            raise ConfigError(f"{source}: field 'unit' must name a .service unit, got {unit!r}")
        options["unit"] = unit
    else:
        options["command"] = _string(data["command"], "command", source)
        options["user"] = _user(data.get("user"), "user", source)
    if options["lock_timeout"] < options["keepalive"] + options["stop_timeout"] + 2:
        raise ConfigError(
            f"{source}: field 'lock_timeout' ({options['lock_timeout']}) must be at least keepalive "
            f"({options['keepalive']}) + stop_timeout ({options['stop_timeout']}) + 2: the active node must stop "
            "its child between two keepalives and the moment the server frees the lock"
        )
    return SingletonConfig(
        name=name,
        node=_string(_required(data, "node", source), "node", source),
        database=_database(_required(data, "database", source), source),
        status_path=_path(data.get("status_path", SingletonConfig.status_path), source),
        log_level=_level(data.get("log_level", "INFO"), source),
        **options,
    )


def parse_sequencer(data: Any, source: str = "config") -> SequencerConfig:
    """Validate a decoded sequencer config."""
    data = _object(data, source)
    known = {"node", "database", "jobs", "status_path", "log_level", *_SEQUENCER_INTEGERS, *_SEQUENCER_NUMBERS}
    _no_unknown(data, known, source)
    options: dict[str, Any] = {
        name: _integer(data[name], name, source, low, high) if name in data else default
        for name, (default, low, high) in _SEQUENCER_INTEGERS.items()
    }
    for name, (default, low, high) in _SEQUENCER_NUMBERS.items():
        options[name] = _number(data[name], name, source, low, high) if name in data else default
    if options["lease"] < options["keepalive"] + options["stop_timeout"] + 2:
        raise ConfigError(
            f"{source}: field 'lease' ({options['lease']}) must be at least keepalive ({options['keepalive']}) "
            f"+ stop_timeout ({options['stop_timeout']}) + 2"
        )
    jobs = data.get("jobs", [])
    if not isinstance(jobs, list):
        raise ConfigError(f"{source}: field 'jobs' must be a list, got {_kind(jobs)}")
    parsed = tuple(_job(entry, f"jobs[{index}]", source) for index, entry in enumerate(jobs))
    names = [job.name for job in parsed]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"{source}: job {duplicates[0]!r} is listed twice")
    return SequencerConfig(
        node=_string(_required(data, "node", source), "node", source),
        database=_database(_required(data, "database", source), source),
        jobs=parsed,
        status_path=_path(data.get("status_path", SequencerConfig.status_path), source),
        log_level=_level(data.get("log_level", "INFO"), source),
        **options,
    )


def _job(entry: Any, where: str, source: str) -> JobConfig:
    if not isinstance(entry, dict):
        raise ConfigError(f"{source}: field {where!r} must be an object, got {_kind(entry)}")
    unknown = sorted(key for key in entry if key not in _JOB_FIELDS)
    if unknown:
        raise ConfigError(f"{source}: unknown field '{where}.{unknown[0]}'")
    options = {
        name: _integer(entry[name], f"{where}.{name}", source, low, high) if name in entry else default
        for name, (default, low, high) in _JOB_INTEGERS.items()
    }
    if options["node_max_parallel"] > options["max_parallel"]:
        raise ConfigError(
            f"{source}: field '{where}.node_max_parallel' ({options['node_max_parallel']}) "
            f"exceeds '{where}.max_parallel' ({options['max_parallel']})"
        )
    try:
        schedule = oncalendar.parse(_string(_required(entry, "schedule", source, where), f"{where}.schedule", source))
    except oncalendar.CalendarError as exc:
        raise ConfigError(f"{source}: field '{where}.schedule': {exc}") from None
    user = _user(entry.get("user"), f"{where}.user", source)
    return JobConfig(
        name=_name(entry, "name", source, where),
        command=_string(_required(entry, "command", source, where), f"{where}.command", source),
        schedule=schedule,
        user=user,
        **options,
    )


def _user(value: Any, name: str, source: str) -> str | None:
    if value is not None and not (isinstance(value, str) and re.match(r"^[a-z_][a-z0-9_-]{0,31}$", value)):
        raise ConfigError(f"{source}: field {name!r} must be a user name, got {value!r}")
    return value


def _database(value: Any, source: str) -> ShardConfig:
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: field 'database' must be an object, got {_kind(value)}")
    unknown = sorted(set(value) - _DATABASE_FIELDS)
    if unknown:
        raise ConfigError(f"{source}: unknown field 'database.{unknown[0]}'")
    for name in ("address", "schema", "user", "password"):
        _required(value, name, source, "database")
    password = value["password"]
    if not isinstance(password, str) or not password:
        raise ConfigError(f"{source}: field 'database.password' must be a non-empty string, got {_kind(password)}")
    return ShardConfig(
        shard=0,
        address=_string(value["address"], "database.address", source),
        port=_integer(value.get("port", 3306), "database.port", source, 1, 65535),
        schema=_string(value["schema"], "database.schema", source),
        user=_string(value["user"], "database.user", source),
        password=password,
    )


def _object(data: Any, source: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the config must be a JSON object, got {_kind(data)}")
    return data


def _no_unknown(data: dict[str, Any], known: set[str], source: str) -> None:
    unknown = sorted(key for key in data if not key.startswith("_") and key not in known)
    if unknown:
        raise ConfigError(f"{source}: unknown field {unknown[0]!r}")


def _required(data: dict[str, Any], name: str, source: str, where: str = "") -> Any:
    if name not in data:
        raise ConfigError(f"{source}: missing required field {f'{where}.{name}' if where else name!r}")
    return data[name]


def _name(data: dict[str, Any], name: str, source: str, where: str = "") -> str:
    label = f"{where}.{name}" if where else name
    value = _string(_required(data, name, source, where), label, source)
    if not NAME_PATTERN.match(value):
        raise ConfigError(
            f"{source}: field {label!r} must be lower-case letters, digits, '-', '_' or '.', got {value!r}"
        )
    return value


def _number(value: Any, name: str, source: str, low: float, high: float) -> float:
    valid = isinstance(value, int | float) and not isinstance(value, bool)
    if not valid or not low <= value <= high:
        raise ConfigError(f"{source}: field {name!r} must be a number {low:g}-{high:g}, got {value!r}")
    return float(value)


def _path(value: Any, source: str) -> str:
    path = _string(value, "status_path", source)
    if not path.startswith("/"):
        raise ConfigError(f"{source}: field 'status_path' must be an absolute path, got {path!r}")
    return path


def _level(value: Any, source: str) -> str:
    level = _string(value, "log_level", source).upper()
    if level not in _LOG_LEVELS:
        raise ConfigError(f"{source}: field 'log_level' must be one of {sorted(_LOG_LEVELS)}, got {value!r}")
    return level


def load(path: str, kind: str) -> SingletonConfig | SequencerConfig:
    """Read and validate the config file at `path` ("singleton" or "sequencer")."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from None
    return parse_singleton(data, path) if kind == "singleton" else parse_sequencer(data, path)


def main(argv: list[str] | None = None) -> int:
    """Check a config file: exit 0 when valid, 1 with the reason otherwise."""
    args = sys.argv[1:] if argv is None else argv
    check_systemd = "--no-systemd" not in args
    args = [arg for arg in args if arg != "--no-systemd"]
    if len(args) != 2 or args[0] not in ("singleton", "sequencer"):
        print("usage: python3 -m fleet_scheduler.tierconfig singleton|sequencer [--no-systemd] PATH", file=sys.stderr)
        return 2
    try:
        config = load(args[1], args[0])
        if isinstance(config, SequencerConfig) and check_systemd:
            for job in config.jobs:
                oncalendar.agrees_with_systemd(job.schedule)
    except (ConfigError, oncalendar.CalendarError) as exc:
        print(exc, file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{args[1]}: cannot run systemd-analyze to check the schedules: {exc}", file=sys.stderr)
        return 1
    if isinstance(config, SingletonConfig):
        print(f"{args[1]}: valid (singleton {config.name}, failover within {config.failover_bound} s)")
    else:
        print(f"{args[1]}: valid ({len(config.jobs)} job(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
