"""The configs of the singleton supervisors and of the sequencer: defaults, bounds and readable errors."""

from __future__ import annotations

import json

import pytest
from fleet_scheduler import tierconfig
from fleet_scheduler.config import ConfigError
from fleet_scheduler.tierconfig import parse_sequencer, parse_singleton


def test_a_singleton_config_with_its_defaults(singleton_data):
    config = parse_singleton(singleton_data)
    assert (config.name, config.command, config.unit, config.user) == ("probe", "sleep infinity", None, None)
    assert config.lock_name == "fleet-singleton:probe"
    # The child is gone 1 s before the server can free the lock: 10 - 3 - 1 after the last keepalive.
    assert config.lease_seconds == 6.0
    assert config.failover_bound == 12
    assert config.read_timeout > config.acquire_wait
    assert "s3cret" not in repr(config)


def test_a_singleton_runs_a_command_or_a_unit(singleton_data):
    singleton_data["unit"] = "automate-agent.service"
    with pytest.raises(ConfigError, match="exactly one of 'command' and 'unit'"):
        parse_singleton(singleton_data)
    del singleton_data["command"]
    assert parse_singleton(singleton_data).unit == "automate-agent.service"
    singleton_data["unit"] = "automate-agent"
    with pytest.raises(ConfigError, match=r"must name a \.service unit"):
        parse_singleton(singleton_data)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"lock_timeout": 6}, r"'lock_timeout' \(6\) must be at least keepalive \(2\) \+ stop_timeout \(3\) \+ 2"),
        ({"name": "Probe!"}, "field 'name' must be lower-case letters"),
        ({"keepalive": 0}, "field 'keepalive' must be an integer 1-60, got 0"),
        ({"colour": "blue"}, "unknown field 'colour'"),
        ({"user": "Bad User"}, "field 'user' must be a user name"),
        ({"status_path": "run/x.json"}, "must be an absolute path"),
    ],
)
def test_singleton_mistakes_are_named(singleton_data, change, message):
    with pytest.raises(ConfigError, match=message):
        parse_singleton({**singleton_data, **change})


def test_the_password_is_never_echoed(singleton_data):
    singleton_data["database"]["password"] = 12345
    with pytest.raises(ConfigError) as caught:
        parse_singleton(singleton_data)
    assert "12345" not in str(caught.value) and "database.password" in str(caught.value)


def test_a_sequencer_config_with_job_defaults(sequencer_data):
    config = parse_sequencer(sequencer_data)
    (job,) = config.jobs
    assert (job.timeout, job.max_retries, job.backoff, job.max_parallel, job.node_max_parallel) == (300, 0, 10, 1, 1)
    assert job.schedule.expression == "*:*:*"
    assert config.by_name == {"tick": job}
    assert config.lease_seconds == 6.0
    assert (config.poll, config.claim_delay, config.catchup) == (0.5, 1.0, 10)


@pytest.mark.parametrize(
    ("job", "message"),
    [
        ({"schedule": "*:*:61"}, r"field 'jobs\[0\].schedule': schedule '\*:\*:61': second '61'"),
        ({"max_parallel": 1, "node_max_parallel": 2}, r"'jobs\[0\].node_max_parallel' \(2\) exceeds"),
        ({"timeout": 0}, r"'jobs\[0\].timeout' must be an integer"),
        ({"retries": 3}, r"unknown field 'jobs\[0\].retries'"),
        ({"name": "Tick"}, r"'jobs\[0\].name' must be lower-case"),
    ],
)
def test_job_mistakes_are_named(sequencer_data, job, message):
    sequencer_data["jobs"][0].update(job)
    with pytest.raises(ConfigError, match=message):
        parse_sequencer(sequencer_data)


def test_a_job_listed_twice_is_refused(sequencer_data):
    sequencer_data["jobs"].append(dict(sequencer_data["jobs"][0]))
    with pytest.raises(ConfigError, match="job 'tick' is listed twice"):
        parse_sequencer(sequencer_data)


def test_the_lease_must_outlast_a_keepalive_and_a_stop(sequencer_data):
    with pytest.raises(ConfigError, match=r"'lease' \(6\) must be at least"):
        parse_sequencer({**sequencer_data, "lease": 6})


def test_the_checker_command(tmp_path, singleton_data, sequencer_data, capsys):
    singleton = tmp_path / "probe.json"
    singleton.write_text(json.dumps(singleton_data))
    assert tierconfig.main(["singleton", str(singleton)]) == 0
    assert "failover within 12 s" in capsys.readouterr().out
    sequencer = tmp_path / "sequencer.json"
    sequencer.write_text(json.dumps({**sequencer_data, "lease": 4}))
    assert tierconfig.main(["sequencer", "--no-systemd", str(sequencer)]) == 1
    assert "'lease' (4)" in capsys.readouterr().err
    assert tierconfig.main(["sequencer"]) == 2


def test_a_singleton_may_keep_an_existing_lock_name(singleton_data):
    assert parse_singleton({**singleton_data, "lock": "fleet_scheduler"}).lock_name == "fleet_scheduler"
    with pytest.raises(ConfigError, match="at most 64 characters"):
        parse_singleton({**singleton_data, "lock": "x" * 65})
