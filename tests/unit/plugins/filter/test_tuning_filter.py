"""The mysql_tuning filter: refusals as AnsibleFilterError, documentation that matches the code, a real play."""

import itertools
import json
import os
import pathlib
import subprocess

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from playbook_json import run_playbook

from ansible_collections.fleetscale.split.plugins.filter import tuning as tuning_filter
from ansible_collections.fleetscale.split.plugins.module_utils import plan, tuning
from ansible_collections.fleetscale.split.plugins.module_utils.errors import PlanError

ROOT = pathlib.Path(__file__).resolve().parents[4]
SIDECAR = ROOT / "plugins" / "filter" / "mysql_tuning.yml"
NAME = "fleetscale.split.mysql_tuning"
BASE = {"memory_mb": 8192, "checkin_rate_per_second": 100, "web_nodes": 3, "app_nodes": 2}

VERSIONS = [("mariadb", "10.6"), ("mariadb", "10.11"),
            ("mysql", "8.0.26"), ("mysql", "8.0.29"), ("mysql", "8.0.30"), ("mysql", "8.4")]
DOC_TYPES = {int: "int", float: "float", str: "str", bool: "bool"}


def _emittable():
    """Every variable name and top-level key the filter returns for some flavour, version and profile."""
    names, keys = set(), set()
    for (flavor, version), binlog, durability, disk in itertools.product(
            VERSIONS, (True, False), tuning.DURABILITY, tuning.DISK_CLASSES):
        result = tuning.mysql_tuning(dict(BASE, flavor=flavor, version=version, binlog=binlog,
                                          durability=durability, disk_class=disk))
        names |= set(result["variables"])
        keys |= set(result)
    return names, keys


@pytest.fixture(scope="module")
def sidecar():
    return yaml.safe_load(SIDECAR.read_text())


def test_filter_module_maps_the_name():
    assert tuning_filter.FilterModule().filters() == {"mysql_tuning": tuning_filter.mysql_tuning}


def test_filter_returns_the_models_result():
    fleet_plan = plan.build_plan({"agents": 20_000})
    assert tuning_filter.mysql_tuning({"memory_mb": 8192}, fleet_plan) == tuning.mysql_tuning(BASE)
    assert tuning_filter.mysql_tuning({"memory_mb": 8192}, plan=fleet_plan)["config"]["max_connections"] == 66


@pytest.mark.parametrize(("inputs", "plan_", "field", "value"), [
    ({"memory_mb": 400}, None, "memory_mb", 400),
    ({"memory_mb": 24576, "memory_limit_mb": 300}, None, "memory_limit_mb", 300),
    ({"reserved_mb": 7900}, None, "reserved_mb", 7900),
    ({"disk_class": "nvme"}, None, "disk_class", "nvme"),
    ({"durability": "eventual"}, None, "durability", "eventual"),
    ({"flavor": "percona"}, None, "flavor", "percona"),
    ({"flavor": "mysql", "version": "5.7.44"}, None, "version", "5.7.44"),
    ({"version": 10.11}, None, "version", 10.11),
    ({"vcpu": 4}, None, "vcpu", 4),
    ({"memory_mb": "8 GiB"}, None, "memory_mb", "8 GiB"),
    ({"memory_mb": True}, None, "memory_mb", True),
    ({"binlog": "on"}, None, "binlog", "on"),
    ({"memory_mb": 600, "web_nodes": 50}, None, "memory_mb", 600),
    ({"shard": 2}, None, "shard", 2),
    ({"checkin_rate_per_second": None}, "not a plan", "plan", "not a plan"),
])
def test_refusals_are_filter_errors_naming_field_and_value(inputs, plan_, field, value):
    with pytest.raises(AnsibleFilterError) as caught:
        tuning_filter.mysql_tuning(dict(BASE, **inputs), plan_)
    message = str(caught.value)
    assert message.startswith("%s: field '%s': " % (NAME, field))
    assert message.endswith("(got %r)" % (value,))
    assert isinstance(caught.value.__cause__, PlanError)


def test_inputs_that_are_not_a_mapping_are_refused():
    with pytest.raises(AnsibleFilterError, match=r"field 'inputs': must be a mapping of tuning inputs \(got 8192\)"):
        tuning_filter.mysql_tuning(8192)


# --- documentation ---------------------------------------------------------------------------------


