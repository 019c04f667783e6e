"""The 3-way split, proven on the converged lab.

Traffic goes from the controller to the proxies' ports published on 127.0.0.1;
nodes are inspected through the Docker connection of the inventory (testinfra
turns `community.docker.docker` into its docker:// backend). Host names,
groups, addresses, tenants and published ports all come from the inventory
(the fleet plugin and inventories/lab/group_vars), never from this file.

Run by `molecule verify`, or by hand against the lab of playbooks/lab.yml
after playbooks/site.yml converged it:

    .venv/bin/pytest -p no:cacheprovider molecule/default/tests --ansible-inventory inventories/lab/lab.fleet.yml
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import testinfra
from testinfra.utils.ansible_runner import AnsibleRunner

# The service's own credential formulas (one home: roles/web/files/fleet_checkin/credentials.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "roles" / "web" / "files"))
from fleet_checkin.credentials import agent_token, tenant_keys

HTTP_TIMEOUT_SECONDS = 5
POLL_SECONDS = 0.5
# HAProxy marks a server down after `fall` failed checks `inter` apart (2 x 1s
# by default); this leaves room for a slow container without hanging CI.
FAILOVER_SECONDS = 20
# Back to the user node: service start, readiness, HAProxy `rise` and slowstart.
RECOVERY_SECONDS = 60
# The scheduler writes its status after its first round.
SCHEDULER_STATUS_SECONDS = 30

MARIADB_PORT = 3306
PROXY_TCP_PORTS = {80, 443, 8404}
# Docker's embedded DNS resolver listens on this address inside every
# container of a user-defined network: part of the lab, not of the node.
DOCKER_DNS_ADDRESS = "127.0.0.11"

SERVICES_BY_GROUP = {
    "proxy": ["haproxy"],
    "web_agent": ["nginx", "fleet-checkin"],
    "web_user": ["nginx", "fleet-checkin"],
    "app": ["fleet-scheduler"],
    "database": ["mariadb"],
}

# Straight to 127.0.0.1, whatever http_proxy the controller's environment sets.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Answer:
    """One HTTP exchange; status 0 when no HTTP answer came at all."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    error: str = ""

    @property
    def node(self) -> str:
        return self.headers.get("x-fleet-node", "")

    def describe(self) -> str:
        if not self.status:
            return f"no answer ({self.error})"
        return f"HTTP {self.status} from {self.node or 'no X-Fleet-Node'}: {self.body[:200]!r}"


def http(method: str, url: str, payload: dict[str, Any] | None = None, auth: str | None = None) -> Answer:
    """One request; `auth` is the bearer credential (an agent token or a user API key)."""
    data = None if payload is None else json.dumps(payload).encode()
    headers = {} if data is None else {"Content-Type": "application/json"}
    if auth is not None:
        headers["Authorization"] = f"Bearer {auth}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with _opener.open(request, timeout=HTTP_TIMEOUT_SECONDS) as response:
            return Answer(response.status, {k.lower(): v for k, v in response.headers.items()}, response.read())
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read())
    except (urllib.error.URLError, OSError) as exc:
        return Answer(0, error=str(exc))


def poll(fetch: Callable[[], Answer], wanted: Callable[[Answer], bool], seconds: float) -> Answer:
    """Fetch until an answer is wanted or `seconds` pass; return the last answer."""
    deadline = time.monotonic() + seconds
    answer = fetch()
    while not wanted(answer) and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        answer = fetch()
    return answer


def plain(value: Any) -> Any:
    """Inventory data without ansible-core's trust markers.

    Since ansible-core 2.19, `ansible-inventory --list` writes values set by
    inventory plugins as {"__ansible_unsafe": value}; the tests want the value.
    """
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return plain(value["__ansible_unsafe"])
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


