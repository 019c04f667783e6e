"""systemd OnCalendar= expressions, evaluated by the sequencer itself, in UTC.

systemd timers fire late by up to AccuracySec and only on the node that runs
them; the sequencer instead computes due times on the database's clock and
lets every node see them. This module reads the subset of systemd.time(7)
calendar events the jobs need:

    [WEEKDAYS] [[YEAR-]MONTH-DAY] [HOUR:MINUTE[:SECOND]] [UTC]

- every component is `*`, a value, a list `a,b`, a range `a..b` or a
  repetition `a/step` or `a..b/step` (e.g. `*:*:0/2`: every 2 seconds);
- weekdays are names (`Mon`, `Monday`, ...) in lists and ranges (`Mon..Fri`);
- a missing date means every day, a missing time 00:00:00, missing seconds 00;
- the shorthands minutely, hourly, daily, weekly, monthly, quarterly,
  semiannually, yearly and annually.

Not supported (refused with a message): time zones other than UTC, fractional
seconds, `~` (days from the end of the month) and two-digit years. The role
checks every schedule against `systemd-analyze calendar` on the node as well
(see `agrees_with_systemd`), so a schedule means the same here as in a timer.
"""

from __future__ import annotations

import calendar as _stdlib_calendar
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta

MIN_YEAR = 1970
MAX_YEAR = 2199

SHORTHANDS = {
    "minutely": "*-*-* *:*:00",
    "hourly": "*-*-* *:00:00",
    "daily": "*-*-* 00:00:00",
    "weekly": "Mon *-*-* 00:00:00",
    "monthly": "*-*-01 00:00:00",
    "quarterly": "*-01,04,07,10-01 00:00:00",
    "semiannually": "*-01,07-01 00:00:00",
    "yearly": "*-01-01 00:00:00",
    "annually": "*-01-01 00:00:00",
}
_WEEKDAYS = {
    name: index
    for index, names in enumerate(
        (
            ("mon", "monday"),
            ("tue", "tuesday"),
            ("wed", "wednesday"),
            ("thu", "thursday"),
            ("fri", "friday"),
            ("sat", "saturday"),
            ("sun", "sunday"),
        )
    )
    for name in names
}
_ITEM = re.compile(r"^(?P<start>\d+)(?:\.\.(?P<end>\d+))?(?:/(?P<step>\d+))?$")
_SYSTEMD_TIME = re.compile(r"(?:Next elapse|Iter\. #\d+):\s+\w+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC")


class CalendarError(ValueError):
    """The expression is not an OnCalendar event this module supports."""


@dataclass(frozen=True)
class CalendarSpec:
    """A parsed calendar event; None in a field means any value."""

    expression: str
    weekdays: frozenset[int] | None
    years: tuple[int, ...] | None
    months: tuple[int, ...]
    days: tuple[int, ...]
    hours: tuple[int, ...]
    minutes: tuple[int, ...]
    seconds: tuple[int, ...]

    def matches(self, moment: datetime) -> bool:
        """True when `moment` (naive UTC) is an instance of the event."""
        return (
            moment.microsecond == 0
            and (self.years is None or moment.year in self.years)
            and moment.month in self.months
            and moment.day in self.days
            and (self.weekdays is None or moment.weekday() in self.weekdays)
            and moment.hour in self.hours
            and moment.minute in self.minutes
            and moment.second in self.seconds
        )

    def next_after(self, moment: datetime) -> datetime | None:
        """The first instance strictly after `moment` (naive UTC); None when there is none."""
        start = moment.replace(microsecond=0) + timedelta(seconds=1)
        for year in range(max(start.year, MIN_YEAR), MAX_YEAR + 1):
            if self.years is not None and year not in self.years:
                continue
            for month in self.months:
                if (year, month) < (start.year, start.month):
                    continue
                last_day = _stdlib_calendar.monthrange(year, month)[1]
                for day in self.days:
                    if day > last_day:
                        break
                    current = date(year, month, day)
                    if current < start.date():
                        continue
                    if self.weekdays is not None and current.weekday() not in self.weekdays:
                        continue
                    found = self._first_time_on(current, start if current == start.date() else None)
                    if found is not None:
                        return found
        return None

    def instances(self, first: datetime, last: datetime) -> Iterator[datetime]:
        """Every instance in [first, last], in order."""
        moment = first if self.matches(first) else self.next_after(first)
        while moment is not None and moment <= last:
            yield moment
            moment = self.next_after(moment)

    def _first_time_on(self, day: date, lower: datetime | None) -> datetime | None:
        floor = (lower.hour, lower.minute, lower.second) if lower else (0, 0, 0)
        for hour in self.hours:
            if hour < floor[0]:
                continue
            for minute in self.minutes:
                if (hour, minute) < floor[:2]:
                    continue
                for second in self.seconds:
                    if (hour, minute, second) >= floor:
                        return datetime(day.year, day.month, day.day, hour, minute, second)
        return None