def test_documented_inputs_are_the_accepted_inputs(sidecar):
    options = sidecar["DOCUMENTATION"]["options"]
    assert set(options) == {"_input", "plan"}
    documented = options["_input"]["suboptions"]
    assert set(documented) == set(tuning.INPUT_FIELDS)
    for name, (kind, default, _low, _high) in tuning.INPUT_FIELDS.items():
        doc = documented[name]
        assert doc["description"], name
        if isinstance(kind, tuple):
            assert doc["type"] == "str", name
            assert tuple(doc["choices"]) == kind, name
        else:
            assert doc["type"] == DOC_TYPES[kind], name
        assert doc.get("default") == default, name
        assert doc.get("required", False) is (name == "memory_mb"), name


def test_documented_return_values_are_what_the_code_emits(sidecar):
    names, keys = _emittable()
    returned = sidecar["RETURN"]["_value"]["contains"]
    assert set(returned) == keys
    assert set(returned["variables"]["contains"]) == names
    for name, doc in returned["variables"]["contains"].items():
        assert doc["description"], name


def test_documented_flavour_notes_match_the_code(sidecar):
    returned = sidecar["RETURN"]["_value"]["contains"]["variables"]["contains"]
    mariadb = set(tuning.mysql_tuning(dict(BASE, flavor="mariadb"))["variables"])
    mysql = set(tuning.mysql_tuning(dict(BASE, flavor="mysql"))["variables"])
    for name, doc in returned.items():
        if doc["description"].startswith("MySQL only"):
            assert name not in mariadb, name
        if doc["description"].startswith("MariaDB only"):
            assert name not in mysql, name


def test_ansible_doc_renders_every_input_and_return_value():
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".build" / "collections"))
    ansible_doc = str(ROOT / ".venv" / "bin" / "ansible-doc")
    done = subprocess.run([ansible_doc, "-t", "filter", "--json", NAME], capture_output=True, text=True, cwd=ROOT,
                          check=False, env=env)
    assert done.returncode == 0, done.stderr
    rendered = json.loads(done.stdout)[NAME]
    names, keys = _emittable()
    assert set(rendered["doc"]["options"]["_input"]["suboptions"]) == set(tuning.INPUT_FIELDS)
    assert set(rendered["return"]["_value"]["contains"]) == keys
    assert set(rendered["return"]["_value"]["contains"]["variables"]["contains"]) == names
    text = subprocess.run([ansible_doc, "-t", "filter", NAME], capture_output=True, text=True, cwd=ROOT,
                          check=False, env=env)
    assert text.returncode == 0, text.stderr
    assert "EXAMPLES" in text.stdout
    assert "RETURN VALUES" in text.stdout
    assert "innodb_redo_log_capacity" in text.stdout


# --- a real play ---------------------------------------------------------------------------------------


def test_filter_works_and_refuses_in_a_real_play(tmp_path):
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        "- hosts: localhost\n  gather_facts: false\n"
        "  vars:\n"
        "    db: {memory_mb: 24576, memory_limit_mb: 2048, vcpus: 4, flavor: mysql, version: '8.0.28'}\n"
        "  tasks:\n"
        "    - ansible.builtin.debug:\n"
        "        msg: \"{{ (db | fleetscale.split.mysql_tuning(({'agents': 20000} | fleetscale.split.split_plan)))"
        ".config | to_json }}\"\n"
        "    - ansible.builtin.debug:\n"
        "        msg: \"{{ db | combine({'disk_class': 'floppy'})"
        " | fleetscale.split.mysql_tuning(plan=fleet_plan) }}\"\n"
        "      vars:\n"
        "        fleet_plan: \"{{ {'agents': 20000} | fleetscale.split.split_plan }}\"\n"
        "      ignore_errors: true\n")
    done, output = run_playbook(["-i", "localhost,", "-c", "local", str(playbook)], home=tmp_path)
    assert done.returncode == 0, done.stderr
    tasks = output["plays"][0]["tasks"]
    config = json.loads(tasks[0]["hosts"]["localhost"]["msg"])
    assert config["max_connections"] == 66
    assert config["innodb_log_file_size"] == "352M"  # an hour of 100 check-ins/s (704 MiB) over two files
    assert config["innodb_log_files_in_group"] == 2
    assert config["thread_stack"] == "1M"
    assert "innodb_redo_log_capacity" not in config
    failed = tasks[1]["hosts"]["localhost"]
    assert failed["failed"] is True
    assert "%s: field 'disk_class': must be one of: ssd, hdd, network (got 'floppy')" % NAME in failed["msg"]
