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
    assert by_name["db-03-02"]["groups"] == ["database", "db_shard_3"]
    assert by_name["db-03-02"]["vars"]["fleet_tenants"] == ["tenant-003"]
    assert by_name["db-03-02"]["vars"]["fleet_address"] == "10.50.5.%d" % (10 + 2 * 32 + 2)
    assert by_name["app-01"]["vars"]["fleet_app_role"] == "active"
    assert by_name["app-02"]["vars"]["fleet_app_role"] == "standby"
    assert result["parents"]["web_user"] == "web"
    assert result["plan"]["shards"][2]["schema"] == "fleet_shard_3"
    assert result["plan"]["shards"][2]["address"] == "10.50.5.%d" % (10 + 2 * 32)


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
    ({"naming": {"database": "db-{index:02d}"}}, "naming.database", "{shard} and {index}"),
    ({"hosts": {"database": [{"name": "d1", "shard": 1, "role": "primary"},
                             {"name": "d2", "shard": 1, "role": "primary"}]}},
     "hosts.database[1].role", "shard 1 already has primary d1"),
    ({"hosts": {"database": [{"name": "d1", "shard": 1}, {"name": "d2", "shard": 1}]}},
     "hosts.database", "shard 1 has no primary"),
    ({"hosts": {"database": [{"name": "d1", "shard": 1, "role": "leader"}]}},
     "hosts.database[0].role", "must be one of primary, replica"),
    ({"hosts": {"database": [{"name": "d1", "shard": 1, "role": "primary"}]}},
     "hosts.database", "a primary and 1 replica(s) (model.database_replicas) per shard; shard 1 lists 1"),
    ({"hosts": {"proxy": [{"name": "p1", "role": "primary"}, {"name": "p2"}]}},
     "hosts.proxy[0].role", "unknown key"),
    ({"hosts": {"database": [{"name": "d1", "shard": 1, "role": "primary", "replica_of": "d2"},
                             {"name": "d2", "shard": 1}]}},
     "hosts.database[0].replica_of", "only a host with role: replica"),
])
def test_topology_errors_name_field_and_value(kwargs, field, words):
    with pytest.raises(PlanError) as caught:
        fleet.build_fleet({"agents": 20_000}, **kwargs)
    assert caught.value.field == field
    assert words in caught.value.reason


def test_a_replica_following_another_shards_primary_is_refused():
    spec = {"tenants": [{"name": "a", "agents": 40_000}, {"name": "b", "agents": 40_000}]}
    hosts = {"database": [{"name": "a1", "shard": 1, "role": "primary"}, {"name": "b1", "shard": 2, "role": "primary"},
                          {"name": "a2", "shard": 1, "role": "replica", "replica_of": "b1"},
                          {"name": "b2", "shard": 2, "role": "replica", "replica_of": "b1"}]}
    with pytest.raises(PlanError) as caught:
        fleet.build_fleet(spec, hosts=hosts)
    assert caught.value.field == "hosts.database[2].replica_of"
    assert caught.value.value == "b1"
    assert "shard 1's primary is a1" in caught.value.reason


def test_each_shard_is_a_primary_and_its_replicas_with_stable_names():
    one = fleet.build_fleet({"agents": 120_000, "model": {"database_replicas": 1}}, network=NETWORK)
    two = fleet.build_fleet({"agents": 240_000, "model": {"database_replicas": 2}}, network=NETWORK)
    before, after = hosts_of(one), hosts_of(two)
    # More shards and more replicas: every existing host keeps its name and address.
    assert {name: after[name] for name in before} == before
    roles = {h["name"]: h["vars"]["fleet_database_role"] for h in two["hosts"] if h["vars"]["fleet_role"] == "database"}
    assert [roles["db-01-%02d" % i] for i in (1, 2, 3)] == ["primary", "replica", "replica"]
    shard = two["plan"]["shards"][0]
    assert shard["host"] == "db-01-01" and shard["members"] == ["db-01-01", "db-01-02", "db-01-03"]
    server_ids = [h["vars"]["fleet_database_server_id"] for h in two["hosts"] if h["vars"]["fleet_role"] == "database"]
    assert len(set(server_ids)) == len(server_ids)
    assert one["plan"]["warnings"] == []


