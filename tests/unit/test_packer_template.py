"""packer/fleetscale-tier.pkr.hcl validates for every tier and refuses bad input (docs/image-pipeline.md).

`packer validate` only, no build: it parses the template, checks the variables' validation rules and prepares
the builders and the ansible provisioner. That preparation needs no cloud credentials and no network, but it
does run `ansible-playbook --version` and needs playbooks/bake.yml to exist.
"""

import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "packer" / "fleetscale-tier.pkr.hcl"
TIERS = ("proxy", "web", "app", "database")


def packer_env() -> dict:
    """The environment packer runs in: the virtualenv's ansible-playbook first, no version check call.

    Called by each test rather than a fixture, so that a missing packer fails the tests instead of erroring them.
    """
    path = os.pathsep.join([str(pathlib.Path(sys.executable).parent), os.environ.get("PATH", os.defpath)])
    env = dict(os.environ, PATH=path, CHECKPOINT_DISABLE="1")
    env.pop("PACKER_LOG", None)
    if shutil.which("packer", path=path) is None:
        pytest.fail("packer is not on PATH: install Debian's packer package (apt-get install packer)")
    return env


def packer(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["packer", *args], capture_output=True, text=True, cwd=ROOT, env=env, check=False,
                          timeout=120)


def validate(env: dict, **variables: str) -> subprocess.CompletedProcess:
    args = [arg for name, value in variables.items() for arg in ("-var", f"{name}={value}")]
    return packer(env, "validate", *args, str(TEMPLATE.relative_to(ROOT)))


@pytest.mark.parametrize("tier", TIERS)
def test_template_validates_for_every_tier(tier):
    done = validate(packer_env(), tier=tier, release="test")
    assert done.returncode == 0, f"packer validate, tier={tier}:\n{done.stdout}{done.stderr}"


def test_unknown_tier_is_refused_naming_the_variable():
    done = validate(packer_env(), tier="bogus", release="test")
    output = done.stdout + done.stderr
    assert done.returncode != 0, f"tier=bogus passed validation:\n{output}"
    assert "tier" in output and "proxy, web, app, database" in output, output


def test_release_unfit_for_an_image_name_is_refused():
    done = validate(packer_env(), tier="web", release="1.0 final")
    output = done.stdout + done.stderr
    assert done.returncode != 0, f"release='1.0 final' passed validation:\n{output}"
    assert "release" in output, output


def test_template_is_formatted():
    done = packer(packer_env(), "fmt", "-check", "-diff", str(TEMPLATE.relative_to(ROOT)))
    assert done.returncode == 0, f"run `packer fmt {TEMPLATE.relative_to(ROOT)}`:\n{done.stdout}{done.stderr}"


def test_every_ansible_provisioner_runs_the_bake_playbook_in_install_only_mode():
    text = TEMPLATE.read_text()
    blocks = re.findall(r'^  provisioner "ansible" \{\n(.*?)^  \}\n', text, flags=re.MULTILINE | re.DOTALL)
    assert blocks, "no ansible provisioner in the template"
    for block in blocks:
        assert re.search(r'playbook_file\s+= "\$\{path\.root\}/\.\./playbooks/bake\.yml"', block), block
        assert re.search(r'groups\s+= \["bake"\]', block), block
        assert re.search(r"extra_arguments\s+= local\.ansible_arguments", block), block
    assert '"-e", "bake_provider=none"' in text and '"-e", "bake_tier=${var.tier}"' in text
