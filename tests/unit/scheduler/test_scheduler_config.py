"""Config validation: good files load with their defaults, bad ones fail naming the field and value."""

from __future__ import annotations

import json

import pytest
from fleet_scheduler.config import ConfigError, load_config, main, parse_config


def test_valid_config_loads_with_defaults(config_data):
    del config_data["lock_timeout"], config_data["batch_size"]
    config = parse_config(config_data)

    assert config.node == "app-01"
    assert [shard.shard for shard in config.shards] == [1, 2]
    assert config.shards[0].tenants == ("tenant-001", "tenant-002")
    assert config.lock_timeout == 10
    assert config.batch_size == 5000
    assert config.lock_name == "fleet_scheduler"
    assert config.coordination.schema == "fleet_shard_1"
    # 3 missed check-ins of 60 s each.
    assert config.offline_after_seconds == 180


def test_shard_port_defaults_to_3306(config_data):
    del config_data["shards"][1]["port"]
    assert parse_config(config_data).shards[1].port == 3306


def test_password_is_not_in_the_repr(config_data):
    assert "s3cret-one" not in repr(parse_config(config_data))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("interval", 0, "field 'interval' must be an integer 1-3600, got 0"),
        ("interval", True, "field 'interval' must be an integer 1-3600, got True"),
        ("interval", "5", "field 'interval' must be an integer 1-3600, got '5'"),
        ("missed_checkins", -1, "field 'missed_checkins' must be an integer 1-1000, got -1"),
        ("retention_hours", 10**6, "field 'retention_hours' must be an integer"),
        ("lock_timeout", 120, "field 'lock_timeout' must be an integer 1-60, got 120"),
        ("node", "  ", "field 'node' must be a non-empty string, got '  '"),
        ("status_path", "run/status.json", "field 'status_path' must be an absolute path, got 'run/status.json'"),
        ("log_level", "LOUD", "field 'log_level' must be one of"),
        ("coordination_shard", 3, "field 'coordination_shard' is 3, which is not in 'shards'"),
        ("read_timeout", 10, "field 'read_timeout' (10) must exceed 'lock_timeout' (10)"),
        ("shards", [], "field 'shards' must be a non-empty list, got list"),
        ("shards", {"1": {}}, "field 'shards' must be a non-empty list, got dict"),
        ("intervall", 5, "unknown field 'intervall'"),
    ],
)
def test_invalid_top_level_field_is_named(config_data, field, value, message):
    config_data[field] = value
    with pytest.raises(ConfigError) as error:
        parse_config(config_data, source="/etc/fleet-scheduler/config.json")
    assert str(error.value).startswith("/etc/fleet-scheduler/config.json: ")
    assert message in str(error.value)


@pytest.mark.parametrize("field", ["node", "shards"])
def test_missing_required_field_is_named(config_data, field):
    del config_data[field]
    with pytest.raises(ConfigError, match=f"missing required field '{field}'"):
        parse_config(config_data)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"shard": 0}, "field 'shards[1].shard' must be an integer >= 1, got 0"),
        ({"shard": 1}, "field 'shards[1].shard' repeats shard 1"),
        ({"port": 70000}, "field 'shards[1].port' must be an integer 1-65535, got 70000"),
        ({"schema": "fleet; DROP"}, "field 'shards[1].schema' must be a plain schema name, got 'fleet; DROP'"),
        ({"address": ""}, "field 'shards[1].address' must be a non-empty string, got ''"),
        ({"tenants": "tenant-003"}, "field 'shards[1].tenants' must be a list of tenant names, got 'tenant-003'"),
        ({"host": "172.28.5.11"}, "unknown field 'shards[1].host'"),
    ],
)
def test_invalid_shard_field_is_named(config_data, change, message):
    config_data["shards"][1].update(change)
    with pytest.raises(ConfigError) as error:
        parse_config(config_data)
    assert message in str(error.value)


@pytest.mark.parametrize("field", ["shard", "address", "schema", "user", "password"])
def test_missing_shard_field_is_named(config_data, field):
    del config_data["shards"][0][field]
    with pytest.raises(ConfigError, match=rf"missing required field 'shards\[0\]\.{field}'"):
        parse_config(config_data)


def test_a_bad_password_is_reported_without_its_value(config_data):
    config_data["shards"][0]["password"] = 123456789
    with pytest.raises(ConfigError) as error:
        parse_config(config_data)
    assert "field 'shards[0].password' must be a non-empty string, got int" in str(error.value)
    assert "123456789" not in str(error.value)


def test_load_config_reports_unreadable_and_invalid_files(tmp_path):
    missing = tmp_path / "missing.json"
    with pytest.raises(ConfigError, match=f"{missing}: cannot read config"):
        load_config(str(missing))

    broken = tmp_path / "broken.json"
    broken.write_text('{"node": ')
    with pytest.raises(ConfigError, match=f"{broken}: not valid JSON"):
        load_config(str(broken))

    not_an_object = tmp_path / "list.json"
    not_an_object.write_text("[]")
    with pytest.raises(ConfigError, match="the config must be a JSON object, got list"):
        load_config(str(not_an_object))


def test_check_command_exit_codes(tmp_path, config_data, capsys):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(config_data))
    assert main([str(good)]) == 0
    assert "valid (2 shard(s), coordination shard 1)" in capsys.readouterr().out

    config_data["interval"] = 0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(config_data))
    assert main([str(bad)]) == 1
    assert "field 'interval'" in capsys.readouterr().err

    assert main([]) == 2
