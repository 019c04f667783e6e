"""The filters: thin wrappers that turn model errors into AnsibleFilterError, and work in templates."""

import json
import pathlib
import subprocess

import pytest
from ansible.errors import AnsibleFilterError
from playbook_json import run_playbook

from ansible_collections.fleetscale.split.plugins.filter import split
from ansible_collections.fleetscale.split.plugins.filter.nodes import FilterModule
from ansible_collections.fleetscale.split.plugins.module_utils import fleet

ROOT = pathlib.Path(__file__).resolve().parents[4]


def test_filter_module_maps_every_name():
    assert set(split.FilterModule().filters()) == {"checkin_rate", "split_plan", "shard_tenants"}


def test_checkin_rate_filter():
    assert split.checkin_rate(100, poll_interval=10)["per_day"] == 864_000


def test_checkin_rate_filter_refuses_a_non_finite_poll_interval():
    with pytest.raises(AnsibleFilterError, match=r"fleetscale.split.checkin_rate: field 'poll_interval': must be "
                                                 r"finite \(got nan\)"):
        split.checkin_rate(100, poll_interval=float("nan"))


def test_split_plan_filter_refuses_with_the_field():
    with pytest.raises(AnsibleFilterError, match=r"fleetscale.split.split_plan: field 'model.checkin_ratio'"):
        split.split_plan({"agents": 10, "model": {"checkin_ratio": 2}})


def test_shard_tenants_filter_refuses_a_non_boolean_rebalance():
    with pytest.raises(AnsibleFilterError, match=r"field 'rebalance'"):
        split.shard_tenants([{"name": "a", "agents": 1}], rebalance="yes")


def test_filters_work_in_a_real_play(tmp_path):
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.debug:\n"
        "        msg: \"{{ {'rate': (100 | fleetscale.split.checkin_rate(poll_interval=10)).per_day,"
        " 'web': ({'agents': 20000} | fleetscale.split.split_plan).tiers.web_agent.nodes,"
        " 'shard': ([{'name': 'a', 'agents': 60000, 'dedicated': true}]"
        " | fleetscale.split.shard_tenants).placement.a} | to_json }}\"\n")
    done, output = run_playbook(["-i", "localhost,", "-c", "local", str(playbook)], home=tmp_path)
    assert done.returncode == 0, done.stderr
    message = output["plays"][0]["tasks"][0]["hosts"]["localhost"]["msg"]
    assert json.loads(message) == {"rate": 864000.0, "web": 2, "shard": 1}


@pytest.mark.parametrize("name", ["checkin_rate", "split_plan", "shard_tenants", "node_addresses"])
def test_ansible_doc_shows_each_filter(name):
    done = subprocess.run([str(ROOT / ".venv" / "bin" / "ansible-doc"), "-t", "filter", "fleetscale.split." + name],
                          capture_output=True, text=True, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    assert "EXAMPLES" in done.stdout
    assert "RETURN VALUES" in done.stdout


def test_next_nodes_filter_names_new_nodes_and_refuses_with_the_filter_name():
    next_nodes = FilterModule().filters()["next_nodes"]
    plan = fleet.build_fleet({"agents": 20_000})["plan"]
    assert [n["name"] for n in next_nodes(plan, "web_agent", 2)] == ["web-agent-03", "web-agent-04"]
    assert [n["name"] for n in next_nodes(plan, "database", shard=1)] == ["db-01-03"]
    with pytest.raises(AnsibleFilterError, match=r"fleetscale\.split\.next_nodes: field 'tier'"):
        next_nodes(plan, "monitor")


NODE_ADDRESSES = FilterModule().filters()["node_addresses"]


def test_node_addresses_come_from_the_plan_else_from_the_facts():
    hostvars = {"p1": {"fleet_address": "10.0.0.5"}, "p2": {"ansible_default_ipv4": {"address": "10.0.0.6"}},
                "p3": {"fleet_address": "10.0.0.7", "ansible_default_ipv4": {"address": "192.0.2.1"}}}
    assert NODE_ADDRESSES(["p2", "p1", "p3"], hostvars) == ["10.0.0.6", "10.0.0.5", "10.0.0.7"]


@pytest.mark.parametrize(("hosts", "hostvars", "words"), [
    (["p1", "lb9"], {"p1": {"fleet_address": "10.0.0.5"}}, "web_allowed_proxies: 'lb9' is not an inventory host"),
    (["p1"], {"p1": {"fleet_address": None, "ansible_default_ipv4": {}}},
     "web_allowed_proxies: host p1 has no fleet_address and no gathered default IPv4 address"),
    ("p1", {"p1": {"fleet_address": "10.0.0.5"}}, "field '_input': must be a list of inventory hosts (got 'p1')"),
])
def test_node_addresses_refuses_a_host_it_cannot_address_naming_it(hosts, hostvars, words):
    with pytest.raises(AnsibleFilterError, match=r"^fleetscale\.split\.node_addresses: ") as caught:
        NODE_ADDRESSES(hosts, hostvars, "web_allowed_proxies")
    assert words in str(caught.value)