def parse(expression: str) -> CalendarSpec:
    """Parse an OnCalendar expression (see the module documentation)."""
    if not isinstance(expression, str) or not expression.strip():
        raise CalendarError(f"a schedule must be a non-empty string, got {expression!r}")
    text = SHORTHANDS.get(expression.strip().lower(), expression.strip())
    tokens = text.split()
    if tokens and tokens[-1] == "UTC":
        tokens.pop()
    weekdays = None
    if tokens and tokens[0][:1].isalpha():
        weekdays = _weekdays(tokens.pop(0), expression)
    date_part = time_part = None
    for token in tokens:
        if ":" in token and time_part is None:
            time_part = token
        elif "-" in token and date_part is None and time_part is None:
            date_part = token
        else:
            raise CalendarError(
                f"schedule {expression!r}: unexpected {token!r} (time zones other than UTC are not supported)"
            )
    years, months, days = _date(date_part or "*-*-*", expression)
    hours, minutes, seconds = _time(time_part or "00:00:00", expression)
    return CalendarSpec(expression, weekdays, years, months, days, hours, minutes, seconds)


def _date(text: str, expression: str) -> tuple[tuple[int, ...] | None, tuple[int, ...], tuple[int, ...]]:
    parts = text.split("-")
    if len(parts) == 2:
        parts.insert(0, "*")
    if len(parts) != 3:
        raise CalendarError(f"schedule {expression!r}: the date {text!r} is not [YEAR-]MONTH-DAY")
    if parts[0] != "*" and not re.match(r"^\d{4}", parts[0]):
        raise CalendarError(f"schedule {expression!r}: years have four digits, got {parts[0]!r}")
    years = None if parts[0] == "*" else _component(parts[0], MIN_YEAR, MAX_YEAR, "year", expression)
    months = _component(parts[1], 1, 12, "month", expression)
    days = _component(parts[2], 1, 31, "day", expression)
    return years, months, days


def _time(text: str, expression: str) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    parts = text.split(":")
    if len(parts) == 2:
        parts.append("00")
    if len(parts) != 3:
        raise CalendarError(f"schedule {expression!r}: the time {text!r} is not HOUR:MINUTE[:SECOND]")
    return (
        _component(parts[0], 0, 23, "hour", expression),
        _component(parts[1], 0, 59, "minute", expression),
        _component(parts[2], 0, 59, "second", expression),
    )


def _component(text: str, low: int, high: int, what: str, expression: str) -> tuple[int, ...]:
    if text == "*":
        return tuple(range(low, high + 1))
    values: set[int] = set()
    for item in text.split(","):
        match = _ITEM.match(item)
        if not match:
            raise CalendarError(f"schedule {expression!r}: {what} {item!r} is not a value, a..b or a/step")
        start = int(match["start"])
        end = int(match["end"]) if match["end"] else (high if match["step"] else start)
        step = int(match["step"]) if match["step"] else 1
        if not low <= start <= high or not low <= end <= high or end < start or step < 1:
            raise CalendarError(f"schedule {expression!r}: {what} {item!r} is outside {low}..{high}")
        values.update(range(start, end + 1, step))
    return tuple(sorted(values))


def _weekdays(text: str, expression: str) -> frozenset[int]:
    days: set[int] = set()
    for item in text.split(","):
        first, _, last = item.partition("..")
        try:
            start = _WEEKDAYS[first.lower()]
            end = _WEEKDAYS[last.lower()] if last else start
        except KeyError:
            raise CalendarError(f"schedule {expression!r}: {item!r} is not a weekday or a range of weekdays") from None
        if end < start:
            raise CalendarError(f"schedule {expression!r}: weekday range {item!r} runs backwards")
        days.update(range(start, end + 1))
    return frozenset(days)


def systemd_instances(expression: str, count: int = 5) -> list[datetime]:
    """The next `count` instances as `systemd-analyze calendar` computes them, in UTC.

    Raises CalendarError when systemd refuses the expression, OSError when
    systemd-analyze cannot run.
    """
    text = SHORTHANDS.get(expression.strip().lower(), expression.strip())
    if not text.endswith(" UTC"):
        text += " UTC"
    done = subprocess.run(
        ["systemd-analyze", "calendar", f"--iterations={count}", text],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
        env={**os.environ, "TZ": "UTC", "LC_ALL": "C"},
    )
    if done.returncode != 0:
        raise CalendarError(
            f"schedule {expression!r}: systemd refuses it: {done.stderr.strip() or done.stdout.strip()}"
        )
    return [datetime.strptime(found, "%Y-%m-%d %H:%M:%S") for found in _SYSTEMD_TIME.findall(done.stdout)]


def agrees_with_systemd(spec: CalendarSpec, count: int = 5) -> None:
    """Raise CalendarError unless systemd computes the same next `count` instances as `spec`.

    Compared instant by instant from systemd's own first answer, so the two
    never disagree only because the clock moved between the two computations.
    """
    expected = systemd_instances(spec.expression, count)
    if not expected:
        raise CalendarError(f"schedule {spec.expression!r}: systemd finds no future instance")
    previous = expected[0] - timedelta(seconds=1)
    for wanted in expected:
        found = spec.next_after(previous)
        if found != wanted:
            ours = f"{found:%Y-%m-%d %H:%M:%S}" if found else "no instance"
            raise CalendarError(
                f"schedule {spec.expression!r}: after {previous:%Y-%m-%d %H:%M:%S} systemd says "
                f"{wanted:%Y-%m-%d %H:%M:%S}, the sequencer {ours}"
            )
        previous = wanted
