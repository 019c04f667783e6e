"""The ledger: one JSON line per ACKNOWLEDGED check-in, the evidence `verify` checks the databases against.

Only acknowledged check-ins are written: an acknowledgement is the service's promise that the
row is committed, so each line is a claim that must hold. Lines are written as answers arrive.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from agentsim.errors import UsageError

FIELDS = ("tenant", "agent_id", "seq", "node", "version", "ts")


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    tenant: str
    agent_id: str
    seq: int
    node: str | None = None
    version: str | None = None
    ts: float = 0.0

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.tenant, self.agent_id, self.seq)


class LedgerWriter:
    """Appends acknowledged check-ins; opened before the first request so a bad path fails early."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.count = 0
        try:
            self._file: IO[str] | None = self.path.open("w", encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--ledger {path}: cannot write the file: {exc.strerror or exc}") from None

    def write(self, tenant: str, agent_id: str, seq: int, node: str | None, version: str | None) -> None:
        if self._file is None:
            return
        line = {"tenant": tenant, "agent_id": agent_id, "seq": seq, "node": node, "version": version,
                "ts": round(time.time(), 6)}
        self._file.write(json.dumps(line, separators=(",", ":")) + "\n")
        self.count += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_ledger(path: str | Path) -> Iterator[LedgerEntry]:
    """Entries of a ledger file; a damaged line is reported by line number and field."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UsageError(f"--ledger {path}: cannot read the file: {exc.strerror or exc}") from None
    for number, line in enumerate(lines, start=1):
        if line.strip():
            yield parse_line(line, f"--ledger {path} line {number}")


def parse_line(line: str, where: str) -> LedgerEntry:
    try:
        record = json.loads(line)
    except ValueError as exc:
        raise UsageError(f"{where}: not valid JSON: {exc}") from None
    if not isinstance(record, dict):
        raise UsageError(f"{where}: expected a JSON object, got {type(record).__name__}")
    for field in ("tenant", "agent_id"):
        if not isinstance(record.get(field), str) or not record[field]:
            raise UsageError(f"{where}: {field} must be a non-empty string, got {record.get(field)!r}")
    seq = record.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise UsageError(f"{where}: seq must be a non-negative integer, got {seq!r}")
    ts = record.get("ts", 0.0)
    return LedgerEntry(
        tenant=record["tenant"],
        agent_id=record["agent_id"],
        seq=seq,
        node=record.get("node") if isinstance(record.get("node"), str) else None,
        version=record.get("version") if isinstance(record.get("version"), str) else None,
        ts=float(ts) if isinstance(ts, int | float) and not isinstance(ts, bool) else 0.0,
    )
