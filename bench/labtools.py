"""What the lab benchmarks share: the environment of their ansible and simulator runs, the
inventory's variables without Ansible's markers, the simulator's allowance for one address, and
playbook runs on the lab (one web node built alone among them)."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
INVENTORY = ROOT / "inventories" / "lab" / "lab.fleet.yml"
# What a node built from bare Debian boots (the web role then installs everything at converge).
BARE_IMAGE = "fleetscale/node:bookworm"


def environment() -> dict[str, str]:
    """This checkout's ansible.cfg and collection, and the agent simulator importable."""
    return dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), PYTHONPATH=str(ROOT / "tools" / "agentsim"),
                ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".build" / "collections"), ANSIBLE_NOCOLOR="1")


def plain(value: Any) -> Any:
    """ansible-inventory's untrusted-string markers off."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return plain(value["__ansible_unsafe"])
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def allow(url: str) -> list[str]:
    """The simulator's --allow-network for the proxy node: exactly its own address."""
    return ["--allow-network", f"{urlsplit(url).hostname}/32"]


def first_proxy(inventory: dict[str, Any]) -> str:
    """The proxy with the lowest node index in `ansible-inventory --list` output (a replaced proxy-01 is gone)."""
    hostvars = inventory["_meta"]["hostvars"]
    return min(inventory["proxy"]["hosts"], key=lambda host: hostvars[host]["fleet_index"])


def agent_keys_file(inventory: dict[str, Any], path: Path) -> Path:
    """The lab's agent keys written (owner-only) where the simulator's --agent-keys reads them."""
    hostvars = inventory["_meta"]["hostvars"][inventory["web_agent"]["hosts"][0]]
    keys = {"agent_master_keys": hostvars.get("fleet_agent_master_keys", []),
            "agent_keys": hostvars.get("fleet_agent_keys", {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(json.dumps(keys))
    return path


@functools.cache
def lab_agent_keys() -> tuple[str, ...]:
    """agentsim's --agent-keys option for the lab's keys (written once per run to bench/results/)."""
    return ("--agent-keys", str(agent_keys_file(inventory(), ROOT / "bench" / "results" / "agent-keys.json")))


def inventory() -> dict[str, Any]:
    """`ansible-inventory --list` of the lab, markers off."""
    done = subprocess.run([str(BIN / "ansible-inventory"), "-i", str(INVENTORY), "--list"], env=environment(),
                          capture_output=True, text=True, check=True)
    return plain(json.loads(done.stdout))


def playbook(path: Path, extra: dict[str, Any], log: Path, nice: int = 0) -> float:
    """Run a playbook on the lab inventory, its output to `log`; the seconds it took (exits on failure)."""
    started = time.monotonic()
    command = [str(BIN / "ansible-playbook"), "-i", str(INVENTORY), str(path), "-e", json.dumps(extra)]
    done = subprocess.run(["nice", "-n", str(nice), *command] if nice else command,
                          env=environment(), capture_output=True, text=True, check=False)
    log.write_text(done.stdout + done.stderr)
    if done.returncode:
        sys.exit(f"{path.name} failed (see {log}):\n{done.stdout[-3000:]}")
    return time.monotonic() - started


def build_one_node(log: Path, image: str | None = None) -> float:
    """bench/rolling/build_one_node.yml (from `image`, default the web tier's): the seconds its own clock
    measured, container to ready."""
    result_file = log.with_suffix(".json")
    extra: dict[str, Any] = {"bench_result_file": str(result_file)}
    if image:
        extra["bench_image"] = image
    playbook(ROOT / "bench" / "rolling" / "build_one_node.yml", extra, log)
    return float(json.loads(result_file.read_text())["seconds"])