class Lab:
    """The inventory as the tests use it: groups, plain host variables, testinfra hosts."""

    DOCKER_CONNECTIONS = ("community.docker.docker", "docker")

    def __init__(self, inventory: str | None):
        self._runner = AnsibleRunner.get_runner(inventory)
        self._nodes: dict[str, Any] = {}

    def group(self, name: str) -> list[str]:
        hosts = self._runner.get_hosts(name)
        assert hosts, f"the inventory has no host in group {name!r}"
        return hosts

    def vars(self, name: str) -> dict[str, Any]:
        return plain(self._runner.get_variables(name))

    def node(self, name: str) -> Any:
        """The testinfra host of `name`, reached the way the inventory says."""
        if name not in self._nodes:
            variables = self.vars(name)
            if variables.get("ansible_connection") in self.DOCKER_CONNECTIONS:
                # testinfra would do the same, but cannot read the marked
                # connection value (see plain()); ansible_host is the container.
                host = testinfra.get_host(f"docker://{variables.get('ansible_host', name)}")
            else:
                host = self._runner.get_host(name)
            assert host is not None, f"{name}: testinfra cannot connect with {variables.get('ansible_connection')!r}"
            self._nodes[name] = host
        return self._nodes[name]

    def published_port(self, proxy: str, container_port: int) -> int:
        """The port of 127.0.0.1 on the controller that reaches `container_port` of `proxy`."""
        variables = self.vars(proxy)
        ports = variables["lab_published_ports"]
        index = variables["fleet_index"]
        # JSON (ansible-inventory --list) turns the integer keys into strings.
        for spec in ports.get(str(index), ports.get(index, [])):
            host_ip, host_port, inner_port = spec.split(":")
            if host_ip == "127.0.0.1" and int(inner_port) == container_port:
                return int(host_port)
        raise AssertionError(f"lab_published_ports has no 127.0.0.1 port for {proxy}:{container_port}")

    def agent_token(self, tenant: str, agent_id: str) -> str:
        """The token enrolment would issue to `agent_id` of `tenant` (from the inventory's keys)."""
        variables = self.vars(self.group("web_agent")[0])
        listed = [(k["id"], k["secret"]) for k in variables.get("fleet_agent_keys", {}).get(tenant, [])]
        master = [(k["id"], k["secret"]) for k in variables.get("fleet_agent_master_keys", [])]
        key_id, secret = tenant_keys(tenant, listed, master)[0]
        return agent_token(key_id, secret, tenant, agent_id)

    def api_key(self, admin: bool = True, tenant: str | None = None) -> str:
        """`<id>.<secret>` of an inventory API key: an admin's, or one scoped to `tenant` only."""
        for key in self.vars(self.group("web_user")[0]).get("fleet_api_keys", []):
            if "secret" in key and bool(key.get("admin")) == admin and (admin or key.get("tenants") == [tenant]):
                return f"{key['id']}.{key['secret']}"
        raise AssertionError(f"fleet_api_keys has no {'admin' if admin else tenant} key with its secret")

    def proxy_url(self) -> str:
        """The HTTP entry of the first proxy, as published on the controller."""
        proxy = next(h for h in self.group("proxy") if self.vars(h)["fleet_index"] == 1)
        return f"http://127.0.0.1:{self.published_port(proxy, 80)}"


@pytest.fixture(scope="module")
def lab(request: pytest.FixtureRequest) -> Lab:
    return Lab(request.config.option.ansible_inventory)


def tcp_listeners(host: Any) -> list[tuple[str, int]]:
    """(address, port) of every listening TCP socket of the node."""
    listeners = []
    for line in host.check_output("ss -H -l -t -n").splitlines():
        local = line.split()[3]
        address, _, port = local.rpartition(":")
        listeners.append((address, int(port)))
    return listeners


def mysql_rows(host: Any, sql: str) -> list[list[str]]:
    """Rows of `sql` run as root over the node's unix socket (tab-separated batch output)."""
    output = host.check_output("mysql --batch --skip-column-names -e %s", sql)
    return [line.split("\t") for line in output.splitlines() if line]


# -- routing and data path -----------------------------------------------------------------


def test_agent_checkins_are_served_by_agent_nodes_and_stored(lab: Lab) -> None:
    agent_nodes = set(lab.group("web_agent"))
    plan = lab.vars(lab.group("all")[0])["fleet_plan"]
    tenant = plan["tenants"][0]
    shard = next(s for s in plan["shards"] if s["shard"] == tenant["shard"])
    agent_id = f"molecule-{uuid.uuid4().hex[:12]}"
    url = lab.proxy_url() + "/agent/checkin"

    token = lab.agent_token(tenant["name"], agent_id)
    served_by = {}
    for seq in range(1, 5):
        answer = http("POST", url, {"agent_id": agent_id, "tenant": tenant["name"], "seq": seq, "status": "ok"},
                      auth=token)
        assert answer.status == 200, f"check-in {seq}: {answer.describe()}"
        assert answer.node in agent_nodes, f"check-in {seq} was served by {answer.node!r}, not by an agent node"
        served_by[seq] = answer.node

    rows = mysql_rows(
        lab.node(shard["host"]),
        f"SELECT seq, served_by FROM `{shard['schema']}`.checkins "
        f"WHERE tenant = '{tenant['name']}' AND agent_id = '{agent_id}' ORDER BY seq",
    )
    assert rows == [[str(seq), name] for seq, name in served_by.items()], (
        f"rows of {agent_id} in {shard['host']}:{shard['schema']}.checkins do not match the answers"
    )


