"""A node booted from its tier's baked image and converged is the node a bare Debian host converges to.

The lab's web nodes boot fleetscale/web (playbooks/bake.yml) and site.yml converged them. This test
builds one more web node the way a replacement would (bench/rolling/build_one_node.yml: container,
database grant, web role, ready) but from the bare base image, so the role installs everything, and
compares the two nodes: installed packages, the files the role and its packages own (names, modes,
owners, content with the host name taken out), enabled unit files and running services. Last, a bake
whose install fails must make no image and leave no builder behind.

    molecule test            # runs it in the verify step, after test_split.py
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
BARE_IMAGE = "fleetscale/node:bookworm"
BAKED_NODE = "web-agent-01"
# What the web role installs and writes, and what its packages put beside it.
TREES = ("/opt/fleet-checkin", "/etc/fleet-checkin", "/etc/nginx", "/etc/systemd/system", "/usr/local/sbin",
         "/usr/local/libexec", "/usr/lib/python3/dist-packages/falcon", "/usr/lib/python3/dist-packages/gunicorn")
# One line per package, account, file (mode, owner, group, digest of the content with the node's own
# name replaced), enabled unit file and running service: the same on two equivalent nodes.
SNAPSHOT = r"""
host=$(hostname)
echo "== packages"; dpkg-query -W -f='${Package} ${Version} ${db:Status-Status}\n'
echo "== accounts"; getent passwd | cut -d: -f1,3,4,6,7; getent group | cut -d: -f1,3
echo "== files"
find "$@" -xdev \( -type f -o -type l \) 2>/dev/null | LC_ALL=C sort | while read -r path; do
  if [ -L "$path" ]; then
    printf '%s -> %s\n' "$path" "$(readlink "$path")"
  else
    printf '%s %s %s\n' "$(stat -c '%n %a %U %G' "$path")" \
      "$(sed "s/$host/NODE/g" "$path" | sha256sum | cut -c1-16)"
  fi
done
echo "== unit files"; systemctl list-unit-files --no-legend --no-pager --state=enabled | awk '{ print $1, $2 }'
echo "== running services"
systemctl list-units --type=service --state=running --no-legend --no-pager | awk '{ print $1 }'
"""


def snapshot(container: str) -> dict[str, list[str]]:
    done = subprocess.run(["docker", "exec", container, "sh", "-c", SNAPSHOT, "snapshot", *TREES],
                          capture_output=True, text=True, timeout=120, check=True)
    sections: dict[str, list[str]] = {}
    current = None
    for line in done.stdout.splitlines():
        if line.startswith("== "):
            current = sections.setdefault(line[3:], [])
        elif current is not None and line:
            current.append(line)
    return sections


@pytest.fixture(scope="module")
def bare_node(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A web node built from the bare base image and converged with the web role, removed afterwards."""
    result = tmp_path_factory.mktemp("bare") / "build.json"
    command = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", request.config.option.ansible_inventory,
               str(ROOT / "bench" / "rolling" / "build_one_node.yml"),
               "-e", json.dumps({"bench_result_file": str(result), "bench_image": BARE_IMAGE,
                                 "bench_keep_node": True})]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=os.environ.copy(), check=False)
    built: dict[str, Any] = json.loads(result.read_text()) if result.exists() else {}
    if built.get("node"):
        request.addfinalizer(lambda: subprocess.run(["docker", "rm", "-f", built["node"]], capture_output=True,
                                                    check=False))
    assert done.returncode == 0, f"building a web node from {BARE_IMAGE} failed:\n{done.stdout[-4000:]}"
    print(f"\n  web node from {BARE_IMAGE}: built, converged and ready in {built['seconds']} s")
    return built["node"]


@pytest.fixture(scope="module")
def snapshots(bare_node: str) -> dict[str, dict[str, list[str]]]:
    return {"baked": snapshot(BAKED_NODE), "bare": snapshot(bare_node)}


def test_the_bare_node_really_started_bare(bare_node: str) -> None:
    image = subprocess.run(["docker", "inspect", "--format", "{{ .Config.Image }}", bare_node],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert image == BARE_IMAGE


@pytest.mark.parametrize("section", ["packages", "accounts", "files", "unit files", "running services"])
def test_a_baked_node_converges_to_the_node_a_bare_host_converges_to(
        bare_node: str, snapshots: dict[str, dict[str, list[str]]], section: str) -> None:
    baked, bare = snapshots["baked"], snapshots["bare"]
    assert baked[section], f"no {section} read from {BAKED_NODE}"
    only_baked = sorted(set(baked[section]) - set(bare[section]))
    only_bare = sorted(set(bare[section]) - set(baked[section]))
    assert not only_baked and not only_bare, (
        f"{section} differ: only on {BAKED_NODE} (baked image) {only_baked[:20]}; "
        f"only on {bare_node} (bare image) {only_bare[:20]}")


def test_a_failed_bake_leaves_no_image_and_no_builder(request: pytest.FixtureRequest) -> None:
    """An install that fails is never committed: the run fails naming the tier and why, and cleans up."""
    repository = "fleetscale-test-failed-bake"
    command = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", request.config.option.ansible_inventory,
               str(ROOT / "playbooks" / "bake.yml"), "-e",
               json.dumps({"bake_repository": repository, "bake_tiers": ["app"],
                           "__app_packages": ["fleetscale-no-such-package"]})]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=os.environ.copy(), check=False)
    # The error is on stderr ([ERROR]) and, colored and wrapped, in the failed task's result on stdout.
    said = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr).split())
    assert done.returncode != 0
    assert "the install part failed for app and no image was made for it" in said, said[-3000:]
    assert "fleetscale-no-such-package" in said
    images = subprocess.run(["docker", "images", "--quiet", f"{repository}/app"], capture_output=True, text=True,
                            check=True).stdout.split()
    # Its builder is named after its repository (a bake of the rolling scenario may run beside it).
    builders = subprocess.run(["docker", "ps", "--all", "--quiet", "--filter", f"name=^{repository}-bake-"],
                              capture_output=True, text=True, check=True).stdout.split()
    assert images == [] and builders == []