def test_no_replica_only_when_the_spec_says_so_and_then_with_a_warning():
    result = fleet.build_fleet({"agents": 20_000, "model": {"database_replicas": 0}}, network=NETWORK)
    assert result["plan"]["hosts"]["database"] == ["db-01-01"]
    assert result["plan"]["warnings"] == [
        "database: no replica (model.database_replicas is 0): losing a shard's only node loses its data"]


def test_explicit_shard_with_a_primary_and_a_replica():
    hosts = {"database": [{"name": "d2", "shard": 1}, {"name": "d1", "shard": 1, "role": "primary"}]}
    result = fleet.build_fleet({"agents": 20_000}, hosts=hosts)
    by_name = {h["name"]: h["vars"] for h in result["hosts"]}
    assert by_name["d1"]["fleet_database_role"] == "primary"
    assert by_name["d2"]["fleet_database_role"] == "replica"
    assert by_name["d2"]["fleet_database_primary"] == "d1"
    assert result["plan"]["shards"][0]["writer_address"] is None


def refused(**kwargs):
    with pytest.raises(PlanError) as caught:
        fleet.build_fleet({"agents": 20_000}, **kwargs)
    return caught.value


def test_host_names_are_compared_without_regard_to_case_naming_both_positions():
    error = refused(hosts={"proxy": [{"name": "Web1", "address": "10.0.0.1"}, {"name": "web1", "address": "10.0.0.2"}]})
    assert (error.field, error.value) == ("hosts.proxy[1]", "web1")
    assert "hosts.proxy[0] is Web1, hosts.proxy[1] is web1" in error.reason
    # A generated name against another tier's generated name, too.
    error = refused(naming={"web_agent": "PROXY-{index:02d}"})
    assert (error.field, error.value) == ("naming.web_agent", "PROXY-01")
    assert "naming.proxy node 1 is proxy-01, naming.web_agent node 1 is PROXY-01" in error.reason


@pytest.mark.parametrize(("kwargs", "field", "value"), [
    # '$' of re.match accepted a name ending in a newline.
    ({"hosts": {"proxy": [{"name": "web1\n"}, {"name": "web2"}]}}, "hosts.proxy[0].name", "web1\n"),
    ({"hosts": {"proxy": ["web1", "web2\n"]}}, "hosts.proxy[1].name", "web2\n"),
    ({"naming": {"proxy": "lb-{index}\n"}}, "naming.proxy", "lb-{index}\n"),
    # A trailing dot would make web1. a second host beside web1.
    ({"hosts": {"proxy": [{"name": "web1"}, {"name": "web1."}]}}, "hosts.proxy[1].name", "web1."),
])
def test_a_host_name_ending_in_a_newline_or_a_dot_is_refused(kwargs, field, value):
    error = refused(**kwargs)
    assert (error.field, error.value) == (field, value)
    assert "not a valid host name" in error.reason or "must be a valid host name" in error.reason


@pytest.mark.parametrize(("kwargs", "field", "value"), [
    ({"hosts": {"proxy": [{"name": "a", "address": "::ffff:10.0.0.5"}, {"name": "b", "address": "10.0.0.6"}]}},
     "hosts.proxy[0].address", "::ffff:10.0.0.5"),
    ({"network": {"subnet": "10.0.0.0/24", "first_address": {"proxy": "::ffff:10.0.0.10"}}},
     "network.first_address.proxy", "::ffff:10.0.0.10"),
    ({"network": {"subnet": "::ffff:10.0.0.0/120", "first_address": {"proxy": "::ffff:10.0.0.10"}}},
     "network.subnet", "::ffff:10.0.0.0/120"),
])
def test_an_ipv4_mapped_address_is_refused_for_its_ipv4_form(kwargs, field, value):
    error = refused(**kwargs)
    assert (error.field, error.value) == (field, value)
    assert "IPv4-mapped" in error.reason and "use the IPv4" in error.reason


def test_a_mapped_address_and_its_ipv4_form_are_never_two_hosts():
    error = refused(hosts={"proxy": [{"name": "a", "address": "10.0.0.5"},
                                     {"name": "b", "address": "::ffff:10.0.0.5"}]})
    assert (error.field, error.value) == ("hosts.proxy[1].address", "::ffff:10.0.0.5")


