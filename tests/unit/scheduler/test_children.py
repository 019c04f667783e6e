"""Children of the supervisors and the sequencer: real processes in their own group, and units."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

from fleet_scheduler import children
from fleet_scheduler.children import ProcessChild, UnitChild


def wait(child: ProcessChild, seconds: float = 5.0) -> int | None:
    deadline = time.monotonic() + seconds
    while child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    return child.poll()


def test_a_command_runs_in_its_own_group_with_its_output_captured():
    with tempfile.TemporaryFile() as output:
        child = ProcessChild('echo "run $FLEET_RUN_ID"; exit 3', {"FLEET_RUN_ID": "7", "PATH": "/usr/bin:/bin"}, output)
        assert wait(child) == 3
        output.seek(0)
        assert output.read() == b"run 7\n"
        assert child.pid is not None


def test_stop_terminates_then_kills_the_whole_group():
    with tempfile.TemporaryFile() as output:
        # The shell ignores SIGTERM; its background sleep is in the same group.
        child = ProcessChild("trap '' TERM; sleep 30 & echo $!; wait", {"PATH": "/usr/bin:/bin"}, output)
        deadline = time.monotonic() + 5
        while output.tell() == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
            output.seek(0, os.SEEK_END)
        output.seek(0)
        sleeper = int(output.read().split()[0])
        started = time.monotonic()
        status = children.stop(child, 0.3)
        assert status is not None and status < 0
        assert 0.25 <= time.monotonic() - started < 3
        time.sleep(0.1)
        assert not os.path.exists(f"/proc/{sleeper}") or "zombie" in Path(f"/proc/{sleeper}/status").read_text().lower()


def test_a_unit_is_started_polled_and_stopped_with_systemctl():
    calls: list[list[str]] = []
    states = iter(["active", "failed"])

    def run(args, **_kwargs):
        calls.append(args)
        state = next(states) if args[1] == "is-active" else ""
        return subprocess.CompletedProcess(args, 0, stdout=f"{state}\n", stderr="")

    child = UnitChild("automate-agent.service", run=run)
    assert child.poll() is None
    assert child.poll() == children.UNIT_ENDED
    child.terminate()
    child.kill()
    assert calls == [
        ["systemctl", "start", "--no-block", "automate-agent.service"],
        ["systemctl", "is-active", "automate-agent.service"],
        ["systemctl", "is-active", "automate-agent.service"],
        ["systemctl", "stop", "--no-block", "automate-agent.service"],
        ["systemctl", "kill", "--signal=SIGKILL", "automate-agent.service"],
    ]
