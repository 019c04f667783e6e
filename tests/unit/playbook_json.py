"""Run ansible-playbook of this virtualenv with the JSON callback, as the unit tests that play on localhost do."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[2]
PLAYBOOK = pathlib.Path(sys.executable).parent / "ansible-playbook"


def run_playbook(args: list[str], home: pathlib.Path, timeout: float = 120,
                 ) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """The run (from the checkout, HOME in `home`) and its JSON output; {} when it printed none."""
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", HOME=str(home))
    done = subprocess.run([str(PLAYBOOK), *args], capture_output=True, text=True, cwd=ROOT, env=env, check=False,
                          timeout=timeout)
    return done, json.loads(done.stdout) if done.stdout.strip() else {}


def localhost_results(output: dict[str, Any], play: int | None = None) -> list[dict[str, Any]]:
    """Every task result on localhost (of one play, or of all), each with "task": its name as in its task file
    (without the "<role> : " of a role's task)."""
    plays = output["plays"] if play is None else [output["plays"][play]]
    return [task["hosts"]["localhost"] | {"task": task["task"]["name"].rpartition(" : ")[2]}
            for one in plays for task in one["tasks"] if "localhost" in task["hosts"]]
