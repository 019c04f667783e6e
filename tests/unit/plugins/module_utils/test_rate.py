"""Check-in rates against the figures in the source stories."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.fleetscale.split.plugins.module_utils import rate
from ansible_collections.fleetscale.split.plugins.module_utils.errors import PlanError


def test_altiwi_hundred_devices_every_ten_seconds_make_864000_a_day():
    result = rate.checkin_rate(100, poll_interval=10)
    assert result["per_second"] == 10
    assert result["per_day"] == 864_000
    # "over 25 million requests a month"
    assert result["per_month"] == 25_920_000
    assert result["basis"] == "poll_interval"


def test_automate_published_example_is_a_33_percent_ratio():
    assert rate.checkin_rate(20_000, checkin_ratio=0.33)["per_minute"] == 6_600


def test_default_ratio_is_the_automate_planning_figure():
    result = rate.checkin_rate(20_000)
    assert result["checkin_ratio"] == 0.30
    assert result["per_minute"] == 6_000
    assert result["per_second"] == 100


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"agents": -1}, "agents"),
    ({"agents": True}, "agents"),
    ({"agents": 10, "checkin_ratio": 0}, "checkin_ratio"),
    ({"agents": 10, "checkin_ratio": 1.01}, "checkin_ratio"),
    ({"agents": 10, "poll_interval": 0}, "poll_interval"),
])
def test_bad_input_names_the_field(kwargs, field):
    with pytest.raises(PlanError) as caught:
        rate.checkin_rate(**kwargs)
    assert caught.value.field == field


@pytest.mark.parametrize(("kwargs", "field", "value"), [
    # NaN passed `poll_interval <= 0` and gave NaN rates; an infinite interval gave a rate of 0.
    ({"poll_interval": float("nan")}, "poll_interval", "nan"),
    ({"poll_interval": float("inf")}, "poll_interval", "inf"),
    ({"poll_interval": float("-inf")}, "poll_interval", "-inf"),
    ({"poll_interval": True}, "poll_interval", "True"),
    ({"checkin_ratio": float("nan")}, "checkin_ratio", "nan"),
    ({"checkin_ratio": float("inf")}, "checkin_ratio", "inf"),
    ({"checkin_ratio": True}, "checkin_ratio", "True"),
    # Finite inputs whose rate overflows: refused, never an infinite rate or an OverflowError.
    ({"poll_interval": 1e-320}, "poll_interval", "1e-320"),
    ({"agents": 10 ** 400, "poll_interval": 10}, "agents", repr(10 ** 400)),
])
def test_non_finite_and_boolean_numbers_are_refused_naming_field_and_value(kwargs, field, value):
    with pytest.raises(PlanError) as caught:
        rate.checkin_rate(**dict({"agents": 10}, **kwargs))
    assert caught.value.field == field
    assert repr(caught.value.value) == value


@given(st.floats(min_value=0.01, max_value=100_000), st.floats(min_value=0.01, max_value=1.0))
def test_agents_at_is_the_largest_fleet_within_a_rate(limit, ratio):
    agents = rate.agents_at(limit, checkin_ratio=ratio)
    assert rate.per_second(agents, checkin_ratio=ratio) <= limit * (1 + 1e-9)
    assert rate.per_second(agents + 1, checkin_ratio=ratio) > limit * (1 - 1e-9)


@given(st.floats(min_value=0.01, max_value=100_000), st.floats(min_value=0.5, max_value=3600))
def test_agents_at_inverts_a_poll_interval(limit, interval):
    agents = rate.agents_at(limit, poll_interval=interval)
    assert rate.per_second(agents, poll_interval=interval) <= limit * (1 + 1e-9)
    assert rate.per_second(agents + 1, poll_interval=interval) > limit * (1 - 1e-9)
