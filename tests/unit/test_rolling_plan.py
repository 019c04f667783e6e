"""playbooks/rolling_replace.yml --check: the plan of replacements, worked out on a real fleet spec, touching nothing.

The plan's first play runs on the controller only, so check mode needs no node: these run the playbook as an
operator would, on a spec in a temporary directory, and read the plan and the refusals from its JSON output.
"""

import json
import os
import pathlib
import subprocess

import pytest
import yaml
from playbook_json import localhost_results, run_playbook

ROOT = pathlib.Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "playbooks" / "rolling_replace.yml"
# The lab plan of 20,000 agents: 2 proxies, 2 agent and 1 user web node, app nodes, 1 database.
SPEC = {"plugin": "fleetscale.split.fleet", "agents": 20000, "tenant_count": 4, "replacements_file": "nodes.yml",
        "network": {"subnet": "172.28.0.0/16",
                    "first_address": {"proxy": "172.28.1.10", "web_agent": "172.28.2.10", "web_user": "172.28.3.10",
                                      "app": "172.28.4.10", "database": "172.28.5.10"}},
        # Containers no lab has: the hosts are named as the lab's are, but no node may answer here, not even
        # when the lab (same names) is up.
        "compose": {"ansible_connection": "'community.docker.docker'",
                    "ansible_host": "'fleetscale-unit-absent'"}}
# What the lab's inventories set beside their spec: new nodes are lab containers.
LAB_VARS = {"rolling_provider": "lab"}


def check_run(tmp_path: pathlib.Path, extra: dict, check: bool = True, spec_data: dict | None = None,
              group_vars: dict | None = None) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """The playbook (in check mode unless told) on the spec with group_vars/all.yml beside it (the lab's
    LAB_VARS unless told); its output and every task result on localhost, each named as in its task file
    (without the "fleetscale.split.rolling : " of a role's task)."""
    spec = tmp_path / "lab.fleet.yml"
    spec.write_text(yaml.safe_dump(spec_data or SPEC))
    (tmp_path / "group_vars").mkdir(exist_ok=True)
    (tmp_path / "group_vars" / "all.yml").write_text(yaml.safe_dump(LAB_VARS if group_vars is None else group_vars))
    done, output = run_playbook(["-i", str(spec), str(PLAYBOOK), *(["--check"] if check else []),
                                 "-e", json.dumps(extra)], home=tmp_path)
    return done, localhost_results(output)


def plan_message(results: list[dict]) -> str:
    return next(r["msg"] for r in results if r["task"] == "Show the plan of replacements")


def untouched(tmp_path: pathlib.Path) -> None:
    """Nothing of the fleet written: no replacements record, no journal."""
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".yml") == ["lab.fleet.yml"]


def test_web_nodes_go_surge_at_a_time_user_tier_first(tmp_path):
    done, results = check_run(tmp_path, {"rolling_targets": ["web"], "rolling_surge": 2})
    assert done.returncode == 0, done.stdout[-3000:]
    assert plan_message(results) == (
        "2 batch(es) with the lab provider, surge 2: [1: web_user web-user-01 -> web-user-02 (172.28.3.11)] "
        "[2: web_agent web-agent-01 -> web-agent-03 (172.28.2.12), web-agent-02 -> web-agent-04 (172.28.2.13)] ")
    untouched(tmp_path)


@pytest.mark.parametrize("tier", ["proxy", "app"])
def test_proxies_and_app_nodes_go_one_at_a_time_whatever_the_surge(tmp_path, tier):
    done, results = check_run(tmp_path, {"rolling_targets": tier, "rolling_surge": 3})
    assert done.returncode == 0, done.stdout[-3000:]
    message = plan_message(results)
    assert message.startswith(f"2 batch(es) with the lab provider, surge 3: [1: {tier} {tier}-01 -> {tier}-03 "), \
        message
    assert f"[2: {tier} {tier}-02 -> {tier}-04 " in message, message
    untouched(tmp_path)


def refusal(tmp_path: pathlib.Path, extra: dict, spec_data: dict | None = None, group_vars: dict | None = None,
            ) -> dict:
    """The failed task of a run that must be refused, once sure the run failed and wrote nothing."""
    done, results = check_run(tmp_path, extra, spec_data=spec_data, group_vars=group_vars)
    assert done.returncode != 0
    untouched(tmp_path)
    return next(r for r in results if r.get("failed"))


