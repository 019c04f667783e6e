"""The docs' generated tables (sizing from the filters, role variables from argument_specs) are current."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_readme_generated_parts_are_current():
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "readme" / "generate.py"), "--check"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_every_role_default_is_typed_and_every_typed_variable_is_defaulted():
    sys.path.insert(0, str(ROOT / "tools" / "readme"))
    import generate  # noqa: PLC0415 - the generator is a script, imported only here

    for role in generate.ROLES:
        typed = set(generate.role_options(role))
        defaulted = set(generate.role_defaults(role))
        assert defaulted - typed == set(), f"{role}: defaults/main.yml sets variables argument_specs does not type"
        required = {name for name, option in generate.role_options(role).items() if option.get("required")}
        assert typed - defaulted - required == set(), f"{role}: argument_specs types variables without a default"
