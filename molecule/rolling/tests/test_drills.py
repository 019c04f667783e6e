"""Failure drills under simulated agent load, and the secure defaults, proven on the converged lab.

The secure-default checks come first (they change nothing), then the drills, each while the agent
simulator (tools/agentsim) sends check-ins to the proxies' floating address: kill the proxy holding
the address, kill an agent web node, kill the user web node, restart the database, flood from one
agent. Every drill prints its figures, asserts its bounds, proves from the ledger that no
acknowledged check-in was lost, and restores the lab (killed containers started again, every
server back up) for the next one.

Traffic goes only to the scenario's own containers: the floating address and the nodes on the
scenario's Docker network (agentsim --allow-network with the scenario's subnet), and the
proxies' ports published on 127.0.0.1. They run first in the rolling scenario, on its fresh lab,
before tests/test_rolling.py replaces its nodes.

    molecule test -s rolling
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
PLAYBOOKS = ROOT / "playbooks"
AGENTSIM = ROOT / "tools" / "agentsim"
# Ids of the scenario's agent master key and admin API key (inventory/group_vars/all/secrets.yml).
AGENT_MASTER_KEY_ID = "roll1"
ADMIN_API_KEY_ID = "roll-admin"
sys.path.insert(0, str(AGENTSIM))

sys.path.insert(0, str(ROOT / "tools" / "nolog"))

# The simulator and the secret scan are tools of the checkout, not installed packages.
import secret_tasks
from agentsim.agentkeys import load_agent_keys
from agentsim.roster import Roster

# Check-ins per second through the floating address during every drill.
LOAD_RATE = 150
# agentsim gives up on an answer after this long (its default); a drill's failures are counted by it.
AGENT_TIMEOUT_S = 5.0
# Bounds of the issue.
PROXY_FAILOVER_MAX_S = 3.0
WEB_DOWN_MAX_S = 2.0
WEB_KILL_FAILED_MAX_RATIO = 0.001
# "Never a hang" while the database is down: every answer within the web role's connect timeout
# (web_db_connect_timeout, 2 s) and a margin for a loaded machine.
DB_DOWN_ANSWER_MAX_S = 4.0
# The per-agent rate limit (proxy_agent_rate_limit per proxy_agent_rate_period) and the flood.
FLOOD_RATE = 200
FLOOD_SECONDS = 15
FLOOD_QUIET_S = 10
# Other agents keep their latency: their p99 under the flood within this factor of their p99 just
# before it (or a few milliseconds more: on a 2-core machine the flood's own client shares the CPU).
FLOOD_P99_FACTOR = 2.0
FLOOD_P99_SLACK_MS = 20.0
# Waiting for a node that was started again (systemd boot, services, health checks).
RESTORE_TIMEOUT_S = 120
POLL_S = 0.2
HTTP_TIMEOUT_S = 5

# Units and the unprivileged user each service's workers run as.
SANDBOXED_UNITS = {
    "proxy": ["haproxy", "keepalived"],
    "web_agent": ["nginx", "fleet-checkin"],
    "web_user": ["nginx", "fleet-checkin"],
    "database": ["mariadb"],
}
SERVICE_USERS = {
    "proxy": {"haproxy": "haproxy"},
    "web_agent": {"nginx": "www-data", "gunicorn": "fleet-checkin"},
    "database": {"mariadbd": "mysql"},
}
FIGURES: dict[str, dict[str, Any]] = {}

# Straight to the scenario's addresses, whatever proxy the controller's environment sets.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_insecure = ssl.create_default_context()
_insecure.check_hostname = False
_insecure.verify_mode = ssl.CERT_NONE
_https_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                            urllib.request.HTTPSHandler(context=_insecure))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_no_redirect_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def plain(value: Any) -> Any:
    """ansible-inventory's untrusted-string markers off."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return plain(value["__ansible_unsafe"])
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    error: str = ""

    @property
    def node(self) -> str:
        return self.headers.get("x-fleet-node", "")


def http(url: str, *, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None,
         opener: urllib.request.OpenerDirector = _opener, auth: tuple[str, str] | None = None) -> Answer:
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    if auth is not None:
        import base64  # noqa: PLC0415

        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with opener.open(request, timeout=HTTP_TIMEOUT_S) as response:
            return Answer(response.status, {k.lower(): v for k, v in response.headers.items()}, response.read())
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read())
    except (urllib.error.URLError, OSError) as exc:
        return Answer(0, error=str(exc))


def raw_exchange(host: str, port: int, request: bytes) -> bytes:
    """Send `request` as is and return the start of the answer (b"" when the connection closed without one)."""
    with socket.create_connection((host, port), timeout=HTTP_TIMEOUT_S) as conn:
        with contextlib.suppress(OSError):
            conn.sendall(request)
        with contextlib.suppress(OSError):
            return conn.recv(4096)
    return b""


def tcp_listeners(output: str) -> list[str]:
    """Local address:port of every listening TCP socket in `ss -H -l -t -n` output."""
    return [line.split()[3] for line in output.splitlines() if len(line.split()) >= 4]


def checkin_body(agent_id: str, tenant: str, seq: int) -> bytes:
    return json.dumps({"agent_id": agent_id, "tenant": tenant, "seq": seq, "status": "ok"}).encode()


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = POLL_S) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)


