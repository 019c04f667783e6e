"""`python -m agentsim` as a playbook runs it: exit codes, the one-line errors, the files it writes.

Every run goes to the fake check-in service on 127.0.0.1; `verify` reads shards through a fake
`docker` (a script given with --docker) that answers from a JSON file of rows per container.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from agentsim_fakes import FakeCheckinService

FAKE_DOCKER = """#!{python}
import json, sys
# docker exec -i <container> mysql -N -B <schema>, the SELECT on stdin
assert sys.argv[1:3] == ["exec", "-i"] and sys.argv[4:7] == ["mysql", "-N", "-B"], sys.argv
query = sys.stdin.read()
assert query.startswith("SET SESSION TRANSACTION READ ONLY;"), query
state = json.load(open({state!r}))
container = sys.argv[3]
if container in state["fail"]:
    sys.stderr.write("Error response from daemon: No such container: " + container + "\\n")
    sys.exit(1)
for tenant, agent_id, seq in state["rows"].get(container, []):
    print(tenant, agent_id, seq, sep="\\t")
"""


def agentsim(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agentsim", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, check=False)


@pytest.fixture
def fake_docker(tmp_path: Path):
    state_file = tmp_path / "docker-state.json"
    script = tmp_path / "docker"
    script.write_text(FAKE_DOCKER.format(python=sys.executable, state=str(state_file)))
    script.chmod(0o755)

    def configure(rows: dict[str, list[list]], fail: tuple[str, ...] = ()) -> str:
        state_file.write_text(json.dumps({"rows": rows, "fail": list(fail)}))
        return str(script)

    return configure


def test_run_verify_report(service: FakeCheckinService, plan_file: Path, cli_env, tmp_path: Path, fake_docker):
    ledger, report = tmp_path / "ledger.jsonl", tmp_path / "run.json"

    run = agentsim(["run", "--url", service.url, "--plan", str(plan_file), "--duration", "0.5", "--seed", "3",
                    "--ledger", str(ledger), "--json", str(report), "--label", "baseline", "--status-every", "0.2"],
                   cli_env, tmp_path)

    assert run.returncode == 0, run.stderr
    # The plan gives the rate (40/s) and the roster (12 agents over 3 tenants).
    assert run.stdout.startswith(f"fleet-agentsim [baseline]: {service.url}, 12 agents over 3 tenants, 40/s for 0.5 s")
    assert "acknowledged 20" in run.stdout
    assert "] sent " in run.stderr  # the live status line
    document = json.loads(report.read_text())
    assert document["throughput"]["acknowledged"] == 20
    assert document["settings"]["tenants"] == {"tenant-001": 6, "tenant-002": 3, "tenant-003": 3}
    assert document["ledger"] == {"path": str(ledger), "entries": 20}
    assert len(ledger.read_text().splitlines()) == 20

    rows: dict[str, list[list]] = {"db-01": [], "db-02": []}
    for (tenant, agent_id, seq), shard in service.committed.items():
        rows[f"db-0{shard}"].append([tenant, agent_id, seq])
    verify_json = tmp_path / "verify.json"
    verify_args = ["verify", "--ledger", str(ledger), "--plan", str(plan_file), "--json", str(verify_json)]

    good = agentsim([*verify_args, "--docker", fake_docker(rows)], cli_env, tmp_path)
    assert good.returncode == 0, good.stderr
    assert good.stdout.startswith("verify OK: acknowledged 20, found on the right shard 20, missing 0")
    assert json.loads(verify_json.read_text())["ok"] is True

    lost = rows["db-02"].pop()
    missing = agentsim([*verify_args, "--docker", fake_docker(rows)], cli_env, tmp_path)
    assert missing.returncode == 1
    assert "verify FAILED" in missing.stdout
    assert f"missing: {lost[0]} {lost[1]} seq {lost[2]}" in missing.stdout
    assert json.loads(verify_json.read_text())["missing"] == 1

    rows["db-01"].append(lost)
    wrong = agentsim([*verify_args, "--docker", fake_docker(rows)], cli_env, tmp_path)
    assert wrong.returncode == 1
    assert "found on a wrong shard 1" in wrong.stdout

    down = agentsim([*verify_args, "--docker", fake_docker(rows, fail=("db-02",))], cli_env, tmp_path)
    assert down.returncode == 3
    assert down.stderr.startswith("agentsim: error: shard 2 (db-02, schema fleet_shard_2): ")
    assert "No such container: db-02" in down.stderr
    assert not verify_json.exists()  # nothing concluded, no result file

    png, markdown = tmp_path / "latency.png", tmp_path / "runs.md"
    chart = agentsim(["report", f"first={report}", f"second={report}", "--png", str(png),
                      "--markdown", str(markdown)], cli_env, tmp_path)
    assert chart.returncode == 0, chart.stderr
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    table = markdown.read_text().splitlines()
    assert table[0].startswith("| run | target /s |")
    assert [line.split("|")[1].strip() for line in table[2:]] == ["baseline", "baseline"]
    assert chart.stdout.strip() == markdown.read_text().strip()


def test_errors_exit_0_unless_fail_on_errors(service: FakeCheckinService, cli_env, tmp_path: Path):
    service.behaviour = lambda body: "503"
    args = ["run", "--url", service.url, "--agents", "5", "--tenants", "tenant-001,tenant-003", "--rate", "20",
            "--duration", "0.25"]

    finished = agentsim(args, cli_env, tmp_path)
    assert finished.returncode == 0, finished.stderr
    assert "errors 5, 5xx 5" in finished.stdout

    failed = agentsim([*args, "--fail-on-errors"], cli_env, tmp_path)
    assert failed.returncode == 1
    assert failed.stderr == ("agentsim: failed: 5 of 5 arrivals were not acknowledged (5xx 5) "
                             "and --fail-on-errors is set\n")
    assert {r.body["tenant"] for r in service.received} == {"tenant-001", "tenant-003"}


def test_an_interrupted_run_still_writes_its_report(service: FakeCheckinService, cli_env, tmp_path: Path):
    report = tmp_path / "run.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "agentsim", "run", "--url", service.url, "--agents", "3", "--rate", "20",
         "--duration", "60", "--status-every", "0.1", "--json", str(report)],
        env=cli_env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        process.stderr.readline()  # the first status line: the run is under way
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=15)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "interrupted" in err
    assert "Traceback" not in err
    document = json.loads(report.read_text())
    assert document["stopped_by"] == "interrupted"
    assert 0 < document["throughput"]["sent"] < 1200
    assert "stopped by interrupted" in out


@pytest.mark.parametrize(("args", "expected"), [
    (["run", "--url", "http://8.8.8.8:8080", "--agents", "3", "--rate", "5", "--duration", "1"],
     ["--url http://8.8.8.8:8080 refused: 8.8.8.8 is neither loopback", "nothing was sent"]),
    (["run", "--url", "http://[::ffff:8.8.8.8]:80", "--agents", "3", "--rate", "5", "--duration", "1"],
     ["--url http://[::ffff:8.8.8.8]:80 refused"]),
    (["run", "--url", "http://172.28.1.10", "--allow-network", "0.0.0.0/0", "--agents", "3", "--rate", "5",
      "--duration", "1"], ["--allow-network '0.0.0.0/0' is not a private network"]),
    (["run", "--url", "ftp://127.0.0.1", "--agents", "3", "--rate", "5", "--duration", "1"],
     ["--url 'ftp://127.0.0.1' must start with http:// or https://"]),
    (["run", "--agents", "3", "--rate", "5", "--duration", "1"], ["the following arguments are required: --url"]),
    (["run", "--url", "http://127.0.0.1:9", "--agents", "3", "--rate", "0", "--duration", "1"],
     ["argument --rate: '0' must be > 0"]),
    (["run", "--url", "http://127.0.0.1:9", "--agents", "3", "--rate", "5", "--duration", "7200"],
     ["argument --duration: '7200' must be > 0 and <= 3600"]),
    (["run", "--url", "http://127.0.0.1:9", "--agents", "3", "--rate", "5", "--duration", "1", "--timeout", "abc"],
     ["argument --timeout: 'abc' is not a number"]),
    (["run", "--url", "http://127.0.0.1:9", "--rate", "5", "--duration", "1"], ["--agents is required without --plan"]),
    (["run", "--url", "http://127.0.0.1:9", "--agents", "3", "--duration", "1"], ["--rate is required"]),
    (["run", "--url", "http://127.0.0.1:9", "--plan", "nope.json", "--duration", "1"],
     ["--plan nope.json: cannot read the file"]),
    (["run", "--url", "http://127.0.0.1:9", "--plan", "{plan}", "--tenants", "2", "--duration", "1"],
     ["--tenants '2' cannot be combined with --plan"]),
    (["run", "--url", "http://127.0.0.1:9", "--agents", "3", "--tenants", "a b", "--rate", "5", "--duration", "1"],
     ["--tenants 'a b': 'a b' is not a tenant name"]),
    (["run", "--url", "http://127.0.0.1:9", "--agents", "3", "--rate", "5", "--duration", "1",
      "--ledger", "no/such/dir/ledger.jsonl"], ["--ledger no/such/dir/ledger.jsonl: cannot write the file"]),
    (["verify", "--ledger", "nope.jsonl", "--plan", "{plan}"], ["--ledger nope.jsonl: cannot read the file"]),
    (["verify", "--ledger", "{plan}", "--plan", "{plan}"], ["line 1: tenant must be a non-empty string"]),
    (["verify", "--ledger", "{ledger}", "--plan", "{plan}", "--container", "lab-{nope}"],
     ["--container 'lab-{nope}' is not a valid template"]),
    (["report", "run.json", "--png", "x.png"], ["report run.json: cannot read the file"]),
    (["report", "a={plan}", "--png", "x.png"], ["not a run report of fleet-agentsim"]),
    (["launch"], ["argument {run,probe,verify,report,lab-report}: invalid choice: 'launch'"]),
])
def test_bad_input_is_one_line_and_exit_2(args: list[str], expected: list[str], plan_file: Path, cli_env,
                                          tmp_path: Path):
    ledger = tmp_path / "ledger.jsonl"
    ledger.write_text('{"tenant": "tenant-001", "agent_id": "agent-000000", "seq": 1}\n')
    args = [arg.replace("{plan}", str(plan_file)).replace("{ledger}", str(ledger)) for arg in args]

    done = agentsim(args, cli_env, tmp_path)

    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr.startswith("agentsim: error: ")
    assert done.stderr.count("\n") == 1, done.stderr
    for text in expected:
        assert text in done.stderr
    assert not (tmp_path / "x.png").exists()
