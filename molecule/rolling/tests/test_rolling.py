"""Rolling add-then-remove replacement under a constant agent load, proven end to end.

The tests run in order on one lab: a broken new node is rolled back (surge 1); a rolling upgrade
replaces every web node with a node of the new version (the same replacement with a new release),
two nodes at a time (surge 2), its controller killed while an old node drains and the same command
run again to finish it; last, the proxy holding the floating address is replaced.
Each drives the agent simulator (tools/agentsim) at LOAD_RATE check-ins/s through the first proxy
(the proxies' floating address for the proxy replacement) for the whole operation, stops it once
the playbook is done, and proves from its report and ledger that no request failed and that every
acknowledged check-in is in its shard's database. The playbooks run as an operator would run them,
with ansible-playbook on the scenario's inventory.

    molecule test -s rolling
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
PLAYBOOKS = ROOT / "playbooks"
AGENTSIM = ROOT / "tools" / "agentsim"
# At least 200 check-ins/s through the proxy for every replacement (the floor).
LOAD_RATE = 200
STEADY_SECONDS = 15
# Upper bound of one load run; each run is stopped as soon as its playbook is done.
LOAD_MAX_SECONDS = 1500
PLAYBOOK_TIMEOUT = 1400
AFTER_SECONDS = 5


def allow(url: str) -> list[str]:
    """The simulator's --allow-network for the address of `url`, and nothing else."""
    return ["--allow-network", f"{urlsplit(url).hostname}/32"]


