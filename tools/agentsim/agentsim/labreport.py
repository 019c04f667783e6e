"""`lab-report`: the plan against what the lab measured, as one table and a Markdown report.

Inputs are files the lab job already has: the fleet plan (JSON of `ansible-inventory --host`), the
run report (`run --json`), the verify result (`verify --json`) and HAProxy's statistics in CSV
(`/stats;csv` of the stats listener) taken before and after the run. The per-node share of traffic
comes from HAProxy's own counters (the growth of each server's `stot` during the run), not from the
simulator, so a node that answered without the proxy's knowledge cannot hide a skew.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentsim.errors import UsageError

# The service-level objective of the lab: p99 of a check-in through the proxy.
DEFAULT_SLO_P99_MS = 100.0
AGENT_BACKEND = "agents"
USER_BACKEND = "users"
# HAProxy's pseudo-servers of a backend: not nodes.
PSEUDO_SERVERS = ("FRONTEND", "BACKEND")


def read_haproxy_csv(path: str | Path) -> dict[tuple[str, str], dict[str, str]]:
    """(proxy, server) -> the row of HAProxy's `show stat` CSV."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"haproxy stats {path}: cannot read the file: {exc.strerror or exc}") from None
    return parse_haproxy_csv(text, str(path))


def parse_haproxy_csv(text: str, source: str) -> dict[tuple[str, str], dict[str, str]]:
    # The header line starts with "# pxname,svname,..."
    if not text.startswith("# pxname,"):
        raise UsageError(f"haproxy stats {source}: not HAProxy CSV statistics (expected a '# pxname,' header)")
    reader = csv.DictReader(io.StringIO(text[2:]))
    rows = {}
    for row in reader:
        if row.get("pxname") and row.get("svname"):
            rows[(row["pxname"], row["svname"])] = row
    return rows


def _counter(row: dict[str, str] | None, field: str) -> int:
    value = (row or {}).get(field) or "0"
    return int(value) if value.isdigit() else 0


def backend_shares(before: dict[tuple[str, str], dict[str, str]], after: dict[tuple[str, str], dict[str, str]],
                   backend: str) -> dict[str, dict[str, Any]]:
    """Requests each server of `backend` took during the run (growth of stot), their share and state."""
    servers = sorted(sv for (px, sv) in after if px == backend and sv not in PSEUDO_SERVERS)
    taken = {sv: max(0, _counter(after[(backend, sv)], "stot") - _counter(before.get((backend, sv)), "stot"))
             for sv in servers}
    total = sum(taken.values())
    return {
        sv: {
            "requests": taken[sv],
            "share": round(taken[sv] / total, 4) if total else 0.0,
            "status": after[(backend, sv)].get("status", "?"),
            "backup": after[(backend, sv)].get("bck") == "1",
        }
        for sv in servers
    }