@dataclass
class Load:
    """One agentsim run in the background."""

    label: str
    process: subprocess.Popen[bytes]
    report: Path
    ledger: Path
    log: Path
    plan: Path

    def finish(self, timeout: float) -> dict[str, Any]:
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(timeout=AGENT_TIMEOUT_S + 30)
        return self._report()

    def stop(self) -> dict[str, Any]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=AGENT_TIMEOUT_S + 30)
        return self._report()

    def _report(self) -> dict[str, Any]:
        assert self.process.returncode in (0, 130), self.log.read_text()[-3000:]
        assert self.report.exists(), self.log.read_text()[-3000:]
        return json.loads(self.report.read_text())


class Scenario:
    def __init__(self, inventory: str, workdir: Path):
        self.inventory = inventory
        self.workdir = workdir
        self.bin = Path(sys.executable).parent
        done = subprocess.run([str(self.bin / "ansible-inventory"), "-i", inventory, "--list"],
                              capture_output=True, text=True, check=True, timeout=300)
        self.data = plain(json.loads(done.stdout))
        self.hostvars = self.data["_meta"]["hostvars"]
        some_proxy = self.hosts("proxy")[0]
        self.vip = self.hostvars[some_proxy]["proxy_floating_address"]
        self.subnet = self.hostvars[some_proxy]["lab_subnet"]
        self.plan = workdir / "plan.json"
        self.plan.write_text(json.dumps({"fleet_plan": self.hostvars[some_proxy]["fleet_plan"]}))
        base = Path(inventory)
        self.secrets = (base if base.is_dir() else base.parent) / "secrets"
        # The simulator issues its agents' tokens from the scenario's generated master key, as enrolment would.
        self.agent_keys = workdir / "agent-keys.json"
        self.agent_keys.write_text(json.dumps(
            {"agent_master_keys": [{"id": AGENT_MASTER_KEY_ID, "secret": self.secret("fleet_agent_master")}]}))
        self.admin_key = f"{ADMIN_API_KEY_ID}.{self.secret('fleet_api_admin')}"

    # -- inventory ---------------------------------------------------------------------------

    def hosts(self, group: str) -> list[str]:
        hosts = sorted(self.data.get(group, {}).get("hosts", []))
        assert hosts, f"the inventory has no host in group {group!r}"
        return hosts

    def address(self, host: str) -> str:
        return self.hostvars[host]["fleet_address"]

    def published(self, proxy: str, inner: int) -> int:
        variables = self.hostvars[proxy]
        ports = variables["lab_published_ports"]
        for spec in ports.get(str(variables["fleet_index"]), []):
            address, port, container_port = spec.split(":")
            if address == "127.0.0.1" and int(container_port) == inner:
                return int(port)
        raise AssertionError(f"{proxy} publishes no port {inner} on 127.0.0.1")

    def secret(self, name: str) -> str:
        return (self.secrets / name).read_text().split()[0]

    # -- nodes -------------------------------------------------------------------------------

    def docker(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=check)

    def run(self, node: str, command: str, check: bool = True, timeout: float = 60) -> str:
        done = self.docker("exec", node, "sh", "-c", command, timeout=timeout, check=False)
        if check:
            assert done.returncode == 0, f"{node}: {command}: {done.stderr or done.stdout}"
        return done.stdout

    def holds_vip(self, proxy: str) -> bool:
        done = self.docker("exec", proxy, "ip", "-4", "-o", "addr", "show", "to", f"{self.vip}/32",
                           timeout=15, check=False)
        return done.returncode == 0 and bool(done.stdout.strip())

    def vip_holder(self) -> str:
        holders = [proxy for proxy in self.hosts("proxy") if self.holds_vip(proxy)]
        assert len(holders) == 1, f"{self.vip} is held by {holders}: exactly one proxy must hold it"
        return holders[0]

    def journal_first(self, node: str, unit: str, pattern: str, since: float) -> float | None:
        """Time (epoch seconds) of the first journal line of `unit` matching `pattern` since `since`."""
        out = self.run(node, f"journalctl -u {unit} -o short-unix --no-pager --since @{int(since) - 1}")
        for line in out.splitlines():
            stamp, _, message = line.partition(" ")
            with contextlib.suppress(ValueError):
                if float(stamp) >= since and re.search(pattern, message):
                    return float(stamp)
        return None

    def servers(self, proxy: str) -> list[dict[str, Any]]:
        return json.loads(self.run(proxy, "fleet-haproxy-backend state"))["servers"]

    def server_status(self, proxy: str, server: str) -> set[str]:
        return {s["status"] for s in self.servers(proxy) if s["server"] == server}

    def kill(self, node: str) -> float:
        """docker kill `node`; return when it died (Docker's own record, epoch seconds)."""
        self.docker("kill", node)
        finished = self.docker("inspect", "--format", "{{.State.FinishedAt}}", node).stdout.strip()
        # RFC 3339 with nanoseconds: keep microseconds for datetime.
        stamp = re.sub(r"(\.\d{6})\d*", r"\1", finished).replace("Z", "+00:00")
        return datetime.fromisoformat(stamp).timestamp()

    def booted(self, node: str) -> bool:
        done = self.docker("exec", node, "systemctl", "is-system-running", timeout=15, check=False)
        return done.stdout.strip() in ("running", "degraded")

    def start_again(self, node: str, units: list[str]) -> float:
        """`docker start` a killed node; wait for systemd and `units`; return seconds taken."""
        started = time.monotonic()
        self.docker("start", node)
        wait_for(f"systemd in {node}", lambda: self.booted(node), RESTORE_TIMEOUT_S, every=1)
        for unit in units:
            wait_for(f"{unit} on {node}", lambda unit=unit: self.docker(
                "exec", node, "systemctl", "is-active", unit, timeout=15, check=False).returncode == 0,
                RESTORE_TIMEOUT_S, every=1)
        return time.monotonic() - started

    def all_servers_up(self, proxy: str) -> bool:
        return {s["status"] for s in self.servers(proxy)} == {"UP"}

    # -- load --------------------------------------------------------------------------------

    def agentsim(self, label: str, *args: str) -> Load:
        report, ledger, log = (self.workdir / f"{label}.{suffix}" for suffix in ("json", "jsonl", "log"))
        env = dict(os.environ, PYTHONPATH=str(AGENTSIM))
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "agentsim", "run", "--url", f"http://{self.vip}",
                 "--allow-network", self.subnet, "--json", str(report), "--ledger", str(ledger),
                 "--label", label, "--timeout", str(AGENT_TIMEOUT_S), "--agent-keys", str(self.agent_keys), *args],
                env=env, stdout=out, stderr=subprocess.STDOUT)
        return Load(label, process, report, ledger, log, self.plan)

    def load(self, label: str, seconds: float, rate: float = LOAD_RATE) -> Load:
        return self.agentsim(label, "--plan", str(self.plan), "--rate", str(rate), "--duration", str(seconds))

    def verify(self, load: Load) -> dict[str, Any]:
        check = self.workdir / f"{load.label}.verify.json"
        done = subprocess.run([sys.executable, "-m", "agentsim", "verify", "--ledger", str(load.ledger),
                               "--plan", str(self.plan), "--json", str(check)],
                              env=dict(os.environ, PYTHONPATH=str(AGENTSIM)), capture_output=True, text=True,
                              timeout=300, check=False)
        assert done.returncode in (0, 1), done.stderr
        return json.loads(check.read_text())

    def playbook(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bin / "ansible-playbook"), "-i", self.inventory, *args],
                              capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def scenario(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    inventory = request.config.option.ansible_inventory
    assert inventory, "run through molecule (it passes --ansible-inventory)"
    lab = Scenario(inventory, tmp_path_factory.mktemp("drills"))
    yield lab
    if FIGURES:
        (lab.workdir / "figures.json").write_text(json.dumps(FIGURES, indent=2))
        print("\n[drills] figures:\n" + json.dumps(FIGURES, indent=2))


def record(drill: str, **figures: Any) -> None:
    FIGURES[drill] = figures
    print(f"\n[drills] {drill}: " + ", ".join(f"{k} {v}" for k, v in figures.items()), flush=True)


def error_seconds(run: dict[str, Any]) -> list[int]:
    return [row["second"] for row in run["timeseries"] if row["errors"]]


def second_of(run: dict[str, Any], moment: float) -> int:
    return int(moment - run["unix_start"])


def assert_nothing_lost(run: dict[str, Any], check: dict[str, Any]) -> None:
    assert run["throughput"]["acknowledged"] > 0
    assert check["ok"], f"lost or misplaced acknowledged check-ins: {check}"
    assert check["acknowledged"] == run["throughput"]["acknowledged"]


# -- secure by default ------------------------------------------------------------------------


def test_stats_and_metrics_listen_on_the_private_address_with_authentication(scenario: Scenario) -> None:
    password = scenario.secret("fleet_proxy_stats")
    for proxy in scenario.hosts("proxy"):
        listeners = tcp_listeners(scenario.run(proxy, "ss -H -l -t -n"))
        private = scenario.address(proxy)
        stats = [entry for entry in listeners if entry.endswith(":8404")]
        assert stats == [f"{private}:8404"], f"{proxy}: the stats listener is on {stats}, not only {private}"
        # Runtime API: a local socket, no TCP port besides the frontends and the stats listener
        # (127.0.0.11 is Docker's DNS resolver in the container, not the node's).
        ports = {entry.rpartition(":")[2] for entry in listeners if not entry.startswith("127.0.0.11:")}
        assert ports == {"80", "443", "8404"}, f"{proxy}: TCP listeners {sorted(listeners)}"
        assert scenario.run(proxy, "stat -c %F /run/haproxy/admin.sock").strip() == "socket"
        port = scenario.published(proxy, 8404)
        for path in ("/stats", "/metrics"):
            url = f"http://127.0.0.1:{port}{path}"
            assert http(url).status == 401, f"{proxy}{path} answers without credentials"
            assert http(url, auth=("fleet-stats", "not-the-password")).status == 401
            assert http(url, auth=("fleet-stats", password)).status == 200, f"{proxy}{path} refuses the password"
        assert http(f"http://{scenario.vip}:8404/stats").status == 0, "stats answer on the floating address"


def test_tls_is_modern_users_are_redirected_and_agents_may_use_either(scenario: Scenario) -> None:
    def handshake(version: ssl.TLSVersion) -> tuple[str, str] | None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with warnings.catch_warnings():  # TLS 1.1 is deprecated: that is the point
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = context.maximum_version = version
        with contextlib.suppress(OSError, ssl.SSLError):
            context.set_ciphers("ALL:@SECLEVEL=0")
        try:
            with socket.create_connection((scenario.vip, 443), timeout=HTTP_TIMEOUT_S) as raw, \
                    context.wrap_socket(raw) as tls:
                cipher = tls.cipher()
                return tls.version() or "", cipher[0] if cipher else ""
        except (ssl.SSLError, OSError):
            return None

    assert handshake(ssl.TLSVersion.TLSv1_1) is None, "TLS 1.1 is accepted"
    tls12 = handshake(ssl.TLSVersion.TLSv1_2)
    tls13 = handshake(ssl.TLSVersion.TLSv1_3)
    assert tls12 and tls12[1].startswith("ECDHE-") and ("GCM" in tls12[1] or "CHACHA20" in tls12[1]), tls12
    assert tls13 and tls13[0] == "TLSv1.3", tls13

    user = http(f"http://{scenario.vip}/api/stats", opener=_no_redirect_opener)
    assert user.status == 301 and user.headers.get("location", "").startswith(f"https://{scenario.vip}/"), user
    secure = http(f"https://{scenario.vip}/api/stats", opener=_https_opener,
                  headers={"Authorization": f"Bearer {scenario.admin_key}"})
    assert secure.status == 200
    # HTTPS answers pin browsers to HTTPS; no answer may be sniffed into another type.
    assert secure.headers.get("strict-transport-security", "").startswith("max-age="), secure.headers
    assert "strict-transport-security" not in user.headers, user.headers
    assert user.headers.get("x-content-type-options") == "nosniff", user.headers
    assert secure.headers.get("x-content-type-options") == "nosniff", secure.headers
    tenant = json.loads(scenario.plan.read_text())["fleet_plan"]["tenants"][0]["name"]
    seq = time.time_ns() // 1000
    keys = load_agent_keys(str(scenario.agent_keys), [tenant])
    for scheme, opener in (("http", _opener), ("https", _https_opener)):
        agent_id = f"tls-probe-{scheme}"
        answer = http(f"{scheme}://{scenario.vip}/agent/checkin", method="POST", opener=opener,
                      body=checkin_body(agent_id, tenant, seq),
                      headers={"Content-Type": "application/json",
                               "Authorization": f"Bearer {keys.token(tenant, agent_id)}"})
        assert answer.status == 200, f"agent check-in over {scheme}: {answer}"


def test_request_size_header_limits_and_slow_client_timeouts(scenario: Scenario) -> None:
    head = f"POST /agent/checkin HTTP/1.1\r\nHost: {scenario.vip}\r\nContent-Type: application/json\r\n"
    big_header = raw_exchange(scenario.vip, 80, (head + "X-Padding: " + "x" * 20000 + "\r\n"
                                                 "Content-Length: 2\r\n\r\n{}").encode())
    assert big_header.startswith(b"HTTP/1.1 400"), f"a 20 kB header got {big_header[:40]!r}"
    many = raw_exchange(scenario.vip, 80, (head + "".join(f"X-H{i}: 1\r\n" for i in range(120))
                                           + "Content-Length: 2\r\n\r\n{}").encode())
    assert many.startswith(b"HTTP/1.1 400"), f"120 headers got {many[:40]!r}"
    # 20 MB announced, a buffer's worth sent: refused by the proxy without reading the rest.
    huge = raw_exchange(scenario.vip, 80, (head + "Content-Length: 20000000\r\n\r\n").encode() + b" " * 20000)
    assert huge.startswith(b"HTTP/1.1 413"), f"a 20 MB body got {huge[:40]!r}"
    # The errors of the proxy's rules speak the API's JSON, like the service's. (A request head that does not
    # parse, above, is answered by HAProxy 2.6's connection layer with its built-in HTML page.)
    head_part, _, body_part = huge.partition(b"\r\n\r\n")
    assert b"\r\ncontent-type: application/json" in head_part.lower(), head_part
    assert json.loads(body_part)["ok"] is False, body_part
    config = scenario.run(scenario.hosts("proxy")[0], "cat /etc/haproxy/haproxy.cfg")
    for line in ("timeout http-request", "timeout client", "timeout http-keep-alive", "option http-buffer-request"):
        assert line in config, f"haproxy.cfg has no {line!r}"


def test_database_is_private_and_its_accounts_least_privileged(scenario: Scenario) -> None:
    for db in scenario.hosts("database"):
        listeners = [e for e in tcp_listeners(scenario.run(db, "ss -H -l -t -n")) if e.endswith(":3306")]
        assert listeners == [f"{scenario.address(db)}:3306"], f"{db}: mariadb listens on {listeners}"
        # Debian's socket activation would listen on every address after the next boot.
        masked = scenario.run(db, "systemctl is-enabled mariadb.socket", check=False).strip()
        assert masked == "masked", f"{db}: mariadb.socket is {masked}"

        def rows(sql: str, db: str = db) -> list[list[str]]:
            out = scenario.run(db, f"mysql --batch --skip-column-names -e {json.dumps(sql)}")
            return [line.split("\t") for line in out.splitlines() if line]

        assert rows("SELECT user, host FROM mysql.user WHERE user = ''") == [], "anonymous accounts"
        assert rows("SELECT user, host FROM mysql.user WHERE user = 'root' AND host <> 'localhost'") == []
        assert rows("SHOW DATABASES LIKE 'test'") == [], "the test database exists"
        accounts = rows("SELECT user, host FROM mysql.user WHERE user LIKE 'fleet\\_%'")
        assert accounts, "no fleet_* account"
        for user, host in accounts:
            grants = " ".join(g[0] for g in rows(f"SHOW GRANTS FOR '{user}'@'{host}'"))
            if user == "fleet_monitor":
                assert "ON *.*" in grants and "ALL PRIVILEGES" not in grants
                monitor = r"GRANT (PROCESS|BINLOG MONITOR)(, (PROCESS|BINLOG MONITOR))* ON \*\.\*"
                assert re.search(monitor, grants), grants
            else:
                assert "ALL PRIVILEGES" not in grants and "GRANT OPTION" not in grants, grants
                assert re.search(r"GRANT USAGE ON \*\.\*", grants), f"{user}@{host} has global privileges: {grants}"
                # mysql --batch doubles the backslashes of the escaped schema name.
                shards = re.findall(r"GRANT ([A-Z, ]+) ON `fleet\\+_shard\\+_\d+`\.\*", grants)
                wanted = {"fleet_web": "SELECT, INSERT, UPDATE", "fleet_app": "SELECT, INSERT, UPDATE, DELETE"}
                assert shards and set(shards) == {wanted.get(user, "?")}, f"{user}@{host}: {grants}"


def test_services_run_as_their_own_users_in_a_sandbox(scenario: Scenario) -> None:
    problems = []
    for group, units in SANDBOXED_UNITS.items():
        for node in scenario.hosts(group):
            for unit in units:
                props = dict(line.split("=", 1) for line in scenario.run(
                    node, f"systemctl show -p NoNewPrivileges -p ProtectSystem -p PrivateTmp -p ActiveState {unit}",
                ).splitlines() if "=" in line)
                wanted = {"ActiveState": "active", "NoNewPrivileges": "yes", "PrivateTmp": "yes"}
                problems += [f"{node} {unit}: {k}={props.get(k)}" for k, v in wanted.items() if props.get(k) != v]
                if props.get("ProtectSystem") not in ("full", "strict"):
                    problems.append(f"{node} {unit}: ProtectSystem={props.get('ProtectSystem')}")
    for group, processes in SERVICE_USERS.items():
        for node in scenario.hosts(group):
            table = [line.split() for line in scenario.run(node, "ps -eo user:32,comm --no-headers").splitlines()]
            for command, user in processes.items():
                users = {row[0] for row in table if row[1] == command}
                # A master that binds the ports starts as root; its workers run as the service's user.
                if user not in users or users - {user, "root"}:
                    problems.append(f"{node}: {command} runs as {sorted(users)}, expected workers as {user}")
                if command in ("gunicorn", "mariadbd") and users != {user}:
                    problems.append(f"{node}: {command} runs as {sorted(users)}, expected only {user}")
    for proxy in scenario.hosts("proxy"):
        config = scenario.run(proxy, "cat /etc/keepalived/keepalived.conf")
        assert "enable_script_security" in config and "script_user keepalived_script" in config
    assert not problems, "; ".join(problems)


def test_no_secret_in_verbose_output(scenario: Scenario) -> None:
    """Every secret-touching task hides its values: run them at -vvv --diff --check with unique secrets."""
    marker = f"drills-secret-{uuid.uuid4().hex}"
    key = scenario.workdir / "probe.key"
    cert = scenario.workdir / "probe.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=probe",
                    "-keyout", str(key), "-out", str(cert)], capture_output=True, check=True, timeout=60)
    key_lines = [line for line in key.read_text().splitlines() if line and not line.startswith("-----")]
    extra: dict[str, str] = {name: f"{marker}-{name}" for name in (
        "fleet_db_web_password", "fleet_db_app_password", "fleet_db_monitor_password", "fleet_db_replication_password",
        "fleet_proxy_stats_password")}
    extra.update(proxy_tls_certificate=cert.read_text(), proxy_tls_key=key.read_text())
    keys: dict[str, Any] = {
        "fleet_agent_master_keys": [{"id": "m1", "secret": f"{marker}-agent-master"}],
        "fleet_api_keys": [{"id": "probe", "secret": f"{marker}-api-key", "admin": True}]}
    extra_file = scenario.workdir / "secrets.json"
    extra_file.write_text(json.dumps({**extra, **keys}))
    extra_file.chmod(0o600)
    # The role task files that touch a secret (the same scan as tests/unit/test_no_secret_in_output.py),
    # each on a node of its tier, changing nothing (--check).
    files = secret_tasks.role_task_files(secret_tasks.scan())
    tier = {"proxy": "proxy", "web": "web_agent", "app": "app", "database": "database"}
    node = {role: scenario.hosts(tier[role])[0] for role in files}
    # One play, every node on its own (strategy free): the nodes run their files at the same time.
    plays = [{"name": "Secret-touching task files of the roles", "hosts": ",".join(node.values()),
              "strategy": "ansible.builtin.free", "become": True, "tasks": [
                  {"name": f"Run tasks/{name} of the {role} role", "when": f"inventory_hostname == '{node[role]}'",
                   "ansible.builtin.include_role": {"name": f"fleetscale.split.{role}", "tasks_from": name}}
                  for role, names in files.items() for name in names]}]
    playbook = scenario.workdir / "secret_tasks.yml"
    playbook.write_text(json.dumps(plays))
    started = time.monotonic()
    done = scenario.playbook(str(playbook), "--check", "--diff", "-vvv", "-e", f"@{extra_file}")
    output = done.stdout + done.stderr
    (scenario.workdir / "secrets.vvv.log").write_text(output)
    assert done.returncode == 0, output[-5000:]
    leaks = [name for name in extra if name != "proxy_tls_certificate" and f"{marker}-{name}" in output]
    leaks += ["proxy_tls_key"] * any(line in output for line in key_lines)
    leaks += [name for name in ("agent-master", "api-key") if f"{marker}-{name}" in output]
    record("secrets", task_files=files, output_lines=output.count("\n"), seconds=round(time.monotonic() - started))
    assert "the output has been hidden" in output, "no task hid anything: did the secret tasks run?"
    assert not leaks, f"secrets printed at -vvv: {leaks} (see {scenario.workdir / 'secrets.vvv.log'})"


