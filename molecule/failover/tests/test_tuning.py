"""MySQL tuning on a database node whose memory limit is far below the machine's RAM.

Run by `molecule verify -s failover` (after tests/test_failover.py, which leaves the
database node alone) once the database role and playbooks/mysql_tune.yml converged it.
The expected tuning is worked out here again, from the node's own figures (RAM, vCPUs,
server version, data size), the memory limit molecule.yml gives the container and the
plan of the scenario's fleet spec, with the collection's filter code.
The playbook runs below use molecule's inventory and ansible.cfg (its environment).
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import re
import subprocess
import sys
from typing import Any

import pytest
import testinfra
import yaml
from testinfra.utils.ansible_runner import AnsibleRunner

ROOT = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / ".build" / "collections"))

from ansible_collections.fleetscale.split.plugins.module_utils import plan as fleet_plan
from ansible_collections.fleetscale.split.plugins.module_utils import tuning

PLAYBOOK = ROOT / "playbooks" / "mysql_tune.yml"
CONFIG = "/etc/mysql/mariadb.conf.d/60-fleetscale.cnf"
# Bounds of the load: it stops by itself after this many queries or seconds.
LOAD_SECONDS = 20
LOAD_QUERIES = 100000
PLAYBOOK_TIMEOUT_SECONDS = 300
SIZE_SUFFIX = {"K": tuning.KIB, "M": tuning.MIB, "G": tuning.GIB}


def plain(value: Any) -> Any:
    """Inventory data without ansible-core's trust markers (see molecule/default/tests)."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return plain(value["__ansible_unsafe"])
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


class Node:
    """The database node: inventory variables, testinfra host, SQL over the root socket."""

    def __init__(self, inventory: str):
        self.inventory = inventory
        runner = AnsibleRunner.get_runner(inventory)
        hosts = runner.get_hosts("database")
        assert len(hosts) == 1, f"the scenario has one database host, not {hosts}"
        self.name = hosts[0]
        self.vars = plain(runner.get_variables(self.name))
        self.host = testinfra.get_host(f"docker://{self.name}")

    def rows(self, sql: str) -> list[list[str]]:
        output = self.host.check_output("mariadb --batch --skip-column-names -e %s", sql)
        return [line.split("\t") for line in output.splitlines() if line]

    def variables(self) -> dict[str, str]:
        return dict(self.rows("SHOW GLOBAL VARIABLES"))

    def tuned_live(self) -> dict[str, str]:
        """The live values of the variables the tuning sets (others, like GTID positions, move)."""
        live = self.variables()
        return {name: live.get(name, "") for name in self.tuned_values()}

    def oom_kills(self) -> int:
        """Processes the kernel killed in the node's memory cgroup (its limit's cgroup v1 counter)."""
        script = (
            "p=$(sed -n 's/^[0-9]*:memory://p' /proc/1/cgroup); "
            "while [ -n \"$p\" ] && [ ! -r /sys/fs/cgroup/memory$p/memory.oom_control ]; do p=${p%/*}; done; "
            "case $p in */init.scope) p=${p%/*};; esac; "
            "sed -n 's/^oom_kill //p' /sys/fs/cgroup/memory$p/memory.oom_control")
        return int(self.host.check_output(script) or 0)

    def status(self, name: str) -> int:
        return int(dict(self.rows("SHOW GLOBAL STATUS"))[name])

    def config(self) -> tuple[str, str]:
        """(sha256, mtime) of the managed configuration file."""
        content = self.host.file(CONFIG).content
        return hashlib.sha256(content).hexdigest(), str(self.host.file(CONFIG).mtime)

    def tuned_values(self) -> dict[str, str]:
        """The tuning section of the managed configuration file, as written."""
        text = self.host.file(CONFIG).content_string
        section = text.split("# --- Tuning", 1)[1]
        return dict(re.findall(r"^([a-z_]+) = (\S+)$", section, re.M))


def memory_limit_mb(name: str) -> int:
    """The memory limit molecule.yml gives the node (docker's 1g, 1024m...)."""
    platforms = yaml.safe_load(pathlib.Path(os.environ["MOLECULE_FILE"]).read_text())["platforms"]
    platform = next(p for p in platforms if p["name"] == name)
    number, unit = re.fullmatch(r"(\d+)([kmg]?)b?", str(platform["memory"]).lower()).groups()
    return int(number) * {"": 1, "k": tuning.KIB, "m": tuning.MIB, "g": tuning.GIB}[unit] // tuning.MIB


