"""The built collection is what operators run: no developer tooling, tests or lab state in the tarball."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
GALAXY = Path(sys.executable).parent / "ansible-galaxy"
PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
# Lab state a `make lab` leaves in the checkout: it describes one developer's containers.
LAB_STATE = ("inventories/lab/nodes.yml", "inventories/lab/nodes.journal.yml", "inventories/lab/measured.yml",
             "inventories/lab/mine.local.fleet.yml", "lab-output/report.md")
LEFT_OUT = ("bench/", "molecule/", "tests/", "tools/ci/", "tools/node-image/", "tools/readme/", "tools/nolog/",
            "tools/ansible-test/", ".ci/", "Makefile", "requirements.txt", "ruff.toml", "__pycache__")
KEPT = ("roles/web/files/fleet_checkin/credentials.py", "playbooks/site.yml", "playbooks/enrol_agents.yml",
        "plugins/inventory/fleet.py", "packer/fleetscale-tier.pkr.hcl", "tools/agentsim/agentsim/cli.py",
        "docs/security.md", "meta/runtime.yml", "meta/execution-environment.yml", "meta/ee-requirements.txt")
# Code that runs on the controller (the plugins; the load simulator), and the third-party modules it may import
# without listing them in meta/ee-requirements.txt: ansible-core's own dependencies.
CONTROLLER_CODE = ("plugins", "tools/agentsim")
ANSIBLE_CORE_BRINGS = {"ansible", "ansible_collections", "yaml", "jinja2", "cryptography", "packaging", "resolvelib"}


def tracked_files() -> list[str]:
    done = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    return done.stdout.split()


@pytest.fixture(scope="module")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The collection built from the tracked files, with a developer's lab state and bytecode planted beside them."""
    tmp_path = tmp_path_factory.mktemp("build")
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
    return next(tmp_path.glob("fleetscale-split-*.tar.gz"))


def test_the_tarball_holds_what_operators_run_and_nothing_of_the_lab(tarball: Path) -> None:
    with tarfile.open(tarball) as built:
        members = [member.name for member in built.getmembers() if member.isfile()]
    shipped = [m for m in members if m.startswith(LEFT_OUT) or "__pycache__" in m or m in LAB_STATE]
    assert not shipped, f"developer or lab files in the tarball: {shipped[:10]}"
    assert set(KEPT) <= set(members), f"missing from the tarball: {sorted(set(KEPT) - set(members))}"


def test_every_playbook_runs_by_its_name_from_the_installed_collection(tarball: Path, tmp_path: Path) -> None:
    """`ansible-playbook fleetscale.split.<name>` finds each playbook, and nothing under playbooks/ but playbooks."""
    installed = tmp_path / "collections"
    # Away from the checkout, its ansible.cfg and its .build/collections: only the installed collection can answer.
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    env["ANSIBLE_COLLECTIONS_PATH"] = str(installed)
    # Galaxy is unreachable: the dependencies come from the ansible package, as on the operator's controller.
    done = subprocess.run([str(GALAXY), "collection", "install", "--no-deps", "-p", str(installed), str(tarball)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    playbooks = installed / "ansible_collections" / "fleetscale" / "split" / "playbooks"
    assert [entry.name for entry in playbooks.iterdir() if not entry.is_file()] == [], \
        "a directory under playbooks/ shadows a playbook of its name and holds no playbook"
    names = sorted(path.stem for path in playbooks.glob("*.yml"))
    assert "site" in names and "lab" in names, names
    done = subprocess.run([str(PLAYBOOK), "--syntax-check", "-i", "localhost,",
                           *(f"fleetscale.split.{name}" for name in names)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    for name in names:
        assert f"playbook: {playbooks / name}.yml" in done.stdout, done.stdout


def test_the_execution_environment_gets_every_package_the_controller_code_imports() -> None:
    meta = yaml.safe_load((ROOT / "meta" / "execution-environment.yml").read_text())
    listed = (ROOT / meta["dependencies"]["python"]).read_text().splitlines()
    packages = {re.split(r"[<>=!~\[ ;]", line, maxsplit=1)[0].lower() for line in listed
                if line.strip() and not line.startswith("#")}
    imported: dict[str, str] = {}
    for top in CONTROLLER_CODE:
        for path in sorted((ROOT / top).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    imported.setdefault(module.split(".")[0], str(path.relative_to(ROOT)))
    local = {path.name for top in CONTROLLER_CODE for path in (ROOT / top).iterdir() if path.is_dir()}
    third_party = {name: where for name, where in imported.items()
                   if name not in sys.stdlib_module_names and name not in ANSIBLE_CORE_BRINGS | local}
    assert "aiohttp" in third_party, third_party
    missing = {name: where for name, where in third_party.items() if name.lower() not in packages}
    assert not missing, f"imported by controller code but not in meta/ee-requirements.txt: {missing}"