def test_user_requests_are_served_by_the_user_node(lab: Lab) -> None:
    user_nodes = set(lab.group("web_user"))
    answer = http("GET", lab.proxy_url() + "/api/stats", auth=lab.api_key())
    assert answer.status == 200, answer.describe()
    assert answer.node in user_nodes, f"/api/stats was served by {answer.node!r}, not by {sorted(user_nodes)}"


def test_user_requests_fall_back_to_agent_nodes(lab: Lab) -> None:
    agent_nodes = set(lab.group("web_agent"))
    user_nodes = lab.group("web_user")
    url = lab.proxy_url() + "/api/stats"
    admin = lab.api_key()

    def fetch() -> Answer:
        return http("GET", url, auth=admin)

    stopped = [lab.node(name) for name in user_nodes]
    for host in stopped:
        host.check_output("systemctl stop fleet-checkin")
    try:
        fallback = poll(fetch, lambda a: a.status == 200 and a.node in agent_nodes, FAILOVER_SECONDS)
    finally:
        for host in stopped:
            host.run("systemctl start fleet-checkin")
    recovered = poll(fetch, lambda a: a.status == 200 and a.node in user_nodes, RECOVERY_SECONDS)

    assert fallback.status == 200 and fallback.node in agent_nodes, (
        f"with fleet-checkin stopped on {user_nodes}, /api/stats got {fallback.describe()} after {FAILOVER_SECONDS}s"
    )
    assert recovered.status == 200 and recovered.node in user_nodes, (
        f"fleet-checkin started again, but after {RECOVERY_SECONDS}s /api/stats got {recovered.describe()}"
    )


def test_only_authenticated_agents_and_users_get_in(lab: Lab) -> None:
    plan = lab.vars(lab.group("all")[0])["fleet_plan"]
    mine, other = plan["tenants"][0]["name"], plan["tenants"][1]["name"]
    url = lab.proxy_url()
    victim = f"victim-{uuid.uuid4().hex[:12]}"
    forger = f"forger-{uuid.uuid4().hex[:12]}"

    def checkin(agent_id: str, token: str | None, seq: int = 1) -> Answer:
        return http("POST", url + "/agent/checkin", {"agent_id": agent_id, "tenant": mine, "seq": seq}, auth=token)

    anonymous = checkin(victim, None)
    assert anonymous.status == 401 and json.loads(anonymous.body)["ok"] is False, anonymous.describe()
    # The forger holds a real token, its own, and names the victim (more often than the victim's rate allows).
    forged = [checkin(victim, lab.agent_token(mine, forger), seq) for seq in range(1, 31)]
    assert {a.status for a in forged} <= {403, 429} and forged[0].status == 403, forged[0].describe()
    expected = f"the credential is not the one of agent {victim!r} of tenant {mine!r}"
    assert json.loads(forged[0].body)["error"] == expected
    # None of that was counted against the victim: its own check-in goes through.
    real = checkin(victim, lab.agent_token(mine, victim))
    assert real.status == 200, f"the real agent after 30 forged check-ins in its name: {real.describe()}"
    # A token of one tenant does not open another.
    crossed = http("POST", url + "/agent/checkin", {"agent_id": victim, "tenant": other, "seq": 1},
                   auth=lab.agent_token(mine, victim))
    assert crossed.status == 403, crossed.describe()

    scoped = lab.api_key(admin=False, tenant=mine)
    for path in (f"/api/tenants/{mine}/agents", "/api/stats"):
        for key in (None, scoped.split(".")[0] + ".not-the-secret"):
            answer = http("GET", url + path, auth=key)
            what = "no key" if key is None else "a wrong secret"
            assert answer.status == 401, f"{path} with {what}: {answer.describe()}"
            assert answer.headers.get("www-authenticate", "").startswith("Bearer"), answer.describe()
    assert http("GET", url + f"/api/tenants/{mine}/agents", auth=scoped).status == 200
    refused = [http("GET", url + f"/api/tenants/{other}/agents", auth=scoped),
               http("POST", url + f"/api/tenants/{other}/agents/{victim}/commands", {"command": "reboot"}, auth=scoped),
               http("GET", url + "/api/stats", auth=scoped)]
    assert [a.status for a in refused] == [403, 403, 403], [a.describe() for a in refused]
    assert http("GET", url + f"/api/tenants/{other}/agents", auth=lab.api_key()).status == 200


# -- replication ----------------------------------------------------------------------------


