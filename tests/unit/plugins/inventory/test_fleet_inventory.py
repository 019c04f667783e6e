"""The fleet inventory plugin through the real ansible-inventory command."""

import itertools
import json
import os
import pathlib
import subprocess

import pytest

from ansible_collections.fleetscale.split.plugins.inventory.fleet import InventoryModule

ROOT = pathlib.Path(__file__).resolve().parents[4]
FIXTURES = pathlib.Path(__file__).parent / "fixtures"


def inventory(source, *args):
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".build" / "collections"))
    return subprocess.run([str(ROOT / ".venv" / "bin" / "ansible-inventory"), "-i", str(source), *args],
                          capture_output=True, text=True, cwd=ROOT, env=env, check=False)


def plain(value):
    """ansible-inventory marks strings from inventory plugins as untrusted for templating."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def listed(source):
    done = inventory(source, "--list")
    assert done.returncode == 0, done.stderr
    return plain(json.loads(done.stdout))


def test_lab_spec_builds_the_published_split(tmp_path):
    # A copy without the lab's local state (measured.yml, nodes.yml written by its playbooks).
    spec = tmp_path / "lab.fleet.yml"
    spec.write_text((ROOT / "inventories" / "lab" / "lab.fleet.yml").read_text())
    data = listed(spec)
    assert data["proxy"]["hosts"] == ["proxy-01", "proxy-02"]
    assert data["web_agent"]["hosts"] == ["web-agent-01", "web-agent-02"]
    assert data["web_user"]["hosts"] == ["web-user-01"]
    assert data["app"]["hosts"] == ["app-01", "app-02"]
    assert data["db_shard_1"]["hosts"] == ["db-01-01", "db-01-02"]
    assert sorted(data["web"]["children"]) == ["web_agent", "web_user"]
    assert data["database"]["children"] == ["db_shard_1"]
    hostvars = data["_meta"]["hostvars"]
    assert hostvars["web-agent-02"]["fleet_address"] == "172.28.2.11"
    assert hostvars["web-agent-02"]["ansible_connection"] == "community.docker.docker"
    assert hostvars["app-01"]["fleet_app_role"] == "active"
    assert hostvars["db-01-01"]["fleet_tenants"] == ["tenant-001", "tenant-002", "tenant-003", "tenant-004"]
    assert hostvars["db-01-01"]["fleet_address"] == "172.28.5.11"
    assert [hostvars[h]["fleet_database_role"] for h in ("db-01-01", "db-01-02")] == ["primary", "replica"]
    assert {hostvars[h]["fleet_database_primary"] for h in ("db-01-01", "db-01-02")} == {"db-01-01"}
    plan = hostvars["db-01-01"]["fleet_plan"]
    assert plan["rate"]["per_minute"] == 6000
    # Clients reach the shard through its writer address, the first of the shard's block.
    assert plan["shards"][0]["address"] == plan["shards"][0]["writer_address"] == "172.28.5.10"
    assert plan["shards"][0]["members"] == ["db-01-01", "db-01-02"]


def test_example_spec_with_existing_hosts():
    data = listed(ROOT / "inventories" / "example" / "production.fleet.yml")
    assert len(data["web_agent"]["hosts"]) == 5
    assert data["db_shard_1"]["hosts"] == ["mysql-megacorp-a", "mysql-megacorp-b"]
    hostvars = data["_meta"]["hostvars"]
    assert hostvars["mysql-megacorp-b"]["fleet_tenants"] == ["megacorp"]
    assert hostvars["mysql-megacorp-b"]["fleet_database_role"] == "replica"
    assert hostvars["mysql-shared-a1"]["fleet_tenants"][0] == "acme"
    assert len(data["role_database"]["hosts"]) == 6
    # No writer address without a network block: clients reach the primary itself.
    assert hostvars["mysql-shared-a2"]["fleet_plan"]["shards"][1]["address"] == "10.20.4.12"


def test_constructable_compose_groups_and_keyed_groups():
    data = listed(FIXTURES / "compose.fleet.yml")
    hostvars = data["_meta"]["hostvars"]
    assert data["web_agent"]["hosts"] == ["aw1", "aw2", "aw3"]
    assert hostvars["aw2"]["ansible_host"] == "10.9.2.2"
    assert hostvars["db-02-01"]["tenants_count"] == 2
    assert data["hot"]["hosts"] == ["db-02-01", "db-02-02"]
    assert data["role_web_agent"]["hosts"] == ["aw1", "aw2", "aw3"]


def test_host_query():
    done = inventory(ROOT / "inventories" / "lab" / "lab.fleet.yml", "--host", "db-01-02")
    assert done.returncode == 0, done.stderr
    assert plain(json.loads(done.stdout))["fleet_shard"] == 1
    assert plain(json.loads(done.stdout))["fleet_database_server_id"] == 1002


def test_graph_query():
    done = inventory(ROOT / "inventories" / "lab" / "lab.fleet.yml", "--graph", "database")
    assert done.returncode == 0, done.stderr
    assert "@db_shard_1" in done.stdout
    assert "db-01-01" in done.stdout


def test_measured_capacity_overrides_the_default():
    hostvars = listed(FIXTURES / "measured.fleet.yml")["_meta"]["hostvars"]
    assert hostvars["web-agent-01"]["fleet_capacity_rps"] == 1000
    assert hostvars["web-agent-01"]["fleet_plan"]["tiers"]["web_agent"]["nodes"] == 3


def test_growth_keeps_every_name_and_address(tmp_path):
    network = ("network:\n  subnet: 172.28.0.0/16\n  first_address:\n    proxy: 172.28.1.10\n"
               "    web_agent: 172.28.2.10\n    web_user: 172.28.3.10\n    app: 172.28.4.10\n"
               "    database: 172.28.5.10\n")
    addresses = []
    for agents in (20_000, 40_000, 200_000):
        spec = tmp_path / ("g%d.fleet.yml" % agents)
        spec.write_text("plugin: fleetscale.split.fleet\nagents: %d\n%s" % (agents, network))
        hostvars = listed(spec)["_meta"]["hostvars"]
        addresses.append({name: v["fleet_address"] for name, v in hostvars.items()})
    for smaller, larger in itertools.pairwise(addresses):
        assert {k: larger[k] for k in smaller} == smaller
    assert len(addresses[2]) > len(addresses[0])


SPEC = "plugin: fleetscale.split.fleet\n"


@pytest.mark.parametrize(("body", "field", "value"), [
    ("agents: 20000\ncolour: blue\n", "colour", "'blue'"),
    ("agents: 20000\nmodel:\n  checkin_ratio: 1.5\n", "model.checkin_ratio", "1.5"),
    ("agents: 20000\nmodel:\n  target_utilisation: 0\n", "model.target_utilisation", "0"),
    ("agents: 0\n", "agents", "0"),
    ("agents: 20000\nmodel:\n  web_agent_capacity_rps: -3\n", "model.web_agent_capacity_rps", "-3"),
    ("agents: 20000\nmodel:\n  app_active: 2\n", "model.app_active", "2"),
    ("agents: 20000\nmodel:\n  speed: 3\n", "model.speed", "3"),
    ("tenants:\n  - {name: a, agents: 5}\n  - {name: a, agents: 7}\n", "tenants[1].name", "'a'"),
    ("tenants:\n  - {name: a, agents: 5, shard: 0}\n", "tenants[0].shard", "0"),
    ("tenants:\n  - {name: big, agents: 70000}\n", "tenants.big.agents", "70000"),
    ("agents: 120000\nhosts:\n  web_agent:\n    - {name: w1, address: 10.0.0.1}\n", "hosts.web_agent", "1"),
    ("agents: 20000\nhosts:\n  proxy:\n    - {name: p1, address: 10.0.0.1}\n    - {name: p1, address: 10.0.0.2}\n",
     "hosts.proxy[1]", "'p1'"),
    ("agents: 20000\nhosts:\n  proxy:\n    - {name: p1, address: 10.0.0.1}\n    - {name: p2, address: 10.0.0.1}\n",
     "hosts.proxy[1]", "'10.0.0.1'"),
    ("agents: 20000\nnaming:\n  proxy: lb\n", "naming.proxy", "'lb'"),
    # Option typing would make these 1 and 20000 before the capacity model saw them.
    ("agents: true\n", "agents", "True"),
    ("agents: '20000'\n", "agents", "'20000'"),
    ("tenants:\n  - {name: \"acme\\n\", agents: 5}\n", "tenants[0].name", "'acme\\n'"),
    ("agents: 20000\nmodel: {web_agent_capacity_rps: 0.001}\n", "model.max_nodes_per_tier", "1000"),
    ("tenants:\n  - {name: acme, agents: 5, shard: 3000000}\n", "tenants[0].shard", "3000000"),
    ("agents: 20000\nplan_var: ansible_connection\n", "plan_var", "'ansible_connection'"),
    ("agents: 20000\nplan_var: hostvars\n", "plan_var", "'hostvars'"),
    ("agents: 20000\nplan_var: fleet_role\n", "plan_var", "'fleet_role'"),
    ("agents: 20000\nplan_var: 'my plan'\n", "plan_var", "'my plan'"),
])
def test_bad_spec_is_refused_naming_file_field_and_value(tmp_path, body, field, value):
    spec = tmp_path / "bad.fleet.yml"
    spec.write_text(SPEC + body)
    done = inventory(spec, "--list")
    assert done.returncode != 0
    assert "%s: field '%s'" % (spec, field) in done.stderr
    assert "(got %s)" % value in done.stderr
    assert "Traceback" not in done.stderr


def test_wrong_type_for_a_documented_option_names_the_file(tmp_path):
    spec = tmp_path / "typed.fleet.yml"
    spec.write_text(SPEC + "agents: 20000\nhosts: [a, b]\n")
    done = inventory(spec, "--list")
    assert done.returncode != 0
    assert str(spec) in done.stderr
    assert "hosts" in done.stderr
    assert "Traceback" not in done.stderr


def test_redundancy_opt_out_warns(tmp_path):
    spec = tmp_path / "single.fleet.yml"
    spec.write_text(SPEC + "agents: 2000\nmodel:\n  redundancy: false\n")
    done = inventory(spec, "--list")
    assert done.returncode == 0, done.stderr
    assert "redundancy is off" in done.stderr
    assert len(json.loads(done.stdout)["web_agent"]["hosts"]) == 1


def test_other_yaml_files_are_not_claimed(tmp_path):
    plugin = InventoryModule()
    other = tmp_path / "hosts.yml"
    other.write_text("all: {}\n")
    mine = tmp_path / "lab.fleet.yml"
    mine.write_text(SPEC + "agents: 10\n")
    assert not plugin.verify_file(str(other))
    assert plugin.verify_file(str(mine))


def test_replacements_file_records_retired_nodes_and_replaced_hosts(tmp_path):
    spec = tmp_path / "lab.fleet.yml"
    spec.write_text("plugin: fleetscale.split.fleet\nagents: 20000\nreplacements_file: nodes.yml\n"
                    "retired: {web_user: [1]}\nhosts: {proxy: [lb1, lb2]}\n")
    before = listed(spec)
    assert before["web_user"]["hosts"] == ["web-user-02"]
    (tmp_path / "nodes.yml").write_text("retired: {web_agent: [1]}\nhosts: {proxy: [lb2, lb3]}\n")
    after = listed(spec)
    assert after["web_agent"]["hosts"] == ["web-agent-02", "web-agent-03"]
    assert after["web_user"]["hosts"] == ["web-user-02"]
    assert after["proxy"]["hosts"] == ["lb2", "lb3"]
    layout = after["_meta"]["hostvars"]["lb2"]["fleet_plan"]["layout"]
    assert layout["retired"] == {"web_user": [1], "web_agent": [1]}


@pytest.mark.parametrize(("body", "message"), [
    ("retired: [1]\n", "field 'retired': must be a mapping of tiers"),
    ("retired: {web_agent: 1}\n", "field 'retired.web_agent': must be a list of node indices"),
    ("moved: {}\n", "field 'moved': unknown key; allowed: retired, adding, hosts"),
    ("- 1\n", "must be a mapping with retired and adding and hosts"),
])
def test_a_bad_replacements_file_is_refused_naming_it(tmp_path, body, message):
    spec = tmp_path / "lab.fleet.yml"
    spec.write_text("plugin: fleetscale.split.fleet\nagents: 20000\nreplacements_file: nodes.yml\n")
    (tmp_path / "nodes.yml").write_text(body)
    done = inventory(spec, "--list")
    assert done.returncode != 0
    assert str(tmp_path / "nodes.yml") in done.stderr
    assert message in done.stderr


@pytest.mark.parametrize("body", ["", "# a fleet, one day\n", "---\n"])
def test_an_empty_spec_is_refused_naming_the_file(tmp_path, body):
    spec = tmp_path / "empty.fleet.yml"
    spec.write_text(body)
    done = inventory(spec, "--list")
    assert done.returncode != 0
    assert "%s: the fleet spec is empty" % spec in done.stderr


def test_an_error_value_is_cut_to_a_readable_length(tmp_path):
    # 9 aliases of 9 aliases...: a few hundred bytes that expand to 9**7 strings.
    lines = ["l0: &l0 [xxxxxxxxxxxxxxxx, xxxxxxxxxxxxxxxx, xxxxxxxxxxxxxxxx]"]
    lines += ["l%d: &l%d [%s]" % (n, n, ", ".join(["*l%d" % (n - 1)] * 9)) for n in range(1, 8)]
    spec = tmp_path / "bomb.fleet.yml"
    spec.write_text(SPEC + "agents: 20000\n" + "\n".join(lines) + "\n")
    assert spec.stat().st_size < 600
    done = inventory(spec, "--list")
    assert done.returncode != 0
    assert "%s: field 'l0': unknown key" % spec in done.stderr
    assert len(done.stderr) < 5000


def test_a_side_file_outside_the_specs_directory_is_refused_unless_absolute(tmp_path):
    (tmp_path / "inventory").mkdir()
    spec = tmp_path / "inventory" / "lab.fleet.yml"
    (tmp_path / "measured.yml").write_text("model: {web_agent_capacity_rps: 800}\n")
    spec.write_text(SPEC + "agents: 20000\nmeasurements_file: ../measured.yml\n")
    done = inventory(spec, "--list")
    assert done.returncode != 0
    assert "%s: field 'measurements_file': a relative path must stay under the spec's directory" % spec in done.stderr
    spec.write_text(SPEC + "agents: 20000\nmeasurements_file: %s\n" % (tmp_path / "measured.yml"))
    hostvars = listed(spec)["_meta"]["hostvars"]
    assert hostvars["web-agent-01"]["fleet_capacity_rps"] == 800


def test_a_side_file_that_is_not_a_regular_file_is_refused_without_waiting(tmp_path):
    os.mkfifo(tmp_path / "nodes.yml")
    spec = tmp_path / "lab.fleet.yml"
    spec.write_text(SPEC + "agents: 20000\nreplacements_file: nodes.yml\n")
    done = subprocess.run([str(ROOT / ".venv" / "bin" / "ansible-inventory"), "-i", str(spec), "--list"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
                          env=dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
                                   ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".build" / "collections")))
    assert done.returncode != 0
    assert "field 'replacements_file': %s is not a regular file" % (tmp_path / "nodes.yml") in done.stderr


@pytest.mark.parametrize("body", ["- password: hunter2-secret\n", "password: hunter2-secret\n",
                                  "retired: {web_agent: [1]\nhunter2-secret: [\n"])
def test_a_side_files_content_is_never_repeated_in_an_error(tmp_path, body):
    (tmp_path / "nodes.yml").write_text(body)
    spec = tmp_path / "lab.fleet.yml"
    spec.write_text(SPEC + "agents: 20000\nreplacements_file: nodes.yml\n")
    done = inventory(spec, "--list")
    assert done.returncode != 0
    assert str(tmp_path / "nodes.yml") in done.stderr
    assert "hunter2" not in done.stderr