# -- drills -----------------------------------------------------------------------------------


def test_drill_1_kill_the_proxy_holding_the_floating_address(scenario: Scenario) -> None:
    holder = scenario.vip_holder()
    other = next(p for p in scenario.hosts("proxy") if p != holder)
    load = scenario.load("proxy-kill", 30)
    time.sleep(8)
    killed_at = scenario.kill(holder)
    wait_for(f"{scenario.vip} on {other}", lambda: scenario.holds_vip(other), 15, every=0.1)
    master_at = scenario.journal_first(other, "keepalived", r"Entering MASTER STATE", killed_at)
    assert master_at is not None, f"{other}: keepalived logged no MASTER transition"
    failover = master_at - killed_at
    run = load.finish(60)
    check = scenario.verify(load)
    killed = second_of(run, killed_at)
    seconds = error_seconds(run)
    kinds = {k: v for k, v in run["errors"]["by_kind"].items() if v}
    record("1 proxy kill", failover_s=round(failover, 2), failed_requests=run["errors"]["total"],
           error_kinds=kinds, error_seconds=seconds, kill_second=killed, arrivals=run["throughput"]["arrivals"],
           lost_checkins=check.get("missing", 0), p99_ms=run["latency_ms"]["p99"])
    assert failover <= PROXY_FAILOVER_MAX_S, f"the floating address moved after {failover:.2f} s"
    # Failures only for requests on connections to the dead proxy: connection-level, around the kill.
    assert set(kinds) <= {"connect", "timeout"}, kinds
    window = range(killed - 1, killed + math.ceil(failover) + math.ceil(AGENT_TIMEOUT_S) + 2)
    assert all(second in window for second in seconds), f"errors at seconds {seconds}, kill at {killed}"
    assert_nothing_lost(run, check)

    # Restore: the proxy comes back as a backup; without preemption the address stays where it is.
    scenario.start_again(holder, ["haproxy", "keepalived"])
    time.sleep(3)
    assert scenario.holds_vip(other) and not scenario.holds_vip(holder), "the floating address moved back"


