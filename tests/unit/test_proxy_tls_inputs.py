"""The proxy role refuses to run without a certificate unless a self-signed one is asked for.

The role's TLS tasks (tasks_from: tls) run in check mode on the controller: the input check is their first task, so
a refused run must fail there, naming the variables, and a run that asks for a self-signed certificate gets past it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from playbook_json import localhost_results, run_playbook

ROOT = Path(__file__).resolve().parents[2]
PLAY = """
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: The proxy role's TLS tasks
      ansible.builtin.include_role:
        name: fleetscale.split.proxy
        tasks_from: tls
"""
TOGETHER = "Check that the TLS certificate and key are supplied together"
SUPPLIED = "Check that a certificate is supplied, or a self-signed one is asked for"


def tls_tasks(tmp_path: Path, extra: dict) -> tuple[subprocess.CompletedProcess[str], dict[str, dict]]:
    play = tmp_path / "tls.yml"
    play.write_text(PLAY)
    done, output = run_playbook(["-i", "localhost,", "--check", "-e", f"ansible_python_interpreter={sys.executable}",
                                 "-e", json.dumps(extra), str(play)], home=tmp_path)
    return done, {result["task"]: result for result in localhost_results(output, play=0)
                  if result["task"] != "The proxy role's TLS tasks"}


@pytest.mark.parametrize(("extra", "refused_by", "said"), [
    ({}, [TOGETHER, SUPPLIED], "proxy_tls_certificate and proxy_tls_key are both empty"),
    ({"proxy_tls_key": "-----BEGIN PRIVATE KEY-----"}, [TOGETHER], "only one of them is set"),
    ({"proxy_tls_certificate": "-----BEGIN CERTIFICATE-----", "proxy_tls_self_signed": True}, [TOGETHER],
     "only one of them is set"),
])
def test_a_missing_certificate_is_refused_naming_the_variables(tmp_path: Path, extra: dict, refused_by: list[str],
                                                               said: str) -> None:
    done, results = tls_tasks(tmp_path, extra)
    assert done.returncode != 0
    assert list(results) == refused_by, "nothing may run after the refusal"
    message = results[refused_by[-1]]["msg"]
    assert message.startswith("localhost: proxy_tls_certificate and proxy_tls_key") and said in message, message
    assert "-----BEGIN" not in message


def test_asking_for_a_self_signed_certificate_passes_the_checks(tmp_path: Path) -> None:
    # -e gives a string: the check reads it as a boolean, as the role's other flags are.
    _, results = tls_tasks(tmp_path, {"proxy_tls_self_signed": "true"})
    assert not results[TOGETHER].get("failed") and not results[SUPPLIED].get("failed"), results
    assert len(results) > 2
