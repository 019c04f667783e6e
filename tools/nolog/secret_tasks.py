"""Which tasks of the collection touch a secret, and whether each hides its values (no_log).

A secret is a variable whose value is one: the role options that argument_specs marks `no_log`,
the inventory's `fleet_*password*` variables they default to, and every variable of a role's
vars/main.yml whose definition uses one of those (transitively, e.g. __database_accounts).
A task touches a secret when one of its templated arguments (inside {{ }} or {% %}, its loop,
an assert's `that`) or the template file it renders names one. Such a task must set
`no_log: true`; the only exception is an assert that tests nothing but the secret's length.

Used by tests/unit/test_no_secret_in_output.py (every task that touches a secret hides it) and by
molecule/rolling/tests/test_drills.py (runs exactly the role task files found here at -vvv with known secrets and checks
that none is printed).

    python tools/nolog/secret_tasks.py        # list the task files that touch a secret
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES = ("proxy", "web", "app", "database")
# Variables of the inventory that hold secrets (the lab's labelled examples, a vault elsewhere).
INVENTORY_SECRET = re.compile(r"^fleet_\w*password\w*$")
JINJA = re.compile(r"{{.*?}}|{%.*?%}", re.DOTALL)
# Keys of a task that are not arguments printed with its result.
NOT_ARGUMENTS = {"name", "no_log", "when", "changed_when", "failed_when", "until", "register", "notify",
                 "tags", "become", "become_user", "delegate_to", "run_once", "check_mode", "diff", "retries",
                 "delay", "ignore_errors", "listen", "vars", "environment", "args", "any_errors_fatal"}
BLOCK_KEYS = ("block", "rescue", "always")
PLAY_TASK_KEYS = ("pre_tasks", "tasks", "post_tasks", "handlers")
ASSERT_MODULES = {"assert", "ansible.builtin.assert"}
TEMPLATE_MODULES = {"template", "ansible.builtin.template"}


@dataclass(frozen=True)
class Touch:
    """A task that names a secret."""

    path: Path
    task: str
    secrets: tuple[str, ...]
    hidden: bool

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}: {self.task!r} ({', '.join(self.secrets)})"


def _load(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        return None


def _names_in(text: str, names: set[str]) -> set[str]:
    return {name for name in names if re.search(rf"\b{re.escape(name)}\b", text)}


def secret_roots() -> set[str]:
    """Role options marked no_log in argument_specs."""
    roots = set()
    for role in ROLES:
        specs = _load(ROOT / "roles" / role / "meta" / "argument_specs.yml") or {}
        for entry in (specs.get("argument_specs") or {}).values():
            for name, option in (entry.get("options") or {}).items():
                if option.get("no_log"):
                    roots.add(name)
    return roots


def secret_variables() -> set[str]:
    """The roots, the inventory's secrets and every role variable defined from them."""
    names = secret_roots()
    definitions: dict[str, str] = {}
    for role in ROLES:
        for part in ("defaults", "vars"):
            data = _load(ROOT / "roles" / role / part / "main.yml") or {}
            for name, value in data.items():
                definitions[name] = yaml.safe_dump(value)
    names |= {found for text in definitions.values() for found in re.findall(r"\bfleet_\w+\b", text)
              if INVENTORY_SECRET.match(found)}
    changed = True
    while changed:
        changed = False
        for name, text in definitions.items():
            if name not in names and _names_in(text, names):
                names.add(name)
                changed = True
    return names


def _tasks(items: Any) -> Iterator[dict[str, Any]]:
    for item in items or []:
        if not isinstance(item, dict):
            continue
        if any(key in item for key in BLOCK_KEYS):
            yield item  # the block's own keys (loop, no_log) apply to its tasks
            for key in BLOCK_KEYS:
                for task in _tasks(item.get(key)):
                    yield {**task, "no_log": task.get("no_log", item.get("no_log", False))}
        else:
            yield item


def tasks_of(path: Path) -> Iterator[dict[str, Any]]:
    """Tasks of a task file, a handler file or a playbook."""
    data = _load(path)
    if not isinstance(data, list):
        return
    if any(isinstance(item, dict) and ("hosts" in item or "import_playbook" in item) for item in data):
        for play in data:
            if isinstance(play, dict):
                for key in PLAY_TASK_KEYS:
                    yield from _tasks(play.get(key))
        return
    yield from _tasks(data)


def _module(task: dict[str, Any]) -> str:
    for key in task:
        if key not in NOT_ARGUMENTS and key not in BLOCK_KEYS and not key.startswith(("loop", "with_")):
            return key
    return ""


def _templated(value: Any) -> str:
    """The Jinja parts of every string in `value`."""
    text = yaml.safe_dump(value, width=10**6) if not isinstance(value, str) else value
    return "\n".join(JINJA.findall(text))


def _template_file(path: Path, src: str) -> Path | None:
    role_dir = next((parent for parent in path.parents if parent.parent.name == "roles"), None)
    if role_dir is None or "{{" in src:
        return None
    candidate = role_dir / "templates" / src
    return candidate if candidate.is_file() else None


def touched(path: Path, task: dict[str, Any], secrets: set[str]) -> Touch | None:
    module = _module(task)
    if module in BLOCK_KEYS or any(key in task for key in BLOCK_KEYS):
        arguments = {k: v for k, v in task.items() if k.startswith(("loop", "with_"))}
    else:
        arguments = {k: v for k, v in task.items() if k not in NOT_ARGUMENTS}
    found = _names_in(_templated(arguments), secrets)
    if module in ASSERT_MODULES:
        that = task[module].get("that", []) if isinstance(task[module], dict) else []
        expressions = "\n".join(that if isinstance(that, list) else [str(that)])
        # A length test prints nothing of the value.
        bare = re.sub(r"\b(\w+)\s*\|\s*length\b", "", expressions)
        found |= _names_in(bare, secrets)
    if module in TEMPLATE_MODULES and isinstance(task[module], dict):
        template = _template_file(path, str(task[module].get("src", "")))
        if template is not None:
            found |= _names_in(template.read_text(), secrets)
    if not found:
        return None
    return Touch(path, str(task.get("name", "(unnamed)")), tuple(sorted(found)), task.get("no_log") is True)


def task_files() -> list[Path]:
    files = [path for role in ROLES for part in ("tasks", "handlers")
             for path in (ROOT / "roles" / role / part).glob("*.yml")]
    files += sorted((ROOT / "playbooks").rglob("*.yml"))
    files += sorted((ROOT / "molecule").glob("*/*.yml"))
    return sorted(p for p in files if p.name != "molecule.yml")


def scan() -> list[Touch]:
    secrets = secret_variables()
    found = []
    for path in task_files():
        for task in tasks_of(path):
            touch = touched(path, task, secrets)
            if touch is not None:
                found.append(touch)
    return found


def role_task_files(touches: list[Touch]) -> dict[str, list[str]]:
    """role -> its task files (names under tasks/) that touch a secret."""
    files: dict[str, set[str]] = {}
    for touch in touches:
        parts = touch.path.relative_to(ROOT).parts
        if len(parts) == 4 and parts[0] == "roles" and parts[2] == "tasks":
            files.setdefault(parts[1], set()).add(parts[3])
    return {role: sorted(names) for role, names in sorted(files.items())}


if __name__ == "__main__":
    touches = scan()
    for touch in touches:
        print(("hidden   " if touch.hidden else "PRINTED  ") + touch.where)
    print(role_task_files(touches))
    sys.exit(0 if all(touch.hidden for touch in touches) else 1)