def shards(lab: Lab) -> list[dict[str, Any]]:
    first = lab.group("database")[0]
    return lab.vars(first)["fleet_plan"]["shards"]


def global_value(lab: Lab, name: str, variable: str) -> str:
    return mysql_rows(lab.node(name), f"SELECT @@GLOBAL.{variable}")[0][0]


def replica_status(lab: Lab, name: str) -> dict[str, str]:
    output = lab.node(name).check_output("mysql --batch -e 'SHOW SLAVE STATUS'")
    lines = output.splitlines()
    return dict(zip(lines[0].split("\t"), lines[1].split("\t"), strict=True)) if len(lines) == 2 else {}


def test_each_shard_has_one_writable_primary_that_holds_the_writer_address(lab: Lab) -> None:
    for shard in shards(lab):
        members = shard["members"]
        assert len(members) >= 2, f"shard {shard['shard']}: the lab plans a replica, got {members}"
        writable = [m for m in members if global_value(lab, m, "read_only") == "0"]
        assert writable == [shard["host"]], f"shard {shard['shard']}: writable {writable}, planned {shard['host']}"
        holders = [m for m in members
                   if f" {shard['writer_address']}/" in lab.node(m).check_output("ip -o -4 addr show")]
        assert holders == writable, f"shard {shard['shard']}: writer address {shard['writer_address']} on {holders}"


def test_replicas_follow_the_primary_with_gtid_and_semi_sync(lab: Lab) -> None:
    for shard in shards(lab):
        primary = shard["host"]
        assert mysql_rows(lab.node(primary), "SHOW STATUS LIKE 'Rpl_semi_sync_master_status'")[0][1] == "ON"
        assert global_value(lab, primary, "rpl_semi_sync_master_wait_point") == "AFTER_SYNC"
        for replica in shard["members"][1:]:
            status = replica_status(lab, replica)
            assert status.get("Slave_IO_Running") == "Yes" and status.get("Slave_SQL_Running") == "Yes", (
                f"{replica}: {status.get('Last_IO_Error') or status.get('Last_SQL_Error') or status}")
            assert status["Using_Gtid"] == "Slave_Pos"
            assert status["Master_Host"] == lab.vars(primary)["fleet_address"]
            assert global_value(lab, replica, "read_only") == "1"


def test_an_acknowledged_checkin_is_on_the_replica(lab: Lab) -> None:
    plan = lab.vars(lab.group("database")[0])["fleet_plan"]
    tenant = plan["tenants"][0]
    shard = next(s for s in plan["shards"] if s["shard"] == tenant["shard"])
    agent_id = f"replicated-{uuid.uuid4().hex[:12]}"
    answer = http("POST", lab.proxy_url() + "/agent/checkin",
                  {"agent_id": agent_id, "tenant": tenant["name"], "seq": 1, "status": "ok"},
                  auth=lab.agent_token(tenant["name"], agent_id))
    assert answer.status == 200, answer.describe()
    position = global_value(lab, shard["host"], "gtid_binlog_pos")
    for replica in shard["members"][1:]:
        # Semi-synchronous: the replica had the check-in before it was acknowledged; applied within seconds.
        waited = mysql_rows(lab.node(replica), f"SELECT MASTER_GTID_WAIT('{position}', 10)")[0][0]
        assert waited == "0", f"{replica}: not at GTID {position} after 10 s"
        rows = mysql_rows(lab.node(replica), f"SELECT COUNT(*) FROM `{shard['schema']}`.checkins "
                                             f"WHERE tenant = '{tenant['name']}' AND agent_id = '{agent_id}'")
        assert rows == [["1"]], f"{replica}: the acknowledged check-in of {agent_id} is not there"


# -- services and configuration ------------------------------------------------------------


def test_services_are_enabled_and_running(lab: Lab) -> None:
    problems = []
    for group_name, services in SERVICES_BY_GROUP.items():
        for name in lab.group(group_name):
            host = lab.node(name)
            for service in services:
                unit = host.service(service)
                if not unit.is_enabled:
                    problems.append(f"{name}: {service} is not enabled")
                if not unit.is_running:
                    problems.append(f"{name}: {service} is not running")
    assert not problems, "; ".join(problems)


def test_haproxy_configuration_is_valid(lab: Lab) -> None:
    for name in lab.group("proxy"):
        result = lab.node(name).run("haproxy -c -f /etc/haproxy/haproxy.cfg")
        assert result.rc == 0, f"{name}: haproxy -c failed: {result.stderr or result.stdout}"


