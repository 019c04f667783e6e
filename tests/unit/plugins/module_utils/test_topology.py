"""Host names and addresses: stable growth, uniqueness, explicit hosts against the plan."""

import pytest

from ansible_collections.fleetscale.split.plugins.module_utils import fleet
from ansible_collections.fleetscale.split.plugins.module_utils.errors import PlanError

NETWORK = {"subnet": "10.50.0.0/16", "first_address": {
    "proxy": "10.50.1.10", "web_agent": "10.50.2.10", "web_user": "10.50.3.10",
    "app": "10.50.4.10", "database": "10.50.5.10"}}


def hosts_of(result):
    return {h["name"]: h["vars"]["fleet_address"] for h in result["hosts"]}


def test_growing_from_20000_to_40000_and_beyond_only_adds_hosts():
    before = hosts_of(fleet.build_fleet({"agents": 20_000}, network=NETWORK))
    for agents in (40_000, 120_000, 400_000):
        after = hosts_of(fleet.build_fleet({"agents": agents}, network=NETWORK))
        for name, address in before.items():
            assert after[name] == address
        assert len(after) >= len(before)
        before = after


def test_groups_and_host_variables():
    result = fleet.build_fleet({"agents": 120_000}, network=NETWORK)
    by_name = {h["name"]: h for h in result["hosts"]}
    assert by_name["web-agent-01"]["groups"] == ["web_agent"]
    assert by_name["db-03"]["groups"] == ["database", "db_shard_3"]
    assert by_name["db-03"]["vars"]["fleet_tenants"] == ["tenant-003"]
    assert by_name["app-01"]["vars"]["fleet_app_role"] == "active"
    assert by_name["app-02"]["vars"]["fleet_app_role"] == "standby"
    assert result["parents"]["web_user"] == "web"
    assert result["plan"]["shards"][2]["schema"] == "fleet_shard_3"
    assert result["plan"]["shards"][2]["address"] == "10.50.5.12"


def test_explicit_hosts_fewer_than_n_plus_1_are_refused():
    with pytest.raises(PlanError) as caught:
        fleet.build_fleet({"agents": 120_000}, hosts={"web_agent": [{"name": "w1"}, {"name": "w2"}]})
    assert caught.value.field == "hosts.web_agent"
    assert caught.value.value == 2
    assert "N+1 4 web_agent hosts for 120000 agents" in caught.value.reason


def test_explicit_hosts_replace_generated_ones():
    result = fleet.build_fleet({"agents": 20_000}, hosts={"proxy": [
        {"name": "lb1", "address": "192.0.2.11"}, {"name": "lb2", "address": "192.0.2.12"}]})
    assert result["plan"]["hosts"]["proxy"] == ["lb1", "lb2"]


@pytest.mark.parametrize(("kwargs", "field", "words"), [
    ({"hosts": {"proxy": [{"name": "x", "address": "10.0.0.1"}, {"name": "x", "address": "10.0.0.2"}]}},
     "hosts.proxy[1]", "two hosts named x"),
    ({"hosts": {"proxy": [{"name": "a", "address": "10.0.0.1"}, {"name": "b", "address": "10.0.0.1"}]}},
     "hosts.proxy[1]", "two hosts with address 10.0.0.1"),
    ({"hosts": {"proxy": [{"name": "a", "address": "10.0.0.300"}]}}, "hosts.proxy[0].address", "not an IP"),
    ({"hosts": {"cache": [{"name": "a"}]}}, "hosts.cache", "unknown tier"),
    ({"naming": {"proxy": "lb"}}, "naming.proxy", "{index}"),
    ({"naming": {"proxy": "lb_{index}"}}, "naming.proxy", "not a valid host name"),
    ({"network": {"subnet": "10.0.0.0/33"}}, "network.subnet", "CIDR"),
    ({"network": {"subnet": "10.0.0.0/24", "first_address": {"proxy": "10.1.0.1"}}},
     "network.first_address.proxy", "outside"),
    ({"network": {"subnet": "10.0.0.0/24", "first_address": {"proxy": "10.0.0.10", "web_agent": "10.0.0.11"}}},
     "naming.web_agent", "two hosts with address 10.0.0.11"),
    ({"network": {"subnet": "10.0.0.0/24", "gateway": "10.0.0.1"}}, "network.gateway", "unknown key"),
])
def test_topology_errors_name_field_and_value(kwargs, field, words):
    with pytest.raises(PlanError) as caught:
        fleet.build_fleet({"agents": 20_000}, **kwargs)
    assert caught.value.field == field
    assert words in caught.value.reason
