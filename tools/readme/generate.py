#!/usr/bin/env python3
"""Regenerate the generated parts of the docs: the sizing table, the role variables and the roles' summaries.

The sizing table (docs/capacity.md) is computed by the collection's own filters (split_plan), the role variable
tables (docs/roles.md) come from each role's meta/argument_specs.yml, and the summary at the top of each role's
README (what the role is, its entry points) from its meta/main.yml and meta/argument_specs.yml, so none is typed
by hand. `--check` exits 1 when a page is out of date (the unit tests run it).
"""

from __future__ import annotations

import argparse
import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / ".build" / "collections"))

from ansible_collections.fleetscale.split.plugins.filter.split import split_plan

SIZES = (5_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000)
# Each role and the entry point of its argument specs that holds its settings (docs/roles.md).
ROLES = {"proxy": "main", "web": "main", "app": "main", "database": "main", "rolling": "plan"}
# Every role of the collection: each README starts with its generated summary.
ALL_ROLES = sorted(path.parent.parent.name for path in (ROOT / "roles").glob("*/meta/argument_specs.yml"))


def sizing_table():
    rows = ["| agents | check-ins/min | check-ins/s | proxies | agent web | user web | app (active+standby) "
            "| database shards | agent web utilisation (after losing one) | agents before the next agent web node |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for agents in SIZES:
        plan = split_plan({"agents": agents})
        tiers = plan["tiers"]
        web = tiers["web_agent"]
        rows.append("| %s | %s | %s | %d | %d | %d | %d+%d | %d | %.0f %% (%.0f %%) | %s |" % (
            format(agents, ","), format(int(plan["rate"]["per_minute"]), ","), format(plan["rate"]["per_second"], ",g"),
            tiers["proxy"]["nodes"], web["nodes"], tiers["web_user"]["nodes"], tiers["app"]["active"],
            tiers["app"]["standbys"], tiers["database"]["shards"], web["utilisation"] * 100,
            web["utilisation_after_loss"] * 100, format(web["headroom_agents"], ",")))
    return "\n".join(rows)


def _cell(text):
    return " ".join(str(text).split()).replace("|", "\\|")


def role_options(role):
    """The options of a role's meta/argument_specs.yml (the entry point ROLES names)."""
    path = ROOT / "roles" / role / "meta" / "argument_specs.yml"
    return yaml.safe_load(path.read_text())["argument_specs"][ROLES[role]].get("options", {})


def role_defaults(role):
    """The role's defaults/main.yml: the values really in force, kept out of argument_specs on purpose."""
    return yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text()) or {}


def _default_cell(value):
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return "`%s`" % str(value).lower()
    if isinstance(value, str):
        return _cell("`%s`" % value) if value else '`""`'
    if isinstance(value, (list, dict)) and len(yaml.safe_dump(value, default_flow_style=True)) > 60:
        return "(%d entries, see defaults/main.yml)" % len(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
    return _cell("`%s`" % text.removesuffix("...").strip())


def role_variables(role):
    options = role_options(role)
    defaults = role_defaults(role)
    rows = ["| variable | type | default | description |", "|---|---|---|---|"]
    for name in sorted(options):
        option = options[name]
        description = option.get("description", "")
        if isinstance(description, list):
            description = " ".join(description)
        default = _default_cell(defaults[name]) if name in defaults else "(required)"
        rows.append("| `%s` | %s | %s | %s |" % (name, option.get("type", "str"), default, _cell(description)))
    return "\n".join(rows)


def role_summary(role):
    """What the role is (its meta/main.yml description) and how it is called: one row per entry point."""
    info = yaml.safe_load((ROOT / "roles" / role / "meta" / "main.yml").read_text())["galaxy_info"]
    specs = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    rows = [" ".join(info["description"].split()), "",
            "| entry point | what it does | variables |", "|---|---|---|"]
    for name, spec in specs.items():
        call = "`roles: [fleetscale.split.%s]`" % role if name == "main" else "`tasks_from: %s`" % name
        if ROLES.get(role) == name:
            variables = "[docs/roles.md](../../docs/roles.md#%s)" % role
        else:
            variables = ", ".join("`%s`" % option for option in sorted(spec.get("options", {}))) or "none"
        rows.append("| %s | %s | %s |" % (call, _cell(spec["short_description"]), variables))
    return "\n".join(rows)


# The pages that hold generated blocks: the sizing table, each role's variables and each role's summary.
PAGES = ("docs/capacity.md", "docs/roles.md", *("roles/%s/README.md" % role for role in ALL_ROLES))


def blocks():
    found = {"sizing-table": sizing_table()}
    for role in ROLES:
        found["role-variables-%s" % role] = role_variables(role)
    for role in ALL_ROLES:
        found["role-summary-%s" % role] = role_summary(role)
    return found


def render(text, wanted):
    """The page with each of its generated blocks made current; the names of the blocks it holds."""
    held = []
    for name, body in wanted.items():
        pattern = re.compile(r"(<!-- BEGIN %s -->\n)(?:.*?\n)?(<!-- END %s -->)" % (name, name), re.S)
        if pattern.search(text):
            held.append(name)
            text = pattern.sub(lambda m, body=body: m.group(1) + body + "\n" + m.group(2), text)
    return text, held


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a page is not up to date")
    args = parser.parse_args()
    wanted = blocks()
    stale, held = [], []
    for page in PAGES:
        path = ROOT / page
        current = path.read_text()
        rendered, names = render(current, wanted)
        held += names
        if current != rendered:
            stale.append(page)
            if not args.check:
                path.write_text(rendered)
    missing = sorted(set(wanted) - set(held))
    if missing:
        raise SystemExit("no <!-- BEGIN name --> ... <!-- END name --> block in %s for: %s"
                         % (", ".join(PAGES), ", ".join(missing)))
    if args.check and stale:
        print("%s out of date: run `make readme`" % ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
