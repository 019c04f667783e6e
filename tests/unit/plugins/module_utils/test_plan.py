"""The split plan: sizing tables, N+1 and monotonicity properties, validation rules."""

import math

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from ansible_collections.fleetscale.split.plugins.module_utils import plan
from ansible_collections.fleetscale.split.plugins.module_utils.errors import PlanError

STATELESS = ("proxy", "web_agent", "web_user")


# Expected node counts worked by hand from the model's defaults: 30 % of agents a minute,
# 400 check-ins/s per agent web node planned at 50 %, then N+1; proxies 10,000 req/s;
# 50,000 agents per database.
@pytest.mark.parametrize(("agents", "per_minute", "proxy", "web_agent", "web_user", "app", "database"), [
    (5_000, 1_500, 2, 2, 1, 2, 1),
    (20_000, 6_000, 2, 2, 1, 2, 1),
    (50_000, 15_000, 2, 3, 1, 2, 1),
    (100_000, 30_000, 2, 4, 1, 2, 2),
    (1_000_000, 300_000, 3, 26, 1, 2, 20),
])
def test_sizing_table(agents, per_minute, proxy, web_agent, web_user, app, database):
    result = plan.build_plan({"agents": agents})
    assert result["rate"]["per_minute"] == per_minute
    nodes = {name: tier["nodes"] for name, tier in result["tiers"].items()}
    # Each shard is a primary and one replica by default.
    assert nodes == {"proxy": proxy, "web_agent": web_agent, "web_user": web_user, "app": app,
                     "database": 2 * database}
    assert result["tiers"]["database"]["shards"] == database
    assert result["warnings"] == []


def test_published_split_two_agent_nodes_carry_20000_to_40000_agents():
    assert plan.build_plan({"agents": 20_000})["tiers"]["web_agent"]["nodes"] == 2
    assert plan.build_plan({"agents": 40_000})["tiers"]["web_agent"]["nodes"] == 2
    assert plan.build_plan({"agents": 40_001})["tiers"]["web_agent"]["nodes"] == 3


def test_headroom_is_the_agents_before_the_next_node():
    result = plan.build_plan({"agents": 20_000})
    headroom = result["tiers"]["web_agent"]["headroom_agents"]
    assert headroom == 20_000
    at_edge = plan.build_plan({"agents": 20_000 + headroom})["tiers"]["web_agent"]["nodes"]
    past_edge = plan.build_plan({"agents": 20_000 + headroom + 1})["tiers"]["web_agent"]["nodes"]
    assert (at_edge, past_edge) == (2, 3)


def test_measured_capacity_changes_the_plan():
    default = plan.build_plan({"agents": 120_000})["tiers"]["web_agent"]["nodes"]
    measured = plan.build_plan({"agents": 120_000, "model": {"web_agent_capacity_rps": 1000}})
    assert default == 4
    assert measured["tiers"]["web_agent"]["nodes"] == 3


def test_user_tier_falls_back_onto_agent_nodes():
    tier = plan.build_plan({"agents": 20_000})["tiers"]["web_user"]
    assert tier["nodes"] == 1
    assert tier["fallback"] == "web_agent"
    # 100 agent + 15 user requests/s on two 400/s agent nodes
    assert tier["utilisation_after_loss"] == pytest.approx(115 / 800)


def test_user_tier_needing_several_nodes_is_n_plus_1():
    busy_users = {"agents": 5_000, "model": {"concurrent_users": 4_000, "user_request_rate": 0.5}}
    tier = plan.build_plan(busy_users)["tiers"]["web_user"]
    # 2,000 user + 5 integration requests/s at 50 % of 100/s
    assert tier["active_needed"] == 41
    assert tier["nodes"] == 42
    assert tier["fallback"] is None
    assert tier["utilisation_after_loss"] <= 1.0


def test_agent_nodes_grow_to_carry_a_lone_user_nodes_fallback():
    small_agent_nodes = {"agents": 1_000, "model": {"web_agent_capacity_rps": 10, "web_user_capacity_rps": 100,
                                                     "concurrent_users": 100, "user_request_rate": 0.4}}
    result = plan.build_plan(small_agent_nodes)
    # 5 agent + 45 user requests/s must fit 10/s nodes at 100 % when the user node is lost
    assert result["tiers"]["web_user"]["nodes"] == 1
    assert result["tiers"]["web_agent"]["nodes"] == 5
    assert result["tiers"]["web_user"]["utilisation_after_loss"] == pytest.approx(1.0)


def test_app_tier_is_one_active_singleton_with_a_standby():
    tier = plan.build_plan({"agents": 1_000_000})["tiers"]["app"]
    assert (tier["active"], tier["standbys"], tier["nodes"]) == (1, 1, 2)


def test_redundancy_off_is_accepted_with_a_warning():
    result = plan.build_plan({"agents": 20_000, "model": {"redundancy": False}})
    assert result["tiers"]["web_agent"]["nodes"] == 1
    assert any("redundancy is off" in w for w in result["warnings"])


