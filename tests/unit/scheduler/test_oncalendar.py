"""OnCalendar expressions as the sequencer evaluates them (UTC, whole seconds), checked against systemd."""

from __future__ import annotations

import shutil
from datetime import datetime

import pytest
from fleet_scheduler import oncalendar
from fleet_scheduler.oncalendar import CalendarError, parse

START = datetime(2025, 1, 1, 12, 0, 0)  # a Wednesday


def upcoming(expression: str, count: int, after: datetime = START) -> list[str]:
    spec, found, moment = parse(expression), [], after
    for _ in range(count):
        moment = spec.next_after(moment)
        assert moment is not None
        found.append(moment.strftime("%a %Y-%m-%d %H:%M:%S"))
    return found


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("*:*:0/2", ["Wed 2025-01-01 12:00:02", "Wed 2025-01-01 12:00:04", "Wed 2025-01-01 12:00:06"]),
        ("*:*:*", ["Wed 2025-01-01 12:00:01", "Wed 2025-01-01 12:00:02", "Wed 2025-01-01 12:00:03"]),
        ("*:0/5", ["Wed 2025-01-01 12:05:00", "Wed 2025-01-01 12:10:00", "Wed 2025-01-01 12:15:00"]),
        ("*:0..30/10", ["Wed 2025-01-01 12:10:00", "Wed 2025-01-01 12:20:00", "Wed 2025-01-01 12:30:00"]),
        ("hourly", ["Wed 2025-01-01 13:00:00", "Wed 2025-01-01 14:00:00", "Wed 2025-01-01 15:00:00"]),
        ("daily", ["Thu 2025-01-02 00:00:00", "Fri 2025-01-03 00:00:00", "Sat 2025-01-04 00:00:00"]),
        ("Mon..Fri 09:30", ["Thu 2025-01-02 09:30:00", "Fri 2025-01-03 09:30:00", "Mon 2025-01-06 09:30:00"]),
        ("Sat,Sun *-*-* 00:00", ["Sat 2025-01-04 00:00:00", "Sun 2025-01-05 00:00:00", "Sat 2025-01-11 00:00:00"]),
        ("*-*-01 04:00", ["Sat 2025-02-01 04:00:00", "Sat 2025-03-01 04:00:00", "Tue 2025-04-01 04:00:00"]),
        ("*-02-29", ["Tue 2028-02-29 00:00:00", "Sun 2032-02-29 00:00:00", "Fri 2036-02-29 00:00:00"]),
        ("2025-12-25 1:2:3 UTC", ["Thu 2025-12-25 01:02:03"]),
        ("quarterly", ["Tue 2025-04-01 00:00:00", "Tue 2025-07-01 00:00:00", "Wed 2025-10-01 00:00:00"]),
    ],
)
def test_next_instances(expression, expected):
    assert upcoming(expression, len(expected)) == expected


def test_an_instance_is_strictly_after_the_given_moment():
    spec = parse("*:*:0/2")
    assert spec.next_after(datetime(2025, 1, 1, 12, 0, 2)) == datetime(2025, 1, 1, 12, 0, 4)
    assert spec.next_after(datetime(2025, 1, 1, 12, 0, 1, 500000)) == datetime(2025, 1, 1, 12, 0, 2)


def test_instances_between_two_moments_include_both_ends():
    spec = parse("*:*:0/2")
    found = list(spec.instances(datetime(2025, 1, 1, 12, 0, 2), datetime(2025, 1, 1, 12, 0, 8)))
    assert [moment.second for moment in found] == [2, 4, 6, 8]
    assert spec.matches(datetime(2025, 1, 1, 12, 0, 4)) and not spec.matches(datetime(2025, 1, 1, 12, 0, 5))


def test_an_event_that_never_comes_has_no_next_instance():
    # 2029-2031 have no 29 February.
    assert parse("2029..2031-02-29").next_after(START) is None


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("*:*:60", "second '60' is outside 0..59"),
        ("*:*:*/2", "second '\\*/2' is not a value"),
        ("*:*:0.5", "second '0.5' is not a value"),
        ("*:*:0/2 Europe/Paris", "time zones other than UTC are not supported"),
        ("Sun..Mon", "runs backwards"),
        ("Someday 12:00", "not a weekday"),
        ("*-*-~1", "day '~1' is not a value"),
        ("26-01-01", "years have four digits"),
        ("1:2:3:4", "is not HOUR:MINUTE"),
        ("", "non-empty string"),
    ],
)
def test_unsupported_expressions_are_refused_with_the_reason(expression, message):
    with pytest.raises(CalendarError, match=message):
        parse(expression)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("expression", ["*:*:0/2", "*:0/5", "Mon..Fri 09:30", "*-*-01 04:00", "weekly", "*:*:5/20"])
def test_the_sequencer_agrees_with_systemd(expression):
    oncalendar.agrees_with_systemd(parse(expression), count=5)


def test_a_disagreement_with_systemd_is_reported(monkeypatch):
    monkeypatch.setattr(
        oncalendar,
        "systemd_instances",
        lambda _expression, _count: [datetime(2025, 1, 1, 12, 0, 2), datetime(2025, 1, 1, 12, 0, 3)],
    )
    with pytest.raises(CalendarError, match="systemd says 2025-01-01 12:00:03, the sequencer 2025-01-01 12:00:04"):
        oncalendar.agrees_with_systemd(parse("*:*:0/2"))