def plain(value: Any) -> Any:
    """ansible-inventory's untrusted-string markers off."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return plain(value["__ansible_unsafe"])
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


class Scenario:
    def __init__(self, inventory: str, workdir: Path):
        self.inventory = inventory
        self.workdir = workdir
        self.bin = Path(sys.executable).parent

    def inventory_list(self) -> dict[str, Any]:
        done = subprocess.run([str(self.bin / "ansible-inventory"), "-i", self.inventory, "--list"],
                              capture_output=True, text=True, check=True)
        return plain(json.loads(done.stdout))

    def hosts(self, group: str) -> list[str]:
        return sorted(self.inventory_list().get(group, {}).get("hosts", []))

    def plan_file(self) -> Path:
        data = self.inventory_list()
        proxy = data["proxy"]["hosts"][0]
        path = self.workdir / "plan.json"
        path.write_text(json.dumps({"fleet_plan": data["_meta"]["hostvars"][proxy]["fleet_plan"]}))
        return path

    def proxy_url(self) -> str:
        """The first proxy node's own address on the scenario's network: no docker-proxy in the path."""
        data = self.inventory_list()
        hostvars = data["_meta"]["hostvars"]
        proxy = min(data["proxy"]["hosts"], key=lambda host: hostvars[host]["fleet_index"])
        return f"http://{hostvars[proxy]['fleet_address']}:80"

    def journal(self) -> dict[str, Any] | None:
        """The batch a rolling run has in progress ({phase, batch}: its journal beside the replacements file)."""
        source = Path(self.inventory)
        spec = next(source.glob("*fleet.yml")) if source.is_dir() else source
        state = yaml.safe_load(spec.read_text())["replacements_file"]
        path = spec.parent / (str(Path(state).with_suffix("")) + ".journal.yml")
        try:
            return yaml.safe_load(path.read_text())
        except FileNotFoundError:
            return None

    def playbook(self, name: str, extra: dict[str, Any], interrupt_when: Callable[[], bool] | None = None,
                 ) -> tuple[subprocess.CompletedProcess[str], float]:
        """Run a playbook as an operator would. With `interrupt_when`, kill it (its whole process group, as
        when the controller dies) the moment that returns true; the run must not end before."""
        started = time.monotonic()
        command = [str(self.bin / "ansible-playbook"), "-i", self.inventory, str(PLAYBOOKS / name),
                   "-e", json.dumps(extra)]
        log = self.workdir / f"{name}.{int(time.time())}.log"
        with log.open("w") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, text=True,
                                       start_new_session=True)
            try:
                while process.poll() is None:
                    if time.monotonic() - started > PLAYBOOK_TIMEOUT:
                        raise AssertionError(f"{name} ran longer than {PLAYBOOK_TIMEOUT} s")
                    if interrupt_when and interrupt_when():
                        os.killpg(process.pid, signal.SIGKILL)
                        process.wait()
                        break
                    time.sleep(0.5)
                else:
                    assert interrupt_when is None, f"{name} ended before its interruption: {log.read_text()[-3000:]}"
            finally:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        return subprocess.CompletedProcess(command, process.returncode, log.read_text(), ""), time.monotonic() - started

    def agentsim(self, *args: str, **kwargs: Any) -> subprocess.Popen[str]:
        env = dict(os.environ, PYTHONPATH=str(AGENTSIM))
        return subprocess.Popen([sys.executable, "-m", "agentsim", *args], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)

    def steady(self, label: str) -> dict[str, Any]:
        report = self.workdir / f"{label}.json"
        url = self.proxy_url()
        run = self.agentsim("run", "--url", url, "--plan", str(self.plan_file()),
                            "--rate", str(LOAD_RATE), "--duration", str(STEADY_SECONDS), "--json", str(report),
                            "--label", label, *allow(url))
        _, err = run.communicate(timeout=STEADY_SECONDS + 60)
        assert run.returncode == 0, err
        return json.loads(report.read_text())

    def floating_url(self) -> str:
        """The proxies' floating address (keepalived): it stays while the proxies change."""
        data = self.inventory_list()
        return f"http://{data['_meta']['hostvars'][data['proxy']['hosts'][0]]['proxy_floating_address']}:80"

    def under_load(self, label: str, name: str, extra: dict[str, Any], url: str | None = None,
                   interrupt_when: Callable[[], bool] | None = None,
                   ) -> tuple[subprocess.CompletedProcess[str], float, dict[str, Any], dict[str, Any]]:
        """Run a playbook while the simulator keeps LOAD_RATE going to `url` (default: the first proxy's own
        address); return it, the run and the ledger check. With `interrupt_when`, the playbook is killed
        when that is true and run again, the same command, under the same load: the second run is returned."""
        plan = self.plan_file()
        report = self.workdir / f"{label}.json"
        ledger = self.workdir / f"{label}.jsonl"
        url = url or self.proxy_url()
        run = self.agentsim("run", "--url", url, "--plan", str(plan), "--rate", str(LOAD_RATE),
                            "--duration", str(LOAD_MAX_SECONDS), "--json", str(report), "--ledger", str(ledger),
                            "--label", label, *allow(url))
        try:
            time.sleep(3)
            assert run.poll() is None, run.stderr.read() if run.stderr else "the simulator stopped"
            done, seconds = self.playbook(name, extra, interrupt_when)
            if interrupt_when:
                done, more = self.playbook(name, extra)
                seconds += more
            time.sleep(AFTER_SECONDS)
        finally:
            run.send_signal(signal.SIGINT)
            _, err = run.communicate(timeout=60)
        assert report.exists(), err
        result = json.loads(report.read_text())
        check = self.workdir / f"{label}.verify.json"
        verify = subprocess.run([sys.executable, "-m", "agentsim", "verify", "--ledger", str(ledger),
                                 "--plan", str(plan), "--json", str(check)],
                                env=dict(os.environ, PYTHONPATH=str(AGENTSIM)), capture_output=True, text=True,
                                timeout=300, check=False)
        assert verify.returncode in (0, 1), verify.stderr
        return done, seconds, result, json.loads(check.read_text())

    def backend_servers(self, proxy: str) -> list[dict[str, Any]]:
        done = subprocess.run(["docker", "exec", proxy, "fleet-haproxy-backend", "state"], capture_output=True,
                              text=True, check=True)
        return json.loads(done.stdout)["servers"]