def test_no_standby_warns():
    result = plan.build_plan({"agents": 20_000, "model": {"app_standbys": 0}})
    assert result["tiers"]["app"]["nodes"] == 1
    assert any("no standby" in w for w in result["warnings"])


def test_synthetic_tenants_fit_their_shards():
    result = plan.build_plan({"agents": 120_000})
    assert [t["name"] for t in result["tenants"]] == ["tenant-001", "tenant-002", "tenant-003"]
    assert [s["agents"] for s in result["shards"]] == [40_000, 40_000, 40_000]


def _plan(agents, model):
    """The plan, or None when it is refused for its size (the models below reach millions of nodes)."""
    try:
        return plan.build_plan({"agents": agents, "model": dict(model, max_nodes_per_tier=100_000)})
    except PlanError as refused:
        assert refused.field == "model.max_nodes_per_tier", refused
        return None


MODELS = st.fixed_dictionaries({
    "checkin_ratio": st.floats(min_value=0.01, max_value=1.0),
    "target_utilisation": st.floats(min_value=0.05, max_value=1.0),
    "web_agent_capacity_rps": st.floats(min_value=1, max_value=5_000),
    "concurrent_users": st.integers(min_value=0, max_value=5_000),
    "proxy_capacity_rps": st.floats(min_value=100, max_value=50_000),
})


@settings(max_examples=200, deadline=None)
@given(MODELS, st.integers(min_value=1, max_value=2_000_000), st.integers(min_value=0, max_value=2_000_000))
def test_more_agents_never_means_fewer_nodes(model, agents, more):
    small = _plan(agents, model)
    large = _plan(agents + more, model)
    if small is None:
        assert large is None, "a plan refused for its size is refused for more agents too"
        return
    assume(large is not None)
    for name in ("proxy", "web_agent", "web_user", "app", "database"):
        assert large["tiers"][name]["nodes"] >= small["tiers"][name]["nodes"], name


@settings(max_examples=200, deadline=None)
@given(MODELS, st.integers(min_value=1, max_value=5_000_000))
# A target with more than 6 significant digits: the plan's utilisation, rounded to 6 places, sits a hair
# from it (66,234 agent web nodes; the same figures at a capacity of 1.098 were refused for size).
@example({"checkin_ratio": 1.0, "target_utilisation": 0.07111798313096768, "web_agent_capacity_rps": 4.390625,
          "concurrent_users": 0, "proxy_capacity_rps": 100.0}, 1_240_882)
def test_losing_any_one_node_keeps_utilisation_at_or_under_one(model, agents):
    result = _plan(agents, model)
    assume(result is not None)
    for name in STATELESS:
        tier = result["tiers"][name]
        assert tier["utilisation_after_loss"] is not None, name
        # The plan reports utilisation rounded to 6 places: it may read up to half a millionth above the target.
        assert tier["utilisation_after_loss"] <= 1.0 + 5e-7, (name, tier)
        assert tier["utilisation"] <= model["target_utilisation"] + 5e-7 or name == "web_user"


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=1, max_value=10_000_000))
def test_database_shards_follow_agents_per_db(agents):
    result = plan.build_plan({"agents": agents})
    assert result["tiers"]["database"]["shards"] == math.ceil(agents / 50_000)
    assert all(s["agents"] <= 50_000 for s in result["shards"])