def test_floating_address_moves_when_haproxy_stops(scenario: Scenario) -> None:
    holder = scenario.vip_holder()
    other = next(p for p in scenario.hosts("proxy") if p != holder)
    stopped_at = time.time()
    scenario.run(holder, "systemctl stop haproxy")
    try:
        wait_for(f"{scenario.vip} on {other} after haproxy stopped on {holder}",
                 lambda: scenario.holds_vip(other), 15, every=0.2)
        moved_at = scenario.journal_first(other, "keepalived", r"Entering MASTER STATE", stopped_at)
    finally:
        scenario.run(holder, "systemctl start haproxy")
    assert moved_at is not None
    record("haproxy stop", moved_after_s=round(moved_at - stopped_at, 2))
    assert not scenario.holds_vip(holder)


def test_drill_2_kill_an_agent_web_node(scenario: Scenario) -> None:
    victim = scenario.hosts("web_agent")[0]
    holder = scenario.vip_holder()
    load = scenario.load("agent-web-kill", 300)
    try:
        time.sleep(8)
        killed_at = scenario.kill(victim)
        wait_for(f"{victim} DOWN on {holder}", lambda: scenario.server_status(holder, victim) == {"DOWN"}, 20)
        down_at = scenario.journal_first(holder, "haproxy", rf"Server agents/{victim} is DOWN", killed_at)
        time.sleep(5)
        restarted_at = time.monotonic()
        scenario.start_again(victim, ["nginx", "fleet-checkin"])
        wait_for(f"{victim} UP on {holder}", lambda: scenario.server_status(holder, victim) == {"UP"},
                 RESTORE_TIMEOUT_S)
        rejoined = time.monotonic() - restarted_at
        time.sleep(5)
    finally:
        run = load.stop()
    check = scenario.verify(load)
    assert down_at is not None, f"{holder}: no 'Server agents/{victim} is DOWN' in its log"
    taken_out = down_at - killed_at
    arrivals = run["throughput"]["arrivals"]
    failed = run["errors"]["total"]
    record("2 agent web kill", taken_out_s=round(taken_out, 2), failed_requests=failed, arrivals=arrivals,
           failed_pct=round(100 * failed / arrivals, 3),
           error_kinds={k: v for k, v in run["errors"]["by_kind"].items() if v},
           lost_checkins=check.get("missing", 0), rejoined_after_start_s=round(rejoined, 1),
           p99_ms=run["latency_ms"]["p99"])
    assert taken_out <= WEB_DOWN_MAX_S, f"{victim} was taken out after {taken_out:.2f} s"
    assert failed <= WEB_KILL_FAILED_MAX_RATIO * arrivals, f"{failed} of {arrivals} requests failed: {run['errors']}"
    assert_nothing_lost(run, check)
    # It rejoined: UP on every proxy and answering again.
    for proxy in scenario.hosts("proxy"):
        wait_for(f"every server UP on {proxy}", lambda proxy=proxy: scenario.all_servers_up(proxy), RESTORE_TIMEOUT_S)
    after = scenario.load("agent-web-rejoined", 8)
    assert victim in after.finish(60)["nodes"], f"{victim} answers no check-in after it rejoined"