@pytest.fixture(scope="module")
def scenario(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    inventory = request.config.option.ansible_inventory
    assert inventory, "run through molecule (it passes --ansible-inventory)"
    return Scenario(inventory, tmp_path_factory.mktemp("rolling"))


def report_line(label: str, run: dict[str, Any], seconds: float, steady_p99: float) -> str:
    p99 = run["latency_ms"]["p99"]
    return (f"\n[rolling] {label}: {seconds:.0f} s, {run['throughput']['acknowledged']} check-ins at "
            f"{run['settings']['rate_per_s']:g}/s, failed {run['errors']['total']}, p99 steady {steady_p99:.1f} ms, "
            f"during {p99:.1f} ms (x{p99 / steady_p99:.2f}), answers by node {run['nodes']}")


def assert_no_failure(run: dict[str, Any], check: dict[str, Any]) -> None:
    assert run["errors"]["total"] == 0, f"failed requests: {run['errors']}"
    assert run["throughput"]["acknowledged"] > 0
    assert check["ok"], f"lost or misplaced check-ins: {check}"
    assert check["acknowledged"] == run["throughput"]["acknowledged"]


def test_a_broken_new_node_is_rolled_back_and_the_old_one_keeps_serving(scenario: Scenario) -> None:
    agents = scenario.hosts("web_agent")
    old = agents[0]
    # A new node that cannot reach its database never becomes ready.
    done, seconds, run, check = scenario.under_load("broken", "rolling_replace.yml", {
        "rolling_targets": [old], "rolling_ready_timeout": 20,
        "rolling_node_vars": {"web_db_password": "not-the-password"}})
    assert done.returncode != 0, "the replacement with a broken node succeeded"
    output = done.stdout + done.stderr
    assert f"Replacing {old} with" in output and "readiness" in output, output[-3000:]
    print(f"\n[rolling] broken node: rolled back in {seconds:.0f} s, failed requests {run['errors']['total']}")
    assert_no_failure(run, check)
    # Nothing changed: same nodes in the inventory and on every proxy, all UP, no stray container.
    assert scenario.hosts("web_agent") == agents
    for proxy in scenario.hosts("proxy"):
        servers = scenario.backend_servers(proxy)
        assert sorted(s["server"] for s in servers if s["backend"] == "agents") == agents
        assert {s["status"] for s in servers} == {"UP"}, servers
    assert old in run["nodes"], "the old node stopped serving during the failed replacement"
    assert scenario.journal() is None, "the rolled-back batch is still in the journal"


def test_an_interrupted_rolling_upgrade_is_finished_by_running_it_again(scenario: Scenario) -> None:
    """A rolling upgrade is the rolling replacement of every web node with nodes of the new release. This one's
    controller dies while the first batch's old node drains; the same command run again finishes that batch
    (the old node is not left drained, the new one is not replaced again) and upgrades the rest."""
    before_agents, before_users = scenario.hosts("web_agent"), scenario.hosts("web_user")
    steady = scenario.steady("steady")
    assert set(steady["versions"]) == {"1.0.0"}, steady["versions"]
    report = scenario.workdir / "upgrade-report.json"
    seen: list[dict[str, Any]] = []

    def draining() -> bool:
        entry = scenario.journal()
        if entry and entry["phase"] == "draining":
            seen.append(entry)
            return True
        return False

    # Surge 2: both agent nodes are replaced in one batch (capacity never drops: four serve during it),
    # the user node in another; the replacement with surge 1 is the broken-node test's.
    done, seconds, run, check = scenario.under_load("upgrade", "rolling_upgrade.yml", {
        "rolling_node_vars": {"web_checkin_version": "1.1.0"}, "rolling_surge": 2,
        "rolling_report_file": str(report)}, interrupt_when=draining)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    print(report_line("replace every web node (rolling upgrade 1.0.0 -> 1.1.0, killed once and run again)", run,
                      seconds, steady["latency_ms"]["p99"]))
    batches = json.loads(report.read_text())["batches"]
    for batch in batches:
        print(f"[rolling]   {', '.join(batch['replaced'])} -> {', '.join(batch['by'])}: {batch['seconds']:.0f} s "
              f"({', '.join(f'{phase} {s:.0f}' for phase, s in batch['phases'])})")
    assert_no_failure(run, check)
    # The second run finished the batch the first left draining, then did the other batch only.
    interrupted = seen[0]["batch"]
    assert "finishing it" in done.stdout, done.stdout[-3000:]
    rest = sorted(set(before_agents + before_users) - {pair["old"] for pair in interrupted["pairs"]})
    assert [sorted(batch["replaced"]) for batch in batches] == [rest], batches

    # The inventory moved on: only new names, as many as before.
    after_agents, after_users = scenario.hosts("web_agent"), scenario.hosts("web_user")
    assert len(after_agents) == len(before_agents) and not set(after_agents) & set(before_agents)
    assert len(after_users) == len(before_users) and not set(after_users) & set(before_users)
    # The interrupted batch's new nodes stayed: finished, not replaced again.
    assert {pair["new"] for pair in interrupted["pairs"]} <= set(after_agents + after_users)
    # Every proxy serves exactly the new nodes, every one UP; the old containers are gone.
    for proxy in scenario.hosts("proxy"):
        servers = scenario.backend_servers(proxy)
        assert sorted(s["server"] for s in servers if s["backend"] == "agents") == after_agents
        assert sorted(s["server"] for s in servers if s["backend"] == "users") == sorted(after_agents + after_users)
        assert {s["status"] for s in servers} == {"UP"}, servers
    running = subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True,
                             check=True).stdout.split()
    assert not set(before_agents + before_users) & set(running)
    assert scenario.journal() is None
    # The new nodes took traffic during the run, and afterwards every answer comes from the new version.
    assert set(after_agents) & set(run["nodes"])
    after = scenario.steady("after-upgrade")
    assert set(after["versions"]) == {"1.1.0"}, after["versions"]
    assert after["errors"]["total"] == 0


