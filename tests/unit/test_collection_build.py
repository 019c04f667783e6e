"""The built collection is what operators run: no developer tooling, tests or lab state in the tarball."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GALAXY = Path(sys.executable).parent / "ansible-galaxy"
# Lab state a `make lab` leaves in the checkout: it describes one developer's containers.
LAB_STATE = ("inventories/lab/nodes.yml", "inventories/lab/nodes.journal.yml", "inventories/lab/measured.yml",
             "inventories/lab/mine.local.fleet.yml", "lab-output/report.md")
LEFT_OUT = ("bench/", "molecule/", "tests/", "tools/ci/", "tools/node-image/", "tools/readme/", "tools/nolog/",
            "tools/ansible-test/", ".ci/", "Makefile", "requirements.txt", "ruff.toml", "__pycache__")
KEPT = ("roles/web/files/fleet_checkin/credentials.py", "playbooks/site.yml", "playbooks/enrol_agents.yml",
        "plugins/inventory/fleet.py", "packer/fleetscale-tier.pkr.hcl", "tools/agentsim/agentsim/cli.py",
        "docs/security.md", "meta/runtime.yml")


def tracked_files() -> list[str]:
    done = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    return done.stdout.split()


def test_the_tarball_holds_what_operators_run_and_nothing_of_the_lab(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    for name in tracked_files():
        if (ROOT / name).is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, tree / name)
    for name in LAB_STATE:
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text("lab state\n")
    (tree / "roles/web/files/fleet_checkin/__pycache__").mkdir()
    (tree / "roles/web/files/fleet_checkin/__pycache__/app.cpython-311.pyc").write_bytes(b"\0")

    done = subprocess.run([str(GALAXY), "collection", "build", "--output-path", str(tmp_path), str(tree)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr

    with tarfile.open(next(tmp_path.glob("fleetscale-split-*.tar.gz"))) as tarball:
        members = [member.name for member in tarball.getmembers() if member.isfile()]
    shipped = [m for m in members if m.startswith(LEFT_OUT) or "__pycache__" in m or m in LAB_STATE]
    assert not shipped, f"developer or lab files in the tarball: {shipped[:10]}"
    assert set(KEPT) <= set(members), f"missing from the tarball: {sorted(set(KEPT) - set(members))}"
