"""The release of a tier image: what changes it, what does not, and what is refused."""

import json
import os
import pathlib
import stat
import subprocess

import pytest

from ansible_collections.fleetscale.split.plugins.module_utils import images
from ansible_collections.fleetscale.split.plugins.module_utils.errors import PlanError

ROOT = pathlib.Path(__file__).resolve().parents[4]
BASE = "sha256:" + "ab" * 32
OTHER_BASE = "sha256:" + "cd" * 32


@pytest.fixture
def roles(tmp_path):
    """A roles directory with a web role holding install inputs and a template."""
    role = tmp_path / "web"
    for relative, text in {
        "defaults/main.yml": "web_checkin_version: 1.0.0\n",
        "vars/main.yml": "__web_packages: [nginx]\n",
        "files/fleet_checkin/app.py": "print('v1')\n",
        "tasks/install.yml": "- name: Install\n",
        "tasks/nginx.yml": "- name: Configure\n",
        "templates/site.conf.j2": "listen 80;\n",
    }.items():
        path = role / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def release(roles, base=BASE, suite="bookworm", tier="web"):
    return images.tier_release(tier, suite, base, str(roles))


def test_release_names_the_suite_and_twelve_hex_digits(roles):
    assert release(roles).startswith("bookworm-")
    assert len(release(roles).split("-", 1)[1]) == 12
    assert release(roles) == release(roles)


@pytest.mark.parametrize("relative", ["defaults/main.yml", "vars/main.yml", "files/fleet_checkin/app.py",
                                      "tasks/install.yml"])
def test_an_install_input_changes_the_release(roles, relative):
    before = release(roles)
    (roles / "web" / relative).write_text("changed\n")
    assert release(roles) != before


@pytest.mark.parametrize("relative", ["tasks/nginx.yml", "templates/site.conf.j2"])
def test_configuration_leaves_the_release_alone(roles, relative):
    before = release(roles)
    (roles / "web" / relative).write_text("changed\n")
    assert release(roles) == before


def test_a_new_file_of_code_changes_the_release(roles):
    before = release(roles)
    (roles / "web" / "files" / "fleet_checkin" / "store.py").write_text("")
    assert release(roles) != before


def test_the_executable_bit_changes_the_release(roles):
    before = release(roles)
    path = roles / "web" / "files" / "fleet_checkin" / "app.py"
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    assert release(roles) != before


def test_caches_left_by_a_test_run_are_not_content(roles):
    before = release(roles)
    cache = roles / "web" / "files" / "fleet_checkin" / "__pycache__"
    cache.mkdir()
    (cache / "app.cpython-311.pyc").write_bytes(b"\0")
    (roles / "web" / "files" / "fleet_checkin" / "app.pyc").write_bytes(b"\0")
    assert release(roles) == before


def test_the_base_image_and_the_suite_change_the_release(roles):
    assert release(roles, base=OTHER_BASE) != release(roles)
    assert release(roles, suite="trixie").startswith("trixie-")


def test_the_recipe_changes_the_release(roles, tmp_path):
    recipe = tmp_path / "bake.yml"
    recipe.write_text("- name: Bake\n")
    with_recipe = images.tier_release("web", "bookworm", BASE, str(roles), [str(recipe)])
    assert with_recipe != release(roles)
    recipe.write_text("- name: Bake and record\n")
    assert images.tier_release("web", "bookworm", BASE, str(roles), [str(recipe)]) != with_recipe
    with pytest.raises(PlanError) as refused:
        images.tier_release("web", "bookworm", BASE, str(roles), [str(tmp_path / "missing.yml")])
    assert refused.value.field == "recipe"


def test_tiers_of_the_same_role_content_differ(roles):
    (roles / "proxy").symlink_to(roles / "web")
    assert release(roles, tier="proxy") != release(roles, tier="web")


@pytest.mark.parametrize(("tier", "suite", "base", "field"), [
    ("webb", "bookworm", BASE, "tier"),
    ("web", "Bookworm 12", BASE, "suite"),
    ("web", "bookworm", "fleetscale/node:bookworm", "base_image_id"),
    ("web", "bookworm", None, "base_image_id"),
    # '$' of re.match accepted a value ending in a newline.
    ("web", "bookworm\n", BASE, "suite"),
    ("web", "bookworm", BASE + "\n", "base_image_id"),
])
def test_bad_input_is_refused_naming_the_field(roles, tier, suite, base, field):
    with pytest.raises(PlanError) as refused:
        images.tier_release(tier, suite, base, str(roles))
    assert refused.value.field == field


def test_a_missing_role_is_refused(tmp_path):
    with pytest.raises(PlanError, match="is not a directory"):
        images.tier_release("app", "bookworm", BASE, str(tmp_path))


def lookup(terms):
    """fleetscale.split.tier_release through the real ansible command, as a play uses it."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_CALLBACK_RESULT_FORMAT="json", ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".build" / "collections"))
    expression = "{{ query('fleetscale.split.tier_release', %s, suite='bookworm', base_image_id='%s') }}" % (
        ", ".join(repr(term) for term in terms), BASE)
    return subprocess.run([str(ROOT / ".venv" / "bin" / "ansible"), "localhost", "-i", "localhost,", "-c", "local",
                           "-m", "ansible.builtin.debug", "-a", "msg=" + expression],
                          capture_output=True, text=True, cwd=ROOT, env=env, check=False)


def test_the_lookup_gives_one_release_per_tier_of_the_collections_roles():
    done = lookup(["proxy", "web", "app", "database"])
    assert done.returncode == 0, done.stdout + done.stderr
    releases = json.loads(done.stdout[done.stdout.index("{"):])["msg"]
    assert releases == [images.tier_release(tier, "bookworm", BASE, str(ROOT / "roles"),
                                            [str(ROOT / "playbooks" / "bake.yml")])
                        for tier in ("proxy", "web", "app", "database")]
    assert len(set(releases)) == 4


def test_the_lookup_names_itself_and_the_field_on_bad_input():
    done = lookup(["cache"])
    assert done.returncode != 0
    assert "fleetscale.split.tier_release: field 'tier'" in done.stdout + done.stderr
    assert "'cache'" in done.stdout + done.stderr


def test_the_collections_install_inputs_exist_for_every_tier():
    for role in images.TIER_ROLES.values():
        assert os.path.isfile(ROOT / "roles" / role / "tasks" / "install.yml")