def test_drill_3_kill_the_user_web_node(scenario: Scenario) -> None:
    victim = scenario.hosts("web_user")[0]
    agents = set(scenario.hosts("web_agent"))
    tenant = json.loads(scenario.plan.read_text())["fleet_plan"]["tenants"][0]["name"]
    url = f"https://{scenario.vip}/api/tenants/{tenant}/agents?limit=5"
    admin = {"Authorization": f"Bearer {scenario.admin_key}"}
    answers: list[tuple[float, Answer]] = []
    stop = threading.Event()

    def users() -> None:  # a bounded stream of user requests, 5 per second
        for _ in range(40 * 5):
            if stop.is_set():
                return
            answers.append((time.time(), http(url, opener=_https_opener, headers=admin)))
            time.sleep(0.2)

    thread = threading.Thread(target=users, daemon=True)
    load = scenario.load("user-web-kill", 25)
    thread.start()
    time.sleep(6)
    # Docker records the death once every process of the node is gone: answers that came back
    # while it was dying may already be a backup's. Before means before the kill was sent.
    kill_sent_at = time.time()
    killed_at = scenario.kill(victim)
    run = load.finish(60)
    stop.set()
    thread.join(timeout=HTTP_TIMEOUT_S + 2)
    check = scenario.verify(load)
    before = [a for t, a in answers if t < kill_sent_at]
    after = [(t, a) for t, a in answers if t >= killed_at]
    settled = [a for t, a in after if t >= killed_at + WEB_DOWN_MAX_S + 1]
    failed_users = sum(1 for _, a in after if a.status != 200)
    record("3 user web kill", user_requests=len(answers), user_failed_after_kill=failed_users,
           user_served_by_agents_after=sum(1 for a in settled if a.node in agents),
           agent_failed_requests=run["errors"]["total"], lost_checkins=check.get("missing", 0),
           agent_p99_ms=run["latency_ms"]["p99"])
    assert before, "no user request was answered before the kill"
    assert all(a.status == 200 and a.node == victim for a in before), \
        [(round(t - kill_sent_at, 2), a.status, a.node, a.error) for t, a in answers
         if t < kill_sent_at and (a.status != 200 or a.node != victim)]
    assert settled and all(a.status == 200 and a.node in agents for a in settled), \
        [(a.status, a.node, a.error) for a in settled if a.status != 200 or a.node not in agents]
    assert run["errors"]["total"] == 0, f"agent traffic failed: {run['errors']}"
    assert_nothing_lost(run, check)

    scenario.start_again(victim, ["nginx", "fleet-checkin"])
    for proxy in scenario.hosts("proxy"):
        wait_for(f"every server UP on {proxy}", lambda proxy=proxy: scenario.all_servers_up(proxy), RESTORE_TIMEOUT_S)
    assert wait_for("user traffic back on the user node",
                    lambda: http(url, opener=_https_opener).node == victim, 30)


