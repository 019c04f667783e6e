"""Tenant placement: balanced, never split, stable, dedicated shards, listed moves."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.fleetscale.split.plugins.module_utils import placement, spec
from ansible_collections.fleetscale.split.plugins.module_utils.errors import PlanError


def place(tenants, per_db=50_000, **kwargs):
    return placement.place_tenants(spec.check_tenants(tenants), per_db, **kwargs)


def test_largest_first_onto_the_least_loaded_shard():
    result = place([{"name": "acme", "agents": 30_000}, {"name": "globex", "agents": 25_000},
                    {"name": "initech", "agents": 20_000}])
    assert result["placement"] == {"acme": 1, "globex": 2, "initech": 2}
    assert [s["agents"] for s in result["shards"]] == [30_000, 45_000]


def test_weight_counts_as_load():
    result = place([{"name": "heavy", "agents": 20_000, "weight": 2.0}, {"name": "light", "agents": 20_000}])
    # 40,000 + 20,000 weighted agents do not fit one 50,000 shard although 40,000 agents would.
    assert result["shards"][0]["load"] == 40_000
    assert result["placement"] == {"heavy": 1, "light": 2}


def test_a_tenant_too_big_for_a_shard_is_named():
    with pytest.raises(PlanError) as caught:
        place([{"name": "small", "agents": 10}, {"name": "megacorp", "agents": 80_000}])
    assert caught.value.field == "tenants.megacorp.agents"
    assert "megacorp" in str(caught.value)
    assert "dedicated" in caught.value.reason


def test_a_dedicated_tenant_gets_its_own_shard_whatever_its_size():
    result = place([{"name": "megacorp", "agents": 80_000, "dedicated": True}, {"name": "small", "agents": 10},
                    {"name": "vip", "agents": 5, "dedicated": True}])
    by_tenant = result["placement"]
    assert len({by_tenant["megacorp"], by_tenant["small"], by_tenant["vip"]}) == 3
    dedicated = [s for s in result["shards"] if s["dedicated"]]
    assert sorted(s["tenants"][0] for s in dedicated) == ["megacorp", "vip"]
    assert all(len(s["tenants"]) == 1 for s in dedicated)


def test_pins_are_kept_even_when_unbalanced_and_rebalance_lists_every_move():
    tenants = [{"name": "a", "agents": 20_000, "shard": 1}, {"name": "b", "agents": 20_000, "shard": 1},
               {"name": "c", "agents": 20_000}]
    kept = place(tenants)
    assert kept["placement"] == {"a": 1, "b": 1, "c": 2}
    moved = place([dict(t, shard=None) for t in tenants], existing={"a": 1, "b": 1, "c": 1}, rebalance=True)
    # Fresh placement puts a and c together, b alone; the shard holding most of the old
    # shard 1 keeps number 1, so only b moves.
    assert moved["moves"] == [{"tenant": "b", "from": 1, "to": 2}]
    for move in moved["moves"]:
        assert moved["placement"][move["tenant"]] == move["to"]
    assert all(s["load"] <= 50_000 for s in moved["shards"])


def test_rebalance_keeps_shard_numbers_where_tenants_already_are():
    existing = {"big": 2, "small": 2}
    result = place([{"name": "big", "agents": 40_000}, {"name": "small", "agents": 1_000}],
                   existing=existing, rebalance=True)
    assert result["placement"] == {"big": 2, "small": 2}
    assert result["moves"] == []


def test_a_tenant_on_two_shards_is_refused():
    with pytest.raises(PlanError) as caught:
        place([{"name": "acme", "agents": 10, "shard": 2}], existing={"acme": 1})
    assert caught.value.field == "tenants[0].shard"
    assert "one shard" in caught.value.reason


def test_a_dedicated_tenant_pinned_beside_another_is_refused():
    with pytest.raises(PlanError) as caught:
        place([{"name": "vip", "agents": 10, "shard": 1, "dedicated": True}, {"name": "x", "agents": 5, "shard": 1}])
    assert "dedicated tenant vip" in caught.value.reason


TENANTS = st.lists(
    st.tuples(st.integers(min_value=1, max_value=50_000), st.booleans()),
    min_size=1, max_size=60,
).map(lambda rows: [{"name": "t%03d" % i, "agents": agents, "dedicated": dedicated and agents > 40_000}
                    for i, (agents, dedicated) in enumerate(rows)])


@settings(max_examples=150, deadline=None)
@given(TENANTS)
def test_every_tenant_is_placed_exactly_once(tenants):
    result = place(tenants)
    listed = [name for shard in result["shards"] for name in shard["tenants"]]
    assert sorted(listed) == sorted(t["name"] for t in tenants)
    assert set(result["placement"]) == {t["name"] for t in tenants}
    for shard in result["shards"]:
        assert shard["dedicated"] or shard["load"] <= 50_000


@settings(max_examples=150, deadline=None)
@given(TENANTS, TENANTS)
def test_adding_tenants_never_moves_existing_ones(before, added):
    added = [dict(t, name="new-" + t["name"]) for t in added]
    first = place(before)
    second = place(before + added, existing=first["placement"])
    for name, shard in first["placement"].items():
        assert second["placement"][name] == shard
    assert second["moves"] == []
