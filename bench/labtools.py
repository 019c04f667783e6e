"""What the lab benchmarks share: the environment of their ansible and simulator runs, the
inventory's variables without Ansible's markers, and the simulator's allowance for one address."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]


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