def test_nginx_configuration_is_valid(lab: Lab) -> None:
    for name in lab.group("web_agent") + lab.group("web_user"):
        result = lab.node(name).run("nginx -t")
        assert result.rc == 0, f"{name}: nginx -t failed: {result.stderr}"


# -- hardening -----------------------------------------------------------------------------


# Run inside a node: the status of GET url, 0 when no HTTP answer came.
STATUS_FROM_NODE = ("import sys, urllib.error, urllib.request\n"
                    "try:\n"
                    "    print(urllib.request.urlopen(sys.argv[1], timeout=5).status)\n"
                    "except urllib.error.HTTPError as exc:\n"
                    "    print(exc.code)\n"
                    "except OSError:\n"
                    "    print(0)\n")


def test_web_nodes_serve_the_proxies_only(lab: Lab) -> None:
    """A client that reaches a web node directly would skip the proxies' TLS, limits and routing."""
    proxy, app = lab.group("proxy")[0], lab.group("app")[0]
    for name in lab.group("web_agent") + lab.group("web_user"):
        url = f"http://{lab.vars(name)['fleet_address']}/healthz"
        # From the controller (the lab network's gateway address): refused, in JSON.
        answer = http("GET", url)
        assert answer.status == 403, f"{name} from the controller: {answer.describe()}"
        assert answer.headers.get("content-type", "").startswith("application/json"), answer.headers
        assert json.loads(answer.body)["ok"] is False
        # From another node of the lab that is not a proxy: refused too.
        assert lab.node(app).check_output("python3 -c %s %s", STATUS_FROM_NODE, url) == "403", f"{name} from {app}"
        # From a proxy: served.
        assert lab.node(proxy).check_output("python3 -c %s %s", STATUS_FROM_NODE, url) == "200", f"{name} from {proxy}"


def test_mariadb_listens_on_its_private_address_or_for_its_writer_address(lab: Lab) -> None:
    for name in lab.group("database"):
        variables = lab.vars(name)
        shard = next(s for s in variables["fleet_plan"]["shards"] if s["shard"] == variables["fleet_shard"])
        # MariaDB 10.11 binds one address or all: a node that may hold the writer address binds all.
        expected = {"0.0.0.0"} if shard["writer_address"] else {variables["fleet_address"]}
        addresses = {address for address, port in tcp_listeners(lab.node(name)) if port == MARIADB_PORT}
        assert addresses == expected, f"{name}: mariadb listens on {sorted(addresses)}, expected {sorted(expected)}"


def test_root_logs_in_from_localhost_only(lab: Lab) -> None:
    for name in lab.group("database"):
        rows = mysql_rows(
            lab.node(name),
            "SELECT CONCAT(user, '@', host) FROM mysql.user WHERE user = 'root' AND host <> 'localhost'",
        )
        assert not rows, f"{name}: root accounts reachable from elsewhere: {[row[0] for row in rows]}"


def test_stats_page_requires_credentials(lab: Lab) -> None:
    for name in lab.group("proxy"):
        uri = lab.vars(name).get("proxy_stats_uri", "/stats")
        answer = http("GET", f"http://127.0.0.1:{lab.published_port(name, 8404)}{uri}")
        assert answer.status == 401, f"{name}: stats page without credentials: {answer.describe()}"
        assert answer.headers.get("www-authenticate", "").startswith("Basic"), f"{name}: 401 without a Basic challenge"


def test_proxy_exposes_only_its_ports_and_the_admin_socket(lab: Lab) -> None:
    for name in lab.group("proxy"):
        host = lab.node(name)
        assert host.file("/run/haproxy/admin.sock").is_socket, f"{name}: /run/haproxy/admin.sock is not a socket"
        ports = {port for address, port in tcp_listeners(host) if address != DOCKER_DNS_ADDRESS}
        assert ports == PROXY_TCP_PORTS, f"{name}: TCP listeners on {sorted(ports)}, expected {sorted(PROXY_TCP_PORTS)}"


def test_exactly_one_scheduler_is_active(lab: Lab) -> None:
    roles = {}
    for name in lab.group("app"):
        host = lab.node(name)
        deadline = time.monotonic() + SCHEDULER_STATUS_SECONDS
        result = host.run("fleet-scheduler-status")
        while result.rc != 0 and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
            result = host.run("fleet-scheduler-status")
        assert result.rc == 0, f"{name}: fleet-scheduler-status failed: {result.stderr}"
        roles[name] = json.loads(result.stdout)["role"]
    active = [name for name, role in roles.items() if role == "active"]
    assert len(active) == 1, f"exactly one app node must report itself active; roles: {roles}"