def as_server_value(value: str) -> str:
    """A my.cnf value as SHOW GLOBAL VARIABLES prints it (576M -> 603979776)."""
    match = re.fullmatch(r"(\d+)([KMG])", value)
    return str(int(match.group(1)) * SIZE_SUFFIX[match.group(2)]) if match else value


def role_default_int(name: str) -> int:
    """An integer default of the database role; `{{ x | default(N) }}` gives N."""
    defaults = yaml.safe_load((ROOT / "roles" / "database" / "defaults" / "main.yml").read_text())
    value = defaults[name]
    if isinstance(value, int):
        return value
    return int(re.search(r"default\((\d+)\)", value).group(1))


@pytest.fixture(scope="module")
def node(request: pytest.FixtureRequest) -> Node:
    return Node(request.config.option.ansible_inventory)


@pytest.fixture(scope="module")
def expected(node: Node) -> dict[str, Any]:
    """The tuning the filter gives for this node, its limit and the scenario's plan."""
    version = node.rows("SELECT VERSION()")[0][0]
    data_bytes = int(node.rows(
        "SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.TABLES "
        "WHERE table_schema NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')")[0][0])
    inputs = {
        "memory_mb": int(node.host.check_output("awk '/^MemTotal:/ {print $2}' /proc/meminfo")) // 1024,
        "memory_limit_mb": memory_limit_mb(node.name),
        "vcpus": int(node.host.check_output("nproc --all")),
        "version": version.split("-")[0],
        "data_size_mb": data_bytes // tuning.MIB,
        "shard": node.vars["fleet_shard"],
        "workers_per_node": role_default_int("database_web_workers"),
        "pool_size": role_default_int("database_web_threads"),
        "app_connections": role_default_int("database_app_connections_per_host"),
        "admin_connections": role_default_int("database_admin_connections"),
    }
    return tuning.mysql_tuning(inputs, fleet_plan.build_plan(node.vars["scenario_fleet_spec"]))


def run_playbook(node: Node, *args: str) -> subprocess.CompletedProcess[str]:
    """playbooks/mysql_tune.yml on molecule's inventory, with molecule's ansible.cfg (from the environment)."""
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    command = [str(pathlib.Path(sys.executable).parent / "ansible-playbook"), "-i", node.inventory, str(PLAYBOOK),
               *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=PLAYBOOK_TIMEOUT_SECONDS, check=False)


def recap(done: subprocess.CompletedProcess[str], host: str) -> dict[str, int] | None:
    """The PLAY RECAP counters of `host`, None when no task ran on it."""
    match = re.search(r"^%s\s*:\s*(.*)$" % re.escape(host), done.stdout, re.M)
    if not match:
        return None
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(1))}


# -- the recommendation -------------------------------------------------------------------


def test_tuning_is_sized_for_the_memory_limit_not_the_machine(node: Node, expected: dict[str, Any]) -> None:
    limit_mb = memory_limit_mb(node.name)
    host_mb = int(node.host.check_output("awk '/^MemTotal:/ {print $2}' /proc/meminfo")) // 1024
    assert limit_mb < host_mb // 2, f"the scenario needs a limit well below the machine's {host_mb} MiB"
    assert expected["usable_memory_mb"] == limit_mb
    written = {name: as_server_value(value) for name, value in node.tuned_values().items()}
    # The formula of the filter's memory guard, on the values really written for the server.
    sizes = {name: int(written[name]) for name in (
        "innodb_buffer_pool_size", "key_buffer_size", "innodb_log_buffer_size", "tmp_table_size",
        "max_heap_table_size", "query_cache_size", "aria_pagecache_buffer_size", "read_buffer_size",
        "read_rnd_buffer_size", "sort_buffer_size", "join_buffer_size", "thread_stack", "binlog_cache_size",
        "net_buffer_length", "max_connections")}
    worst = tuning.worst_case_bytes(sizes, "mariadb")
    assert worst <= limit_mb * tuning.MIB * 9 // 10, (
        f"worst case {worst // tuning.MIB} MiB is over 90 % of the {limit_mb} MiB limit")
    assert sizes["innodb_buffer_pool_size"] < limit_mb * tuning.MIB * 3 // 4


