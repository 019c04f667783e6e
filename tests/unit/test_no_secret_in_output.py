"""Every task that touches a secret hides its values (no_log), so no secret reaches Ansible's output.

tools/nolog/secret_tasks.py finds the tasks: the secrets are the role options argument_specs marks
no_log, the inventory's fleet_*password* variables and every role variable built from them. The
drills (molecule/rolling/tests/test_drills.py) run the role task files found here at -vvv against its nodes
with unique secrets and checks that none of them is printed.
"""

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "nolog"))

import secret_tasks  # a tool of the checkout


def test_every_task_that_touches_a_secret_hides_it():
    touches = secret_tasks.scan()
    printed = [touch.where for touch in touches if not touch.hidden]
    assert not printed, "tasks that touch a secret without no_log: true:\n  " + "\n  ".join(printed)


def test_the_scan_finds_the_secret_tasks_of_every_role_with_secrets():
    files = secret_tasks.role_task_files(secret_tasks.scan())
    # Each role that takes a password writes or sends it somewhere.
    assert {"database", "proxy", "web", "app"} <= set(files), files
    assert "accounts.yml" in files["database"] and "tls.yml" in files["proxy"], files


def test_secrets_derived_in_role_variables_count():
    secrets = secret_tasks.secret_variables()
    assert {"web_db_password", "proxy_tls_key", "fleet_db_web_password", "__database_accounts"} <= secrets


def test_the_scan_flags_a_task_that_would_print_a_secret(tmp_path):
    secrets = {"web_db_password", "__database_accounts"}
    path = tmp_path / "tasks.yml"
    printed = secret_tasks.touched(path, {"name": "Show", "ansible.builtin.debug": {
        "msg": "{{ web_db_password }}"}}, secrets)
    assert printed is not None and not printed.hidden
    looped = secret_tasks.touched(path, {"name": "Loop", "ansible.builtin.command": "true",
                                         "loop": "{{ __database_accounts }}", "no_log": True}, secrets)
    assert looped is not None and looped.hidden
    # Only the length is tested, and a message that names the variable in plain text prints nothing.
    length = secret_tasks.touched(path, {"name": "Length", "ansible.builtin.assert": {
        "that": "web_db_password | length > 0", "fail_msg": "web_db_password is empty"}}, secrets)
    assert length is None
    in_when = secret_tasks.touched(path, {"name": "When", "ansible.builtin.command": "true",
                                          "when": "web_db_password == 'x'"}, secrets)
    assert in_when is None