def test_drill_4_restart_the_database(scenario: Scenario) -> None:
    db = scenario.hosts("database")[0]
    holder = scenario.vip_holder()
    load = scenario.load("db-restart", 300)
    try:
        time.sleep(6)
        restart_at = time.time()
        scenario.docker("restart", db, timeout=180)
        wait_for(f"systemd in {db}", lambda: scenario.booted(db), RESTORE_TIMEOUT_S, every=1)
        wait_for(f"mariadb on {db}", lambda: scenario.docker(
            "exec", db, "systemctl", "is-active", "mariadb", check=False).returncode == 0, RESTORE_TIMEOUT_S, every=1)
        db_back_at = time.time()
        # Nobody touches the web, app or proxy nodes: they must come back by themselves.
        wait_for(f"every server UP on {holder}", lambda: scenario.all_servers_up(holder), RESTORE_TIMEOUT_S)
        recovered_at = time.time()
        time.sleep(8)
    finally:
        run = load.stop()
    check = scenario.verify(load)
    seconds = error_seconds(run)
    kinds = {k: v for k, v in run["errors"]["by_kind"].items() if v}
    failed_answers = [row for row in run["timeseries"] if row["errors"]]
    record("4 database restart", db_down_s=round(db_back_at - restart_at, 1),
           all_up_after_db_back_s=round(recovered_at - db_back_at, 1), failed_requests=run["errors"]["total"],
           error_kinds=kinds, status_codes=run["status_codes"], error_seconds=f"{seconds[:1]}..{seconds[-1:]}",
           max_answer_ms=run["latency_ms"]["max"], lost_checkins=check.get("missing", 0),
           p99_ms=run["latency_ms"]["p99"])
    assert failed_answers, "no check-in failed while the database was down"
    assert set(kinds) == {"5xx"}, f"failures other than a clean 5xx: {run['errors']}"
    assert set(run["status_codes"]) <= {"200", "503"}, run["status_codes"]
    assert run["latency_ms"]["max"] <= DB_DOWN_ANSWER_MAX_S * 1000, f"an answer took {run['latency_ms']['max']} ms"
    last = second_of(run, recovered_at)
    assert all(second <= last for second in seconds), f"errors after every node was back: {seconds}, back at {last}"
    assert_nothing_lost(run, check)
    for proxy in scenario.hosts("proxy"):
        wait_for(f"every server UP on {proxy}", lambda proxy=proxy: scenario.all_servers_up(proxy), RESTORE_TIMEOUT_S)
    # After the reboot the server listens on its private address only (no socket activation).
    listeners = [e for e in tcp_listeners(scenario.run(db, "ss -H -l -t -n")) if e.endswith(":3306")]
    assert listeners == [f"{scenario.address(db)}:3306"], f"{db}: mariadb listens on {listeners} after its restart"
    for app in scenario.hosts("app"):
        failed = scenario.run(app, "systemctl list-units --failed --plain --no-legend 'fleet-*'").strip()
        assert not failed, f"{app}: failed units after the database came back: {failed}"