def test_outside_the_lab_new_nodes_are_spare_hosts_named_in_the_pool(tmp_path):
    # No rolling_provider in the inventory: the static provider, which needs a spare host per replaced node.
    refused = refusal(tmp_path, {"rolling_targets": ["web_agent"]}, group_vars={})
    assert "field 'rolling_static_pool'" in refused["msg"] and "2 needed" in refused["msg"], refused["msg"]
    pool = [{"name": "spare-a", "address": "172.28.9.1"}, {"name": "spare-b", "address": "172.28.9.2"}]
    done, results = check_run(tmp_path, {"rolling_targets": ["web_agent"], "rolling_static_pool": pool},
                              group_vars={})
    assert done.returncode == 0, done.stdout[-3000:]
    assert plan_message(results) == (
        "2 batch(es) with the static provider, surge 1: [1: web_agent web-agent-01 -> spare-a (172.28.9.1)] "
        "[2: web_agent web-agent-02 -> spare-b (172.28.9.2)] ")
    untouched(tmp_path)


def test_database_nodes_go_one_at_a_time_within_their_shard(tmp_path):
    # No node answers here, so none is known to take writes: both are replaced in target order.
    done, results = check_run(tmp_path, {"rolling_targets": ["db_shard_1"], "rolling_surge": 2})
    assert done.returncode == 0, done.stdout[-3000:]
    assert plan_message(results) == (
        "2 batch(es) with the lab provider, surge 2: [1: database db-01-01 -> db-01-03 (172.28.5.13)] "
        "[2: database db-01-02 -> db-01-04 (172.28.5.14)] ")
    untouched(tmp_path)


def test_a_database_node_without_a_writer_address_is_refused_by_name(tmp_path):
    spec = dict(SPEC, model={"database_replicas": 0})
    refused = refusal(tmp_path, {"rolling_targets": ["web_user", "db-01-01"]}, spec_data=spec)
    assert refused["task"] == "Pair each node to replace with its new node, batch by batch"
    assert "fleetscale.split.rolling_batches: field 'rolling_targets': their shard has no writer address" \
        in refused["msg"], refused["msg"]
    assert "(got ['db-01-01'])" in refused["msg"], refused["msg"]


def test_an_unknown_target_is_named(tmp_path):
    refused = refusal(tmp_path, {"rolling_targets": ["web_agent", "web-agent-09"]})
    assert refused["task"] == "Expand the targets to hosts"
    assert "field 'rolling_targets': unknown: web-agent-09" in refused["msg"], refused["msg"]


def test_a_missing_or_mistyped_setting_is_refused_by_the_argument_specs(tmp_path):
    refused = refusal(tmp_path, {"rolling_surge": 2})
    assert "missing required arguments: rolling_targets" in refused["msg"], refused["msg"]
    refused = refusal(tmp_path, {"rolling_targets": "web_agent", "rolling_provider": "cloud"})
    assert "rolling_provider" in refused["msg"] and "cloud" in refused["msg"], refused["msg"]


def test_a_second_run_on_the_same_fleet_is_refused_while_the_first_runs(tmp_path):
    """The lock beside the replacements record names a live ansible-playbook process: the run stops at once,
    naming the lock file and that process, and leaves the lock (and everything else) as it was."""
    holder = subprocess.Popen(["bash", "-c", "exec -a ansible-playbook sleep 60"])
    try:
        lock = tmp_path / ".nodes.lock"
        held = json.dumps({"pid": holder.pid, "host": os.uname().nodename, "started": "2026-12-07T01:00:00+00:00"})
        lock.write_text(held + "\n")
        done, results = check_run(tmp_path, {"rolling_targets": "web_agent"}, check=False)
        assert done.returncode != 0
        refused = next(r for r in results if r.get("failed"))
        assert refused["task"] == "Refuse to run beside another replacement of the same fleet"
        assert f"{lock}: another rolling replacement of this fleet holds the lock (ansible-playbook pid " \
            f"{holder.pid}" in refused["msg"], refused["msg"]
        assert lock.read_text() == held + "\n"
        untouched(tmp_path)
    finally:
        holder.kill()
        holder.wait()


def test_a_bad_surge_is_refused_before_anything_changes(tmp_path):
    refused = refusal(tmp_path, {"rolling_targets": "web_agent", "rolling_surge": 0})
    assert "field 'rolling_surge': must be a whole number >= 1 (got 0)" in refused["msg"], refused["msg"]
