"""Config loading: defaults, routing, and errors that name the field."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fleet_checkin.config import (
    CONFIG_ENV,
    DEFAULT_CONFIG_PATH,
    ConfigError,
    config_path_from_env,
    load_config,
    main,
    parse_config,
)

FILES = Path(__file__).resolve().parents[3] / "roles" / "web" / "files"


def test_valid_config_routes_tenants_and_fills_defaults(config_data):
    config = parse_config(config_data)

    assert config.shard_for("tenant-003") == 2
    assert config.shard_for("tenant-999") is None
    assert config.routed_shards == [1, 2]
    assert config.shards[1].database == "fleet_shard_1"
    assert config.max_body_bytes == 16384
    assert config.startup_delay_seconds == 0.0
    assert (config.db_connect_timeout, config.db_read_timeout) == (2, 5)


def test_password_never_appears_in_repr(config_data):
    assert "s3cret" not in repr(parse_config(config_data))


def set_path(document, dotted, value):
    *parents, last = dotted.split(".")
    for key in parents:
        document = document[key]
    if value is KeyError:
        del document[last]
    else:
        document[last] = value


@pytest.mark.parametrize(
    ("dotted", "value", "message"),
    [
        ("node", KeyError, "missing required field 'node'"),
        ("node", "", "field 'node' must be a non-empty string, got ''"),
        ("version", 1, "field 'version' must be a non-empty string, got 1"),
        ("drain_file", "run/drain", "field 'drain_file' must be an absolute path, got 'run/drain'"),
        ("tenants", {}, "field 'tenants' must be a non-empty object, got an empty object"),
        ("tenants.tenant-001", "1", "field 'tenants.tenant-001' must be an integer >= 1, got '1'"),
        ("tenants.tenant-001", 7, "field 'tenants.tenant-001' routes to shard 7, which is not in 'shards'"),
        ("shards", [], "field 'shards' must be a non-empty object, got an array"),
        ("shards.1.port", "3306", "field 'shards.1.port' must be an integer 1-65535, got '3306'"),
        ("shards.1.port", True, "field 'shards.1.port' must be an integer 1-65535, got True"),
        ("shards.1.host", KeyError, "missing required field 'shards.1.host'"),
        ("shards.1.hots", "x", "unknown field 'shards.1.hots'"),
        ("shards.x", {}, "shard key 'x' must be a shard number >= 1"),
        ("max_body_bytes", 10, "field 'max_body_bytes' must be an integer 64-1048576, got 10"),
        ("startup_delay_seconds", -1, "field 'startup_delay_seconds' must be a number 0.0-3600.0, got -1"),
        ("startup_delay_seconds", "5", "field 'startup_delay_seconds' must be a number 0.0-3600.0, got '5'"),
        ("page_limit_default", 900, "field 'page_limit_default' (900) must not exceed 'page_limit_max' (500)"),
        ("drian_file", "/x", "unknown field 'drian_file'"),
    ],
)
def test_invalid_config_names_the_field_and_value(config_data, dotted, value, message):
    set_path(config_data, dotted, value)

    with pytest.raises(ConfigError) as caught:
        parse_config(config_data, source="/etc/fleet-checkin/config.json")

    assert str(caught.value) == f"/etc/fleet-checkin/config.json: {message}"


def test_wrong_password_type_is_named_but_not_echoed(config_data):
    config_data["shards"]["1"]["password"] = 123456789

    with pytest.raises(ConfigError, match=r"field 'shards\.1\.password' must be a string, got a number") as caught:
        parse_config(config_data)

    assert "123456789" not in str(caught.value)


def test_config_must_be_an_object():
    with pytest.raises(ConfigError, match="must be a JSON object, got an array"):
        parse_config([])


def test_load_config_reads_the_file(tmp_path, config_data):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config_data))

    assert load_config(str(path)).node == "web-agent-01"


def test_load_config_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "absent.json"

    with pytest.raises(ConfigError, match=f"{missing}: cannot read config: No such file"):
        load_config(str(missing))


def test_load_config_invalid_json_names_the_position(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"node": "a",\n  oops}')

    with pytest.raises(ConfigError, match=r"not valid JSON: .*line 2 column 3"):
        load_config(str(path))


def test_config_path_comes_from_the_environment():
    assert config_path_from_env({CONFIG_ENV: "/tmp/x.json"}) == "/tmp/x.json"
    assert config_path_from_env({}) == DEFAULT_CONFIG_PATH


def test_check_command_reports_ok_and_errors(tmp_path, config_data, capsys):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(config_data))
    config_data["shards"]["2"]["port"] = 0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(config_data))

    assert main([str(good)]) == 0
    assert "ok: node web-agent-01, 3 tenants on shards [1, 2]" in capsys.readouterr().out
    assert main([str(bad)]) == 1
    assert "field 'shards.2.port' must be an integer 1-65535, got 0" in capsys.readouterr().err
    assert main([]) == 2


def test_service_with_bad_config_exits_1_with_one_line(tmp_path, config_data):
    config_data["tenants"]["tenant-002"] = 9
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config_data))
    env = dict(os.environ, **{CONFIG_ENV: str(path), "PYTHONPATH": str(FILES), "PYTHONDONTWRITEBYTECODE": "1"})

    # What gunicorn --preload does first: import the WSGI module.
    result = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", "import fleet_checkin.wsgi"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"fleet-checkin: invalid config: {path}: field 'tenants.tenant-002' routes to shard 9, which is not in 'shards'"
    )