def test_two_spellings_of_one_ipv6_address_are_one_address():
    error = refused(hosts={"proxy": [{"name": "a", "address": "2001:db8::1"},
                                     {"name": "b", "address": "2001:DB8:0::1"}]})
    assert (error.field, error.value) == ("hosts.proxy[1]", "2001:db8::1")
    assert "two hosts with address 2001:db8::1: a (hosts.proxy[0]) and b (hosts.proxy[1])" in error.reason


TWO_SHARDS = {"tenants": [{"name": "a", "agents": 40_000}, {"name": "b", "agents": 40_000}]}


@pytest.mark.parametrize(("network", "kwargs", "field", "value", "words"), [
    ({"subnet": "10.0.0.0/24", "first_address": {"web_agent": "10.0.0.0"}}, {},
     "network.first_address.web_agent", "10.0.0.0", "is the network address of network.subnet 10.0.0.0/24"),
    ({"subnet": "10.0.0.0/24", "first_address": {"web_agent": "10.0.0.255"}}, {},
     "network.first_address.web_agent", "10.0.0.255", "is the broadcast address of network.subnet 10.0.0.0/24"),
    ({"subnet": "10.0.0.0/24", "first_address": {"web_agent": "10.0.0.254"}}, {},
     "network.first_address.web_agent", "10.0.0.254",
     "node 2 would get 10.0.0.255, the broadcast address of network.subnet 10.0.0.0/24"),
    ({"subnet": "10.0.0.0/24", "first_address": {"database": "10.0.0.253"}}, {},
     "network.first_address.database", "10.0.0.253",
     "shard 1 node 2 would get 10.0.0.255, the broadcast address"),
    ({"subnet": "10.0.0.0/24", "first_address": {"database": "10.0.0.223"}}, {"spec": TWO_SHARDS},
     "network.first_address.database", "10.0.0.223",
     "shard 2 writer address would get 10.0.0.255, the broadcast address"),
    ({"subnet": "10.0.0.0/24", "first_address": {"database": "10.0.0.224"}}, {"spec": TWO_SHARDS},
     "network.first_address.database", "10.0.0.224", "shard 2 writer address would get 10.0.1.0, outside"),
    ({"subnet": "10.0.0.0/24", "first_address": {"web_agent": "10.0.0.250"}},
     {"retired": {"web_agent": [1, 2, 3, 4]}},
     "network.first_address.web_agent", "10.0.0.250", "node 6 would get 10.0.0.255, the broadcast address"),
    # The last addresses of the address space: past them is refused, not an AddressValueError.
    ({"subnet": "255.255.255.254/31", "first_address": {"web_agent": "255.255.255.254"}},
     {"retired": {"web_agent": [1]}}, "network.first_address.web_agent", "255.255.255.254",
     "node 3 would get an address past the end of the address space"),
])
def test_no_generated_address_is_the_network_or_broadcast_address_or_outside(network, kwargs, field, value, words):
    kwargs = dict(kwargs)
    spec = kwargs.pop("spec", {"agents": 20_000})
    with pytest.raises(PlanError) as caught:
        fleet.build_fleet(spec, network=network, **kwargs)
    assert (caught.value.field, caught.value.value) == (field, value)
    assert words in caught.value.reason


@pytest.mark.parametrize("subnet", ["10.0.0.0/31", "10.0.0.0/32"])
def test_a_31_or_32_subnet_uses_every_address(subnet):
    """RFC 3021: a /31 has no network or broadcast address (a /32 is one host)."""
    network = {"subnet": subnet, "first_address": {"web_user": "10.0.0.0"}}
    result = fleet.build_fleet({"agents": 20_000}, network=network)
    assert hosts_of(result)["web-user-01"] == "10.0.0.0"


@pytest.mark.parametrize(("naming", "retired", "words"), [
    # Valid for node 1 (a 63-character label), one character too long from node 100 on.
    ({"web_agent": "w" * 61 + "{index:02d}"}, {"web_agent": list(range(1, 99))}, "for node 100, not a valid host name"),
    ({"web_agent": "web-{index[0]}"}, None, "is not a valid pattern"),
    ({"web_agent": "web-{index.bits}"}, None, "is not a valid pattern"),
])
def test_a_naming_pattern_is_checked_for_every_node_it_names(naming, retired, words):
    error = refused(naming=naming, retired=retired)
    assert (error.field, error.value) == ("naming.web_agent", naming["web_agent"])
    assert words in error.reason
