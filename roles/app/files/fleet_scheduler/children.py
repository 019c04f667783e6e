"""The processes a supervisor or the sequencer runs: a command, or a systemd unit.

A command runs under `/bin/sh -c` in its own session, so stopping it reaches
every process it started (the signal goes to the process group). Stopping is
two-step and never blocks the caller unless asked: `terminate()` sends
SIGTERM, `kill()` SIGKILL; `stop(timeout)` does both with a wait between.
A unit is started and stopped with systemctl (the supervisor then runs as root).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from typing import IO, Any, Protocol

# Exit status reported for a unit that ended (systemctl has no exit code for it).
UNIT_ENDED = 1


class Child(Protocol):
    """What the supervisor and the sequencer need from a running child."""

    pid: int | None

    def poll(self) -> int | None: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...


class ProcessChild:
    """A shell command in its own process group."""

    def __init__(
        self,
        command: str,
        env: Mapping[str, str],
        output: IO[Any] | None = None,
        user: str | None = None,
        popen: Callable[..., Any] = subprocess.Popen,
    ):
        options: dict[str, Any] = {}
        if user is not None:
            entry = pwd.getpwnam(user)
            # Python drops the groups, then the group, then the user, before exec.
            options = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": [], "cwd": "/"}
            env = {**env, "HOME": entry.pw_dir, "USER": user, "LOGNAME": user}
        self._process = popen(
            ["/bin/sh", "-c", command],
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT if output is not None else None,
            start_new_session=True,
            close_fds=True,
            **options,
        )
        self.pid: int | None = self._process.pid

    def poll(self) -> int | None:
        """The exit status once the shell ended (-N: killed by signal N), else None."""
        return self._process.poll()

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, number: int) -> None:
        if self.pid is None:
            return
        # The group outlives its leader when the shell exits before its children.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, number)


class UnitChild:
    """A systemd unit started and stopped by the supervisor."""

    def __init__(self, unit: str, run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run):
        self.unit = unit
        self.pid: int | None = None
        self._run = run
        self._ended: int | None = None
        self._systemctl("start", "--no-block", unit)

    def poll(self) -> int | None:
        if self._ended is not None:
            return self._ended
        state = self._systemctl("is-active", self.unit).stdout.strip()
        if state in ("active", "activating", "reloading", "deactivating"):
            return None
        self._ended = 0 if state == "inactive" else UNIT_ENDED
        return self._ended

    def terminate(self) -> None:
        self._systemctl("stop", "--no-block", self.unit)

    @staticmethod
    def stop_now(unit: str, run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run) -> None:
        """Stop `unit` and wait for it (a standby must not run it)."""
        run(["systemctl", "stop", unit], capture_output=True, text=True, check=False, timeout=120)

    def kill(self) -> None:
        self._systemctl("kill", "--signal=SIGKILL", self.unit)

    def _systemctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self._run(["systemctl", *args], capture_output=True, text=True, check=False, timeout=30)


def stop(child: Child, timeout: float, sleep: Callable[[float], None] = time.sleep) -> int | None:
    """SIGTERM, up to `timeout` seconds for the child to end, then SIGKILL; its exit status."""
    status = child.poll()
    if status is not None:
        # The leader is gone; whatever it left in its group goes too.
        child.kill()
        return status
    child.terminate()
    waited = 0.0
    while waited < timeout:
        status = child.poll()
        if status is not None:
            child.kill()
            return status
        sleep(0.05)
        waited += 0.05
    child.kill()
    for _ in range(100):
        status = child.poll()
        if status is not None:
            return status
        sleep(0.05)
    return child.poll()
