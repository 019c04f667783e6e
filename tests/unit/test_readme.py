"""README's generated tables (sizing from the filters, role variables from argument_specs) are current."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_readme_generated_parts_are_current():
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "readme" / "generate.py"), "--check"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