def test_configuration_file_holds_the_filter_recommendation(node: Node, expected: dict[str, Any]) -> None:
    assert node.tuned_values() == {name: str(value) for name, value in expected["config"].items()}


def test_live_values_are_the_recommendation(node: Node, expected: dict[str, Any]) -> None:
    live = node.variables()
    wrong = {name: (live.get(name), as_server_value(str(value)))
             for name, value in expected["config"].items() if live.get(name) != as_server_value(str(value))}
    assert not wrong, f"live value != recommendation: {wrong}"


def test_report_was_written(node: Node) -> None:
    report = pathlib.Path(os.environ["MYSQL_TUNE_REPORT_DIR"]) / f"mysql-tuning-{node.name}.md"
    text = report.read_text()
    assert "| innodb_buffer_pool_size |" in text
    assert "| Variable | Current | Recommended |" in text


# -- load -----------------------------------------------------------------------------------


def test_server_stays_up_under_a_short_load(node: Node, expected: dict[str, Any]) -> None:
    # Every connection of the plan busy at once (max_connections less the admin margin).
    clients = expected["variables"]["max_connections"]["value"] - role_default_int("database_admin_connections")
    uptime = node.status("Uptime")
    restarts = node.host.check_output("systemctl show -P NRestarts mariadb")
    oom_kills = node.oom_kills()
    # Bounded twice: a fixed number of queries (about 10 s here), and timeout(1).
    load = node.host.run(
        "timeout %s mariadb-slap --concurrency=%s --number-of-queries=%s --iterations=1 --auto-generate-sql "
        "--auto-generate-sql-load-type=mixed --auto-generate-sql-add-autoincrement --engine=InnoDB "
        "--create-schema=tuning_load", str(LOAD_SECONDS), str(clients), str(LOAD_QUERIES))
    node.rows("DROP DATABASE IF EXISTS tuning_load")
    # 124: timeout(1) ended the load at its bound, which is fine; anything else is an error of the load.
    assert load.rc in (0, 124), f"mariadb-slap failed (rc {load.rc}): {load.stderr or load.stdout}"
    assert node.host.service("mariadb").is_running
    assert node.host.check_output("systemctl show -P NRestarts mariadb") == restarts
    assert node.status("Uptime") >= uptime, "the server restarted during the load"
    assert node.oom_kills() == oom_kills, "the kernel killed a process of the node for memory"
    assert node.status("Max_used_connections") >= clients


# -- check mode, idempotence, bad input -----------------------------------------------------


def test_check_mode_changes_nothing(node: Node) -> None:
    before = (node.config(), node.tuned_live())
    done = run_playbook(node, "--check", "--diff")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert recap(done, node.name)["changed"] == 0, done.stdout[-3000:]
    assert "| innodb_buffer_pool_size |" in done.stdout, "check mode must print the report"
    assert (node.config(), node.tuned_live()) == before


def test_second_apply_changes_nothing(node: Node) -> None:
    before = node.config()
    done = run_playbook(node)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert recap(done, node.name)["changed"] == 0, done.stdout[-3000:]
    assert node.config() == before


@pytest.mark.parametrize(("extra", "field", "reaches_node"), [
    ("database_memory_mb=256", "database_memory_mb", False),
    ("database_disk_class=floppy", "database_disk_class", False),
    ("database_durability=fast", "database_durability", False),
    # Valid by itself, but leaves 300 MiB usable: refused by the filter on the node, before any change.
    ("database_memory_mb=800 database_reserved_mb=500", "reserved_mb", True),
], ids=["memory-below-minimum", "unknown-disk-class", "unknown-durability", "memory-left-below-minimum"])
def test_bad_input_fails_naming_the_field_before_anything_is_touched(
        node: Node, extra: str, field: str, reaches_node: bool) -> None:
    before = (node.config(), node.tuned_live())
    done = run_playbook(node, "-e", extra)
    output = done.stdout + done.stderr
    assert done.returncode != 0, f"-e {extra} was accepted:\n{done.stdout[-2000:]}"
    assert field in output, f"the failure does not name {field}:\n{output[-2000:]}"
    counters = recap(done, node.name)
    if reaches_node:
        assert counters is not None and counters["failed"] == 1 and counters["changed"] == 0, done.stdout[-2000:]
    else:
        assert counters is None, f"a task ran on {node.name} before the inputs were checked"
    assert (node.config(), node.tuned_live()) == before