@pytest.mark.parametrize(("spec", "field", "words"), [
    ({"agents": 10, "colour": "red"}, "colour", "unknown key"),
    ({"agents": 10, "model": {"checkin_rate": 0.3}}, "model.checkin_rate", "unknown key"),
    ({"agents": "many"}, "agents", "whole number"),
    ({"agents": 0}, "agents", ">= 1"),
    ({"agents": -5}, "agents", ">= 1"),
    ({"agents": 10**12}, "agents", "<= 100000000"),
    ({"agents": 10, "model": {"checkin_ratio": 1.5}}, "model.checkin_ratio", "(0.0, 1.0]"),
    ({"agents": 10, "model": {"checkin_ratio": 0}}, "model.checkin_ratio", "(0.0, 1.0]"),
    ({"agents": 10, "model": {"target_utilisation": 1.2}}, "model.target_utilisation", "(0.0, 1.0]"),
    ({"agents": 10, "model": {"target_utilisation": -0.5}}, "model.target_utilisation", "(0.0, 1.0]"),
    ({"agents": 10, "model": {"web_agent_capacity_rps": 0}}, "model.web_agent_capacity_rps", "(0.0, 10000000]"),
    ({"agents": 10, "model": {"web_agent_capacity_rps": "fast"}}, "model.web_agent_capacity_rps", "number"),
    ({"agents": 10, "model": {"redundancy": "no"}}, "model.redundancy", "true or false"),
    ({"agents": 10, "model": {"app_active": 2}}, "model.app_active", "never active-active"),
    ({"agents": 10, "model": {"checkin_ratio": 0.3, "poll_interval": 10}}, "model.poll_interval", "not both"),
    ({"agents": 10, "model": {"agents_per_db": 2.5}}, "model.agents_per_db", "whole number"),
    ({"agents": 10, "model": {"concurrent_users": float("nan")}}, "model.concurrent_users", "whole number"),
    ({"agents": 10, "model": {"user_request_rate": float("inf")}}, "model.user_request_rate", "finite"),
    ({}, "agents", "give agents"),
    ({"tenants": []}, "tenants", "at least one"),
    ({"tenants": [{"name": "a", "agents": 5}, {"name": "a", "agents": 6}]}, "tenants[1].name", "duplicate"),
    ({"tenants": [{"name": "a b", "agents": 5}]}, "tenants[0].name", "letters"),
    ({"tenants": [{"name": "a"}]}, "tenants[0].agents", "required"),
    ({"tenants": [{"name": "a", "agents": 5, "weight": 0}]}, "tenants[0].weight", "(0.0, 1000.0]"),
    ({"tenants": [{"name": "a", "agents": 5, "region": "eu"}]}, "tenants[0].region", "unknown key"),
    ({"tenants": [{"name": "a", "agents": 5}], "agents": 6}, "agents", "differs"),
    ({"agents": 5, "tenant_count": 6}, "tenant_count", "more tenants than agents"),
    ({"tenants": [{"name": "huge", "agents": 60_000}]}, "tenants.huge.agents", "dedicated"),
    ({"agents": 10, "model": {"poll_interval": 0.001}}, "model.poll_interval", ">= 1.0"),
    # '$' would let a name end in a newline: "acme\n" beside "acme".
    ({"tenants": [{"name": "acme\n", "agents": 5}]}, "tenants[0].name", "letters"),
    ({"agents": True}, "agents", "whole number"),
    # A capacity or utilisation off by a factor plans hundreds of thousands of hosts.
    ({"agents": 20_000, "model": {"web_agent_capacity_rps": 0.001}}, "model.max_nodes_per_tier",
     "the web_agent tier would have 200001 nodes"),
    ({"agents": 20_000, "model": {"target_utilisation": 0.0001}}, "model.max_nodes_per_tier", "web_agent tier"),
    ({"agents": 20_000, "model": {"agents_per_db": 1}}, "model.max_nodes_per_tier", "the database tier"),
    ({"tenants": [{"name": "a", "agents": 5, "dedicated": True}] + [
        {"name": "t%d" % n, "agents": 5, "dedicated": True} for n in range(600)]},
     "model.max_nodes_per_tier", "the database tier would have 1202 nodes"),
    # A pin builds every shard below it: bounded by what the plan can ever need.
    ({"tenants": [{"name": "a", "agents": 5, "shard": 10_000}]}, "tenants[0].shard", "beyond the 2 shards"),
    ({"tenants": [{"name": "a", "agents": 5, "shard": 4}, {"name": "b", "agents": 5}]}, "tenants[0].shard",
     "beyond the 3 shards"),
])
def test_each_validation_rule_names_field_and_value(spec, field, words):
    with pytest.raises(PlanError) as caught:
        plan.build_plan(spec)
    assert caught.value.field == field
    assert words in caught.value.reason
    assert "field '%s'" % field in str(caught.value)
    assert "(got " in str(caught.value)


def test_a_pin_to_a_shard_the_plan_can_need_is_kept():
    result = plan.build_plan({"tenants": [{"name": "a", "agents": 5, "shard": 2}, {"name": "b", "agents": 5}]})
    assert {t["name"]: t["shard"] for t in result["tenants"]} == {"a": 2, "b": 1}


def test_a_larger_plan_is_accepted_once_max_nodes_per_tier_confirms_it():
    model = {"web_agent_capacity_rps": 0.01, "max_nodes_per_tier": 100_000}
    result = plan.build_plan({"agents": 20_000, "model": model})
    assert result["tiers"]["web_agent"]["nodes"] == 20_001


def test_a_dedicated_tenant_above_a_shards_size_is_planned_with_a_warning():
    result = plan.build_plan({"tenants": [{"name": "mega", "agents": 200_000, "dedicated": True}]})
    assert result["shards"][0]["utilisation"] == 4.0
    assert any("dedicated shard 1 (tenant mega) is planned at 400 %" in w for w in result["warnings"])


def test_a_dedicated_tenant_within_a_shard_gets_no_capacity_warning():
    result = plan.build_plan({"tenants": [{"name": "big", "agents": 40_000, "dedicated": True}]})
    assert not any("% of agents_per_db" in w for w in result["warnings"])


def test_an_integer_too_long_to_print_is_named_by_its_size():
    with pytest.raises(PlanError) as caught:
        plan.build_plan({"agents": 10 ** 5000})
    assert str(caught.value) == "field 'agents': must be <= 100000000 (got an integer of 16610 bits)"