def test_drill_5_one_agent_floods(scenario: Scenario) -> None:
    plan = json.loads(scenario.plan.read_text())["fleet_plan"]
    counts = {t["name"]: t["agents"] for t in plan["tenants"]}
    # The flooding agent: agent-000000 of a tenant the normal roster does not give it to.
    taken = Roster(counts, seq_start=0).agent(0).tenant
    flood_tenant = next(name for name in counts if name != taken)
    # One run of the other agents: FLOOD_QUIET_S seconds alone, then the flood, then alone again.
    others = scenario.load("flood-others", FLOOD_QUIET_S + FLOOD_SECONDS + 3)
    time.sleep(FLOOD_QUIET_S)
    flood_at = time.time()
    flood = scenario.agentsim("flood", "--agents", "1", "--tenants", flood_tenant, "--rate", str(FLOOD_RATE),
                              "--duration", str(FLOOD_SECONDS), "--max-in-flight", "200")
    flooded = flood.finish(60)
    run = others.finish(60)
    check = scenario.verify(others)
    limited = flooded["status_codes"].get("429", 0)
    start = second_of(run, flood_at)
    # Median of the per-second p99 of the other agents, without and with the flood (one spike of a
    # loaded machine does not decide it).
    quiet = [row["p99"] for row in run["timeseries"][1:start] if row["p99"] is not None]
    during = [row["p99"] for row in run["timeseries"][start + 1:start + FLOOD_SECONDS] if row["p99"] is not None]
    base_p99, p99 = statistics.median(quiet), statistics.median(during)
    record("5 agent flood", flood_requests=flooded["throughput"]["sent"], flood_answered_429=limited,
           flood_acknowledged=flooded["throughput"]["acknowledged"], others_failed=run["errors"]["total"],
           others_p99_ms_without_flood=round(base_p99, 1), others_p99_ms_during_flood=round(p99, 1),
           others_p99_ms_whole_run=run["latency_ms"]["p99"], lost_checkins=check.get("missing", 0))
    assert run["errors"]["total"] == 0, f"other agents failed during the flood: {run['errors']}"
    assert_nothing_lost(run, check)
    # 20 per 10 s: at most a few windows' worth got through, the rest was refused at the proxy.
    assert flooded["throughput"]["acknowledged"] <= 20 * (FLOOD_SECONDS // 10 + 2), flooded["status_codes"]
    assert limited >= 0.9 * flooded["throughput"]["sent"], flooded["status_codes"]
    assert p99 <= max(FLOOD_P99_FACTOR * base_p99, base_p99 + FLOOD_P99_SLACK_MS), \
        f"p99 of the other agents {p99} ms under the flood, {base_p99} ms without"
