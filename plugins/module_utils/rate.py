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

from ansible_collections.fleetscale.split.plugins.module_utils.errors import PlanError

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
    if poll_interval is not None:
        if isinstance(poll_interval, bool) or not isinstance(poll_interval, (int, float)) or poll_interval <= 0:
            raise PlanError("poll_interval", poll_interval, "must be a number of seconds > 0")
        basis = "poll_interval"
    else:
        if isinstance(checkin_ratio, bool) or not isinstance(checkin_ratio, (int, float)) \
                or not 0 < checkin_ratio <= 1:
            raise PlanError("checkin_ratio", checkin_ratio, "must be in (0, 1]")
        basis = "checkin_ratio"
    rps = per_second(agents, checkin_ratio, poll_interval)
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
