"""The status file and the fleet-scheduler-status command."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from fleet_scheduler.status import EXIT_NOT_RUNNING, build_status, iso_utc, main, write_status


def test_status_document_shape():
    status = build_status("standby", "app-02", "app-01", 3, datetime(2025, 1, 1, 12, 0, 0, 250000))
    assert status["role"] == "standby"
    assert status["holder"] == "app-01"
    assert status["epoch"] == 3
    assert status["since"] == "2025-01-01T12:00:00.250Z"
    assert status["node"] == "app-02"
    assert status["updated"].endswith("Z")


def test_empty_holder_means_nobody():
    assert build_status("standby", "app-02", "", 4, None)["holder"] is None


def test_iso_utc_converts_aware_times():
    aware = datetime(2025, 1, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    assert iso_utc(aware) == "2025-01-01T12:00:00.000Z"


def test_write_status_replaces_the_file_without_leftovers(tmp_path):
    path = tmp_path / "status.json"
    write_status(str(path), {"role": "standby"})
    write_status(str(path), {"role": "active", "epoch": 2})

    assert json.loads(path.read_text()) == {"role": "active", "epoch": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]
    assert path.stat().st_mode & 0o777 == 0o644


def test_command_prints_the_status(tmp_path, capsys):
    path = tmp_path / "status.json"
    write_status(str(path), {"role": "active", "holder": "app-01", "epoch": 1, "since": None})

    assert main([str(path)]) == 0
    assert json.loads(capsys.readouterr().out) == {"role": "active", "holder": "app-01", "epoch": 1, "since": None}


def test_command_without_a_status_file_says_the_service_is_not_running(tmp_path, capsys):
    assert main([str(tmp_path / "status.json")]) == EXIT_NOT_RUNNING
    assert "is fleet-scheduler running?" in capsys.readouterr().err


def test_command_reports_a_corrupt_file(tmp_path, capsys):
    path = tmp_path / "status.json"
    path.write_text("{")
    assert main([str(path)]) == 1
    assert f"cannot read {path}" in capsys.readouterr().err