def keepalived_peers(proxy: str) -> set[str]:
    conf = subprocess.run(["docker", "exec", proxy, "cat", "/etc/keepalived/keepalived.conf"], capture_output=True,
                          text=True, check=True).stdout
    block = conf.partition("unicast_peer {")[2].partition("}")[0]
    return set(block.split())


def holds_address(proxy: str, address: str) -> bool:
    shown = subprocess.run(["docker", "exec", proxy, "ip", "-o", "-4", "addr", "show"], capture_output=True,
                           text=True, check=True).stdout
    return f" {address}/" in shown


def test_the_proxy_holding_the_floating_address_is_replaced_under_load_sent_there(scenario: Scenario) -> None:
    """The other proxy keeps the traffic; the floating address moves without resetting a connection. One proxy,
    the holder, whose leaving is the hard case: that proxies go one at a time whatever the surge is the plan's
    (tests/unit/test_rolling_plan.py), and a second one would take the same path again for five more minutes."""
    before = scenario.hosts("proxy")
    url = scenario.floating_url()
    address = urlsplit(url).hostname
    holders = [p for p in before if holds_address(p, address)]
    assert len(holders) == 1, f"{address} held by {holders}"
    report = scenario.workdir / "proxy-report.json"
    done, seconds, run, check = scenario.under_load("proxy", "rolling_replace.yml", {
        "rolling_targets": holders, "rolling_report_file": str(report)}, url=url)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    print(f"\n[rolling] replace {holders[0]}, holder of {address}, under load sent there: {seconds:.0f} s, "
          f"{run['throughput']['acknowledged']} check-ins at {run['settings']['rate_per_s']:g}/s, "
          f"failed {run['errors']['total']}, p99 {run['latency_ms']['p99']:.1f} ms")
    batches = json.loads(report.read_text())["batches"]
    for batch in batches:
        print(f"[rolling]   {', '.join(batch['replaced'])} -> {', '.join(batch['by'])}: {batch['seconds']:.0f} s "
              f"({', '.join(f'{phase} {s:.0f}' for phase, s in batch['phases'])})")
    assert_no_failure(run, check)
    assert [batch["replaced"] for batch in batches] == [holders], batches

    after = scenario.hosts("proxy")
    added = sorted(set(after) - set(before))
    assert len(added) == 1 and sorted(set(before) - set(after)) == holders, (before, after)
    hostvars = scenario.inventory_list()["_meta"]["hostvars"]
    for proxy in after:
        assert {s["status"] for s in scenario.backend_servers(proxy)} == {"UP"}, proxy
        # keepalived's peers followed the tier: exactly the other proxies, the new one among them.
        assert keepalived_peers(proxy) == {hostvars[p]["fleet_address"] for p in after if p != proxy}, proxy
    assert len([p for p in after if holds_address(p, address)]) == 1, f"not exactly one proxy holds {address}"
    running = subprocess.run(["docker", "ps", "--format", "{{.Names}}"], capture_output=True, text=True,
                             check=True).stdout.split()
    assert not set(holders) & set(running)
