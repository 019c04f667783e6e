"""`verify`: proves that every acknowledged check-in of a ledger is in its tenant's shard database.

The tenant -> shard placement comes from the fleet plan. Every shard of the plan is read for
the ledger's tenants, so a check-in written to the wrong shard is caught as well as one that is
missing. Rows are read through a CheckinReader; DockerExecReader is the lab's (mysql inside the
shard host's container, as root over the local socket); a reader over a direct MySQL connection
only needs the same `read` method.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from agentsim.errors import ReaderUnavailable, UsageError
from agentsim.ledger import LedgerEntry
from agentsim.plan import FleetPlan, ShardPlan

MAX_EXAMPLES = 20
# Tenant names go into SQL literals; this is the check-in service's identifier rule, which
# admits no quote or backslash, so quoting them cannot be escaped from.
SAFE_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}")
SAFE_SCHEMA = re.compile(r"[A-Za-z0-9_]{1,64}")

SeqRanges = dict[str, tuple[int, int]]  # tenant -> (lowest, highest) seq of the ledger
Row = tuple[str, str, int]  # (tenant, agent_id, seq)


class CheckinReader(Protocol):
    """Reads (tenant, agent_id, seq) of one shard's checkins table, limited to the given seq ranges."""

    def read(self, shard: ShardPlan, ranges: SeqRanges) -> Iterable[Row]: ...


def checkins_query(ranges: SeqRanges) -> str:
    """The read-only SELECT of the ledger's tenants, each limited to the seq range of the ledger.

    The range keeps the read to this run's rows: seqs start at the run's start time, so older
    runs of the same agents sit below it.
    """
    conditions = []
    for tenant, (low, high) in sorted(ranges.items()):
        if not SAFE_TENANT.fullmatch(tenant):
            raise UsageError(f"ledger tenant {tenant!r} is not a valid tenant name")
        conditions.append(f"(tenant = '{tenant}' AND seq BETWEEN {int(low)} AND {int(high)})")
    where = " OR ".join(conditions) if conditions else "FALSE"
    return (
        "SET SESSION TRANSACTION READ ONLY;\n"
        f"SELECT tenant, agent_id, seq FROM checkins WHERE {where};\n"
    )


def parse_rows(output: str, where: str) -> Iterable[Row]:
    for number, line in enumerate(output.splitlines(), start=1):
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) != 3 or not fields[2].isdigit():
            raise ReaderUnavailable(f"{where}: unexpected output line {number}: {line[:120]!r}")
        yield fields[0], fields[1], int(fields[2])


class DockerExecReader:
    """`docker exec -i <container> mysql -N -B <schema>` with the SELECT on stdin."""

    def __init__(
        self,
        docker: str = "docker",
        container_for: Callable[[ShardPlan], str] = lambda shard: shard.host,
        timeout: float = 300.0,
        run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
    ):
        self._docker = docker
        self._container_for = container_for
        self._timeout = timeout
        self._run = run

    def command(self, shard: ShardPlan) -> list[str]:
        if not SAFE_SCHEMA.fullmatch(shard.schema):
            raise UsageError(f"fleet_plan.shards: shard {shard.shard} schema {shard.schema!r} is not a schema name")
        return [self._docker, "exec", "-i", self._container_for(shard), "mysql", "-N", "-B", shard.schema]

    def read(self, shard: ShardPlan, ranges: SeqRanges) -> list[Row]:
        command = self.command(shard)
        where = f"shard {shard.shard} ({command[3]}, schema {shard.schema})"
        try:
            done = self._run(command, input=checkins_query(ranges), capture_output=True, text=True,
                             timeout=self._timeout, check=False)
        except FileNotFoundError:
            raise ReaderUnavailable(f"{where}: cannot run {self._docker!r}: not found") from None
        except subprocess.TimeoutExpired:
            raise ReaderUnavailable(f"{where}: no answer within {self._timeout:g} s") from None
        except OSError as exc:
            raise ReaderUnavailable(f"{where}: cannot run {self._docker!r}: {exc}") from None
        if done.returncode != 0:
            detail = " ".join((done.stderr or done.stdout or "").split())[:300] or "no message"
            raise ReaderUnavailable(f"{where}: `{' '.join(command)}` failed (exit {done.returncode}): {detail}")
        return list(parse_rows(done.stdout, where))