def lab_table(plan: dict[str, Any], run: dict[str, Any], verify: dict[str, Any] | None,
              agent_shares: dict[str, dict[str, Any]], slo_p99_ms: float = DEFAULT_SLO_P99_MS) -> list[list[str]]:
    """Rows of (figure, planned, measured, verdict)."""
    rate = plan["rate"]
    tier = plan["tiers"]["web_agent"]
    throughput = run["throughput"]
    window = throughput["send_window_s"] or 1.0
    measured_per_s = throughput["acknowledged_per_s"]
    errors = run["errors"]
    p99 = run["latency_ms"]["p99"]
    kinds = ", ".join(f"{kind} {count}" for kind, count in errors["by_kind"].items() if count)
    rows = [
        ["check-ins per minute", f"{rate['per_minute']:,.0f}", f"{measured_per_s * 60:,.0f}",
         _verdict(measured_per_s >= 0.95 * run["settings"]["rate_per_s"])],
        ["check-ins per second", f"{rate['per_second']:,.1f}", f"{measured_per_s:,.1f}", ""],
        ["p99 latency", f"<= {slo_p99_ms:g} ms", _ms(p99), _verdict(p99 is not None and p99 <= slo_p99_ms)],
        ["failed requests", "0", f"{errors['total']}" + (f" ({kinds})" if kinds else ""),
         _verdict(errors["total"] == 0)],
    ]
    if verify is not None:
        lost = verify["missing"] + verify["found_on_wrong_shard"]
        rows.append(["lost acknowledged check-ins", "0",
                     f"{lost} of {verify['acknowledged']:,} (verified in the shard databases)", _verdict(lost == 0)])
    capacity = tier["capacity_rps"]
    planned_share = 1 / tier["nodes"] if tier["nodes"] else 0.0
    for server, entry in agent_shares.items():
        node_rate = entry["requests"] / window
        rows.append([
            f"{server}: share of agent traffic, utilisation",
            f"{planned_share * 100:.0f} %, {tier['utilisation'] * 100:.1f} % of {capacity:g}/s",
            f"{entry['share'] * 100:.1f} %, {node_rate / capacity * 100:.1f} % ({node_rate:.1f}/s, {entry['status']})",
            _verdict(entry["status"] == "UP"),
        ])
    return rows


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def text_table(rows: Sequence[Sequence[str]], header: Sequence[str] = ("", "planned", "measured", "")) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows: Sequence[Sequence[str]], header: Sequence[str] = ("figure", "planned", "measured", "")) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def mermaid_topology(plan: dict[str, Any]) -> str:
    """The split as a Mermaid flowchart: proxies, the two web backends, the app tier and the shards."""
    hosts = plan["hosts"]
    ids = {}

    def node(name: str, label: str) -> str:
        ids[name] = "n%d" % len(ids)
        return f'    {ids[name]}["{label}"]'

    lines = ["flowchart LR", '    agents(("agents")) --> proxies', '    users(("users, integrations")) --> proxies',
             '    subgraph proxies["proxies (HAProxy)"]']
    lines += [node(h, h) for h in hosts.get("proxy", [])]
    lines += ["    end", '    subgraph web_agent["backend agents: /agent/"]']
    lines += [node(h, h) for h in hosts.get("web_agent", [])]
    lines += ["    end", '    subgraph web_user["backend users (agent nodes as backup)"]']
    lines += [node(h, h) for h in hosts.get("web_user", [])]
    lines += ["    end", '    subgraph app["app: one active scheduler"]']
    active = plan["tiers"]["app"]["active"]
    lines += [node(h, f"{h} ({'active' if i < active else 'standby'})") for i, h in enumerate(hosts.get("app", []))]
    lines += ["    end", '    subgraph database["database shards"]']
    for shard in plan["shards"]:
        tenants = len(shard.get("tenants", []))
        lines.append(node(f"shard-{shard['shard']}",
                          f"{shard['host']}: {shard['schema']}, {tenants} tenants, {shard['agents']:,} agents"))
    lines += ["    end", "    proxies --> web_agent", "    proxies --> web_user",
              "    web_user -. fallback .-> web_agent", "    web_agent --> database", "    web_user --> database",
              "    app --> database"]
    return "\n".join(lines)


def plan_table(plan: dict[str, Any]) -> str:
    rows = ["| tier | nodes | planned /s per node | capacity /s per node | utilisation (after losing one) |",
            "|---|---:|---:|---:|---:|"]
    for name in ("proxy", "web_agent", "web_user", "app", "database"):
        tier = plan["tiers"][name]
        utilisation = "-" if tier.get("utilisation") is None else "%.1f %% (%s)" % (
            tier["utilisation"] * 100,
            "-" if tier.get("utilisation_after_loss") is None else "%.1f %%" % (tier["utilisation_after_loss"] * 100))
        rows.append("| %s | %d | %s | %s | %s |" % (
            name, tier["nodes"], _num(tier.get("per_node_rps")), _num(tier.get("capacity_rps")), utilisation))
    return "\n".join(rows)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:,g}"


def markdown_report(plan: dict[str, Any], rows: Sequence[Sequence[str]], run_summary: str, verify_summary: str,
                    png_name: str | None, stats_url: str | None) -> str:
    rate = plan["rate"]
    parts = [
        "# fleetscale.split lab run",
        "",
        f"{plan['agents']:,} agents in {len(plan['tenants'])} tenants: {rate['per_minute']:,.0f} check-ins per "
        f"minute ({rate['per_second']:,.1f}/s) planned.",
        "",
        "## Planned against measured",
        "",
        markdown_table(rows),
        "",
        "## Topology",
        "",
        "```mermaid",
        mermaid_topology(plan),
        "```",
        "",
        "## The plan",
        "",
        plan_table(plan),
        "",
    ]
    if png_name:
        parts += ["## Latency over time", "", f"![check-in latency over time]({png_name})", ""]
    parts += ["## Simulator", "", "```", run_summary, "```", "", "## Ledger verification", "", "```", verify_summary,
              "```", ""]
    if stats_url:
        parts += [f"HAProxy statistics: {stats_url}", ""]
    return "\n".join(parts)
