# Copyright: fleetscale.split contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Agent check-in rate: the load every tier is sized from.

Two ways to state how often agents call home:
- a check-in ratio: the share of agents that check in each minute (ConnectWise
  Automate plans with 30 %; its published "20,000 agents ~ 6,600 requests/min" is 33 %);
- a poll interval: every agent polls every N seconds (Altiwi's nodes: 10 s).
"""

from __future__ import annotations

import math
import sys

from ansible_collections.fleetscale.split.plugins.module_utils.errors import PlanError
from ansible_collections.fleetscale.split.plugins.module_utils.spec import check_number

SECONDS_PER_MINUTE = 60
SECONDS_PER_DAY = 86400
# Monthly figures use a 30-day month, as provider price sheets do.
DAYS_PER_MONTH = 30
# Rates are rounded to micro-requests so that 0.3 * 20000 prints as 6000, not 6000.000000000001.
_DIGITS = 6


def per_second(agents, checkin_ratio=None, poll_interval=None):
    """Check-ins per second of `agents` agents (poll_interval wins when given)."""
    if poll_interval is not None:
        return agents / poll_interval
    return agents * checkin_ratio / SECONDS_PER_MINUTE


def agents_at(rate_per_second, checkin_ratio=None, poll_interval=None):
    """The largest whole number of agents whose rate stays at or under rate_per_second."""
    if rate_per_second <= 0:
        return 0
    if poll_interval is not None:
        guess = math.floor(rate_per_second * poll_interval)
    else:
        guess = math.floor(rate_per_second * SECONDS_PER_MINUTE / checkin_ratio)
    # Floating point can put the guess one off either way; settle it with the forward formula.
    while guess > 0 and per_second(guess, checkin_ratio, poll_interval) > rate_per_second * (1 + 1e-12):
        guess -= 1
    while per_second(guess + 1, checkin_ratio, poll_interval) <= rate_per_second * (1 + 1e-12):
        guess += 1
    return guess


def checkin_rate(agents, checkin_ratio=0.30, poll_interval=None):
    """Per-minute, per-second, per-day and per-month check-ins of an agent fleet."""
    if isinstance(agents, bool) or not isinstance(agents, int) or agents < 0:
        raise PlanError("agents", agents, "must be a whole number >= 0")
    # check_number refuses booleans and NaN and infinities: NaN passes every comparison test
    # (poll_interval <= 0 is false for it) and an infinite interval makes a rate of 0.
    if poll_interval is not None:
        poll_interval = check_number(poll_interval, "poll_interval", float, 0.0, low_open=True)
        basis = "poll_interval"
    else:
        checkin_ratio = check_number(checkin_ratio, "checkin_ratio", float, 0.0, 1.0, low_open=True)
        basis = "checkin_ratio"
    # Finite inputs can still overflow (10**400 agents, a poll every 1e-320 s): refuse, never return inf.
    try:
        rps = per_second(agents, checkin_ratio, poll_interval)
        finite = math.isfinite(rps * SECONDS_PER_DAY * DAYS_PER_MONTH)
    except OverflowError:
        finite = False
    if not finite:
        # Name the input that overflows: an agent count no float holds, else the poll interval.
        if poll_interval is None or agents > sys.float_info.max:
            raise PlanError("agents", agents, "gives a check-in rate too large to be a number")
        raise PlanError("poll_interval", poll_interval, "gives a check-in rate too large to be a number")
    return {
        "agents": agents,
        "basis": basis,
        "checkin_ratio": None if poll_interval is not None else checkin_ratio,
        "poll_interval": poll_interval,
        "per_second": round(rps, _DIGITS),
        "per_minute": round(rps * SECONDS_PER_MINUTE, _DIGITS),
        "per_day": round(rps * SECONDS_PER_DAY, _DIGITS),
        "per_month": round(rps * SECONDS_PER_DAY * DAYS_PER_MONTH, _DIGITS),
    }
