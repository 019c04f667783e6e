"""The status file (/run/fleet-scheduler/status.json) and the fleet-scheduler-status command.

The service rewrites the file after every round: {"role": "active" | "standby",
"holder", "epoch", "since", "node", "updated"}. holder/epoch/since describe the
active scheduler as recorded in scheduler_state (on a standby: the other node).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from datetime import UTC, datetime
from typing import Any

DEFAULT_STATUS_PATH = "/run/fleet-scheduler/status.json"
# Exit code of the command when the service is not running, as `systemctl status` uses.
EXIT_NOT_RUNNING = 3


def iso_utc(value: datetime | None) -> str | None:
    """A database DATETIME (naive, UTC sessions) or an aware time as ISO 8601 UTC."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(timespec="milliseconds") + "Z"


def build_status(role: str, node: str, holder: str | None, epoch: int | None, since: datetime | None) -> dict[str, Any]:
    return {
        "role": role,
        "holder": holder or None,
        "epoch": epoch,
        "since": iso_utc(since),
        "node": node,
        "updated": iso_utc(datetime.now(UTC)),
    }


def write_status(path: str, status: dict[str, Any]) -> None:
    """Replace the status file atomically: a reader never sees half a file."""
    directory = os.path.dirname(path) or "."
    handle, temporary = tempfile.mkstemp(prefix=".status-", dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(status, stream, sort_keys=True)
            stream.write("\n")
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def main(argv: list[str] | None = None) -> int:
    """fleet-scheduler-status [PATH]: print this node's scheduler status."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1 or (args and args[0] in ("-h", "--help")):
        print("usage: fleet-scheduler-status [STATUS_FILE]", file=sys.stderr)
        return 2
    path = args[0] if args else DEFAULT_STATUS_PATH
    try:
        with open(path, encoding="utf-8") as stream:
            status = json.load(stream)
    except FileNotFoundError:
        print(f"fleet-scheduler-status: {path} does not exist: is fleet-scheduler running?", file=sys.stderr)
        return EXIT_NOT_RUNNING
    except (OSError, ValueError) as exc:
        print(f"fleet-scheduler-status: cannot read {path}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(status, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