def verify_ledger(entries: Iterable[LedgerEntry], plan: FleetPlan, reader: CheckinReader) -> dict[str, Any]:
    """Counts and examples; result["ok"] is True only if every entry is on its tenant's shard and nowhere else."""
    ledger: dict[Row, LedgerEntry] = {}
    ledger_duplicates = 0
    for entry in entries:
        if entry.key in ledger:
            ledger_duplicates += 1
        else:
            ledger[entry.key] = entry

    placement = {tenant.name: tenant.shard for tenant in plan.tenants}
    unplaced = [key for key in ledger if key[0] not in placement]
    ranges: SeqRanges = {}
    for tenant, _, seq in ledger:
        low, high = ranges.get(tenant, (seq, seq))
        ranges[tenant] = (min(low, seq), max(high, seq))

    found: set[Row] = set()
    wrong: dict[Row, list[int]] = defaultdict(list)
    per_shard: dict[str, dict[str, Any]] = {}
    expected_per_shard = Counter(placement.get(key[0]) for key in ledger)
    for shard in plan.shards:
        rows = reader.read(shard, ranges) if ranges else []
        matched = unacknowledged = 0
        for row in rows:
            if row not in ledger:
                # Committed but never acknowledged (e.g. answered after the client gave up): no claim was made.
                unacknowledged += 1
            elif placement.get(row[0]) == shard.shard:
                found.add(row)
                matched += 1
            else:
                wrong[row].append(shard.shard)
        per_shard[str(shard.shard)] = {
            "host": shard.host,
            "schema": shard.schema,
            "expected": expected_per_shard.get(shard.shard, 0),
            "found": matched,
            "misplaced": sum(1 for shards in wrong.values() if shard.shard in shards),
            "rows_not_in_ledger": unacknowledged,
        }

    missing = sorted(key for key in ledger if key not in found)
    missing_by_node = Counter(ledger[key].node or "(unknown)" for key in missing)
    return {
        "ok": not missing and not wrong,
        "acknowledged": len(ledger),
        "found": len(found),
        "missing": len(missing),
        "missing_examples": [_example(ledger[key], placement, wrong) for key in missing[:MAX_EXAMPLES]],
        "missing_by_node": dict(sorted(missing_by_node.items())),
        "found_on_wrong_shard": len(wrong),
        "wrong_shard_examples": [_example(ledger[key], placement, wrong) for key in sorted(wrong)[:MAX_EXAMPLES]],
        "tenants_not_in_plan": sorted({key[0] for key in unplaced}),
        "ledger_duplicates": ledger_duplicates,
        "per_shard": per_shard,
    }


def _example(entry: LedgerEntry, placement: dict[str, int], wrong: dict[Row, list[int]]) -> dict[str, Any]:
    return {
        "tenant": entry.tenant,
        "agent_id": entry.agent_id,
        "seq": entry.seq,
        "node": entry.node,
        "ts": entry.ts,
        "expected_shard": placement.get(entry.tenant),
        "found_on_shards": sorted(wrong.get(entry.key, [])),
    }


def verify_summary(result: dict[str, Any]) -> str:
    verdict = "OK" if result["ok"] else "FAILED"
    lines = [
        f"verify {verdict}: acknowledged {result['acknowledged']}, found on the right shard {result['found']}, "
        f"missing {result['missing']}, found on a wrong shard {result['found_on_wrong_shard']}",
    ]
    for number, shard in result["per_shard"].items():
        lines.append(f"  shard {number} ({shard['host']}/{shard['schema']}): expected {shard['expected']}, "
                     f"found {shard['found']}, rows not in the ledger {shard['rows_not_in_ledger']}")
    if result["tenants_not_in_plan"]:
        lines.append("  tenants of the ledger not in the plan: " + ", ".join(result["tenants_not_in_plan"]))
    for example in result["missing_examples"][:5]:
        lines.append(f"  missing: {example['tenant']} {example['agent_id']} seq {example['seq']} "
                     f"(acknowledged by {example['node']}, expected on shard {example['expected_shard']})")
    for example in result["wrong_shard_examples"][:5]:
        lines.append(f"  wrong shard: {example['tenant']} {example['agent_id']} seq {example['seq']} on shard(s) "
                     f"{example['found_on_shards']}, expected {example['expected_shard']}")
    if result["ledger_duplicates"]:
        lines.append(f"  note: the ledger lists {result['ledger_duplicates']} check-ins twice")
    return "\n".join(lines)
