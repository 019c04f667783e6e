"""The command line: parses and checks the options, then hands over to the modules that do the work.

Exit codes (agentsim.errors): 0 done, 1 the stack failed the check (--fail-on-errors, verify),
2 bad input or refused target (one line `agentsim: error: ...`, nothing sent), 3 a shard could
not be read, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import ssl
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, NoReturn

import agentsim
from agentsim.agentkeys import load_agent_keys
from agentsim.chart import load_report, render_chart
from agentsim.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, AgentsimError, UsageError
from agentsim.labreport import (
    AGENT_BACKEND,
    backend_shares,
    lab_table,
    markdown_report,
    read_haproxy_csv,
    text_table,
)
from agentsim.ledger import read_ledger
from agentsim.plan import FleetPlan, ShardPlan, find_fleet_plan, load_plan
from agentsim.probe import probe_capacity, probe_summary, step_rates
from agentsim.roster import default_seq_start, offset_for_seed, spread
from agentsim.summary import human_summary, markdown_table
from agentsim.target import CHECKIN_PATH, check_target, parse_allowed_networks
from agentsim.verify import SAFE_TENANT, DockerExecReader, verify_ledger, verify_summary

MAX_DURATION_S = 3600.0
MAX_RATE = 20_000.0
MAX_TIMEOUT_S = 120.0
# Latencies are kept exactly (8 bytes each): this bounds the run's memory to some 40 MB.
MAX_REQUESTS = 5_000_000
MAX_TENANTS = 10_000
TENANT_NAME = "tenant-{:03d}"  # the names of the inventory plugin's synthetic tenants


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line `agentsim: error: ...` (exit 2), like every other error."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("agentsim").strip()
        where = f"{command}: " if command else ""
        self.exit(EXIT_USAGE, f"agentsim: error: {where}{message} (see `{self.prog} --help`)\n")


def _number(kind: Callable[[str], float], low: float, high: float, low_open: bool = True) -> Callable[[str], Any]:
    word = "an integer" if kind is int else "a number"
    bounds = f"{'>' if low_open else '>='} {low:g} and <= {high:g}"

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {word}") from None
        if not math.isfinite(value) or value < low or (low_open and value == low) or value > high:
            raise argparse.ArgumentTypeError(f"{text!r} must be {bounds}")
        return value

    return parse


def _path(text: str) -> str:
    if not text.startswith("/") or any(c.isspace() for c in text) or "?" in text or "#" in text:
        raise argparse.ArgumentTypeError(f"{text!r} must be an absolute path without spaces, query or fragment")
    return text


def build_parser() -> Parser:
    parser = Parser(prog="agentsim", description=(agentsim.__doc__ or "").strip(),
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"fleet-agentsim {agentsim.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{run,probe,verify,report,lab-report}")

    run = commands.add_parser("run", help="open-loop check-in load; writes the ledger and the JSON report",
                              description="Sends check-ins at a constant rate (open loop) for a bounded time.")
    bounds = add_load_arguments(run)
    bounds.add_argument("--duration", required=True, type=_number(float, 0, MAX_DURATION_S), metavar="SECONDS",
                        help=f"seconds of sending (at most {MAX_DURATION_S:g})")
    bounds.add_argument("--max-requests", type=_number(int, 0, MAX_REQUESTS), metavar="N",
                        help="stop after this many arrivals (default: rate x duration)")
    out = run.add_argument_group("output")
    out.add_argument("--ledger", metavar="PATH", help="JSON lines, one per acknowledged check-in (for verify)")
    out.add_argument("--json", metavar="PATH", help="the run report")
    out.add_argument("--status-every", type=_number(float, 0, MAX_DURATION_S), metavar="SECONDS",
                     help="print a progress line on stderr this often")
    out.add_argument("--label", metavar="TEXT", help="name of the run in the report, the table and the chart")
    out.add_argument("--fail-on-errors", action="store_true", help="exit 1 if any arrival was not acknowledged")
    run.set_defaults(handler=command_run)

    probe = commands.add_parser(
        "probe", help="step the rate up until p99 passes the objective or a request fails",
        description="Capacity probe: one bounded run per step, rates growing by --step-factor up to --max-rate.")
    steps = add_load_arguments(probe)
    steps.add_argument("--start-rate", type=_number(float, 0, MAX_RATE), default=100.0, metavar="PER_S",
                       help="rate of the first step (default: %(default)s)")
    steps.add_argument("--step-factor", type=_number(float, 1, 10), default=1.5, metavar="X",
                       help="each step's rate is the previous one times this (default: %(default)s)")
    steps.add_argument("--max-rate", type=_number(float, 0, MAX_RATE), required=True, metavar="PER_S",
                       help="the last step's rate: the probe never offers more")
    steps.add_argument("--step-seconds", type=_number(float, 0, 600), default=15.0, metavar="SECONDS",
                       help="seconds of sending per step (default: %(default)s)")
    steps.add_argument("--slo-p99-ms", type=_number(float, 0, 60_000), default=100.0, metavar="MS",
                       help="a step passes with p99 at or under this and no failed request (default: %(default)s)")
    steps.add_argument("--nodes", type=_number(int, 0, 10_000), default=1, metavar="N",
                       help="agent web nodes serving the probe, for the per-node figure (default: %(default)s)")
    steps.add_argument("--json", metavar="PATH", help="the probe's result (every step and the capacity)")
    steps.add_argument("--label", metavar="TEXT", help="name of the probe in its step labels")
    probe.set_defaults(handler=command_probe, seq_start=None, status_every=None, ledger=None)

    lab = commands.add_parser("lab-report", help="the plan against the measurement: one table and a Markdown report",
                              description="Per-node shares come from HAProxy's counters before and after the run.")
    lab.add_argument("--plan", required=True, metavar="JSON", help="the fleet plan the run was made against")
    lab.add_argument("--run", required=True, metavar="JSON", help="the run report (`run --json`)")
    lab.add_argument("--verify", metavar="JSON", help="the verify result (`verify --json`)")
    lab.add_argument("--haproxy-before", required=True, metavar="CSV", help="HAProxy `/stats;csv` before the run")
    lab.add_argument("--haproxy-after", required=True, metavar="CSV", help="HAProxy `/stats;csv` after the run")
    lab.add_argument("--slo-p99-ms", type=_number(float, 0, 60_000), default=100.0, metavar="MS",
                     help="the p99 objective (default: %(default)s)")
    lab.add_argument("--stats-url", metavar="URL", help="where an operator opens HAProxy's statistics page")
    lab.add_argument("--png", metavar="PATH", help="write the latency-over-time chart here")
    lab.add_argument("--markdown", metavar="PATH", help="write the Markdown report here")
    lab.set_defaults(handler=command_lab_report)

    verify = commands.add_parser("verify", help="prove every acknowledged check-in is in its tenant's shard",
                                 description="Reads the shard databases through `docker exec ... mysql`.")
    verify.add_argument("--ledger", required=True, metavar="PATH", help="the ledger written by `run --ledger`")
    verify.add_argument("--plan", required=True, metavar="JSON", help="the fleet plan the run was made against")
    verify.add_argument("--docker", default="docker", metavar="PATH", help="docker client (default: %(default)s)")
    verify.add_argument("--container", default="{host}", metavar="TEMPLATE",
                        help="container of a shard; fields {host} {shard} {schema} (default: %(default)s)")
    verify.add_argument("--reader-timeout", type=_number(float, 0, 3600), default=120.0, metavar="SECONDS",
                        help="seconds for one shard's read (default: %(default)s)")
    verify.add_argument("--json", metavar="PATH", help="the verify result")
    verify.set_defaults(handler=command_verify)

    report = commands.add_parser("report", help="run reports -> latency PNG and Markdown table",
                                 description="Prints the Markdown table and writes the chart.")
    report.add_argument("runs", nargs="+", metavar="NAME=PATH", help="run reports (`run --json`); NAME= optional")
    report.add_argument("--png", required=True, metavar="PATH", help="the chart to write")
    report.add_argument("--markdown", metavar="PATH", help="also write the table to this file")
    report.add_argument("--title", help="title of the chart")
    report.set_defaults(handler=command_report)
    return parser


def add_load_arguments(command: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """Target, roster and per-request bounds shared by `run` and `probe`; returns the bounds group."""
    command.add_argument("--url", required=True,
                         help="base URL of the proxy, e.g. http://127.0.0.1:8080 (loopback or --allow-network only)")
    command.add_argument("--allow-network", action="append", default=[], metavar="CIDR",
                         help="a private lab network the target may be in (repeatable), e.g. 172.28.0.0/16")
    command.add_argument("--path", default=CHECKIN_PATH, type=_path,
                         help="path the check-ins are POSTed to (default: %(default)s)")
    roster = command.add_argument_group("roster and rate")
    roster.add_argument("--plan", metavar="JSON", help="fleet plan: output of `ansible-inventory --host <host>`")
    roster.add_argument("--agents", type=_number(int, 0, 1_000_000), metavar="N",
                        help="agents, spread over the plan's tenants by their sizes (without --plan: required)")
    roster.add_argument("--tenants", metavar="N|NAME,...",
                        help="without --plan: a count (tenant-001...) or a comma-separated list of names")
    roster.add_argument("--rate", type=_number(float, 0, MAX_RATE), metavar="PER_S",
                        help="check-ins per second (default: the plan's rate.per_second)")
    roster.add_argument("--seed", type=int, metavar="N", help="picks the first agent of the round robin reproducibly")
    roster.add_argument("--seq-start", type=_number(int, 0, 2**62, low_open=False), metavar="SEQ",
                        help="first seq of every agent (default: microseconds since the epoch)")
    roster.add_argument("--agent-keys", metavar="FILE",
                        help='agent keys, {"agent_master_keys": [{"id": ..., "secret": ...}], "agent_keys": '
                             '{"<tenant>": [...]}} (fleet_agent_master_keys, fleet_agent_keys): '
                             "each check-in carries its agent's token from the tenant's first key "
                             "(without: no Authorization header, and the service answers 401)")
    bounds = command.add_argument_group("bounds")
    bounds.add_argument("--timeout", type=_number(float, 0, MAX_TIMEOUT_S), default=5.0, metavar="SECONDS",
                        help="seconds for one complete answer (default: %(default)s)")
    bounds.add_argument("--max-in-flight", type=_number(int, 0, 100_000), default=1000, metavar="N",
                        help="outstanding requests; arrivals beyond are counted as `overload` (default: %(default)s)")
    bounds.add_argument("--connections", type=_number(int, 0, 10_000), default=100, metavar="N",
                        help="size of the keep-alive connection pool (default: %(default)s)")
    bounds.add_argument("--no-keep-alive", action="store_true", help="a new connection for every check-in")
    tls = command.add_mutually_exclusive_group()
    tls.add_argument("--insecure", action="store_true", help="https: do not verify the certificate")
    tls.add_argument("--ca-file", metavar="PEM", help="https: verify the certificate against this CA bundle")
    return bounds


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except AgentsimError as exc:
        print(f"agentsim: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("agentsim: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


# --- run ---------------------------------------------------------------------------------------


def command_run(args: argparse.Namespace) -> int:
    settings = run_settings(args, args.rate, args.duration, args.max_requests)
    from agentsim.load import run_load  # noqa: PLC0415  (aiohttp only once the options are good)

    with output_file(args.json, "--json") as report_file:
        report = asyncio.run(run_load(settings, status_stream=sys.stderr, handle_signals=True))
        write_json(report_file, report)
    print(human_summary(report), flush=True)
    if report["stopped_by"] == "interrupted":
        print("agentsim: interrupted: the run stopped before its end; the report covers what was sent",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    if args.fail_on_errors and report["errors"]["total"]:
        by_kind = ", ".join(f"{k} {v}" for k, v in report["errors"]["by_kind"].items() if v)
        print(f"agentsim: failed: {report['errors']['total']} of {report['throughput']['arrivals']} arrivals "
              f"were not acknowledged ({by_kind}) and --fail-on-errors is set", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def run_settings(args: argparse.Namespace, rate: float | None, duration: float, max_requests: int | None) -> Any:
    """RunSettings from the load options; the target is checked before anything may open a connection."""
    plan = load_plan(args.plan) if args.plan else None
    tenants = roster_counts(args, plan)
    if rate is None:
        rate = plan.rate_per_second if plan else None
    if rate is None:
        raise UsageError("--rate is required: the plan gives no rate.per_second" if plan else
                         "--rate is required without --plan")
    if rate > MAX_RATE:
        raise UsageError(f"--plan {args.plan}: rate.per_second {rate:g} is above {MAX_RATE:g}; give --rate")
    scheduled = math.ceil(rate * duration - 1e-9)
    max_requests = max_requests if max_requests is not None else scheduled
    if max_requests > MAX_REQUESTS:
        raise UsageError(f"--rate {rate:g} x --duration {duration:g} is {scheduled} check-ins, more than "
                         f"{MAX_REQUESTS} per run; lower them or give --max-requests")
    # Only the tenants that send need a key.
    agent_keys = (load_agent_keys(args.agent_keys, [name for name, count in tenants.items() if count > 0])
                  if args.agent_keys else None)
    target = check_target(args.url, parse_allowed_networks(args.allow_network))
    # aiohttp is imported once the options are known to be good, and by `run` and `probe` only.
    from agentsim.client import ssl_setting  # noqa: PLC0415
    from agentsim.load import RunSettings  # noqa: PLC0415

    return RunSettings(
        target=target,
        tenants=tenants,
        rate=rate,
        duration=duration,
        max_requests=max_requests,
        timeout=args.timeout,
        max_in_flight=args.max_in_flight,
        connections=args.connections,
        seq_start=args.seq_start if args.seq_start is not None else default_seq_start(),
        first_agent=offset_for_seed(args.seed, sum(tenants.values())),
        seed=args.seed,
        new_connections=args.no_keep_alive,
        tls=tls_setting(args, ssl_setting),
        label=args.label,
        status_every=args.status_every,
        ledger_path=args.ledger,
        path=args.path,
        agent_keys=agent_keys,
    )


def roster_counts(args: argparse.Namespace, plan: FleetPlan | None) -> dict[str, int]:
    """Agents per tenant: the plan's (optionally re-spread to --agents) or an ad-hoc roster."""
    if plan is not None:
        if args.tenants is not None:
            raise UsageError(f"--tenants {args.tenants!r} cannot be combined with --plan (the plan names the tenants)")
        sizes = [(tenant.name, tenant.agents) for tenant in plan.tenants]
        if args.agents is not None:
            return spread(args.agents, sizes)
        if sum(size for _, size in sizes) < 1:
            raise UsageError(f"--plan {args.plan}: its tenants have no agents; give --agents")
        return dict(sizes)
    if args.agents is None:
        raise UsageError("--agents is required without --plan")
    text = (args.tenants or "1").strip()
    if text.isdigit():
        count = int(text)
        if not 1 <= count <= MAX_TENANTS:
            raise UsageError(f"--tenants {text!r}: a count must be 1-{MAX_TENANTS}")
        names = [TENANT_NAME.format(i) for i in range(1, count + 1)]
    else:
        names = [name.strip() for name in text.split(",")]
        for name in names:
            if not SAFE_TENANT.fullmatch(name):
                raise UsageError(f"--tenants {text!r}: {name!r} is not a tenant name "
                                 "(1-64 of A-Z a-z 0-9 . _ : @ -, starting with a letter or digit)")
        if len(set(names)) != len(names):
            raise UsageError(f"--tenants {text!r} names a tenant twice")
    return spread(args.agents, [(name, 0) for name in names])


def tls_setting(args: argparse.Namespace, ssl_setting: Callable[[bool, str | None], Any]) -> Any:
    try:
        return ssl_setting(args.insecure, args.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"--ca-file {args.ca_file}: cannot load the CA bundle: {exc}") from None


# --- verify ------------------------------------------------------------------------------------


def command_verify(args: argparse.Namespace) -> int:
    plan = load_plan(args.plan)
    entries = list(read_ledger(args.ledger))
    container_for = container_template(args.container, plan.shards)
    reader = DockerExecReader(docker=args.docker, container_for=container_for, timeout=args.reader_timeout)
    with output_file(args.json, "--json") as result_file:
        result = {"ledger": args.ledger, "plan": args.plan, **verify_ledger(entries, plan, reader)}
        write_json(result_file, result)
    print(verify_summary(result), flush=True)
    return EXIT_OK if result["ok"] else EXIT_FAILED


def container_template(template: str, shards: Sequence[ShardPlan]) -> Callable[[ShardPlan], str]:
    def container_for(shard: ShardPlan) -> str:
        return template.format(host=shard.host, shard=shard.shard, schema=shard.schema)

    for shard in shards:
        try:
            name = container_for(shard)
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            raise UsageError(f"--container {template!r} is not a valid template "
                             f"(fields: {{host}} {{shard}} {{schema}}): {exc!r}") from None
        if not name or name.startswith("-") or any(c.isspace() for c in name):
            raise UsageError(f"--container {template!r} gives {name!r} for shard {shard.shard}, "
                             "which is not a container name")
    return container_for


# --- report ------------------------------------------------------------------------------------


def command_report(args: argparse.Namespace) -> int:
    names: list[str] = []
    reports: list[dict[str, Any]] = []
    for item in args.runs:
        name, sep, path = item.partition("=")
        if not sep:
            name, path = Path(item).stem, item
        if not name or not path:
            raise UsageError(f"report {item!r}: expected NAME=PATH or PATH")
        if name in names:
            raise UsageError(f"report {item!r}: the name {name!r} is given twice")
        names.append(name)
        reports.append(load_report(path))
    table = markdown_table(reports, names)
    with output_file(args.markdown, "--markdown") as markdown_file:
        render_chart(reports, names, args.png, title=args.title)
        if markdown_file is not None:
            markdown_file.write(table + "\n")
    print(table, flush=True)
    return EXIT_OK


# --- probe -------------------------------------------------------------------------------------


def command_probe(args: argparse.Namespace) -> int:
    rates = step_rates(args.start_rate, args.step_factor, args.max_rate)
    # One step per rate; per-step arrivals are bounded like a run's.
    settings = run_settings(args, rates[0], args.step_seconds, None)
    if math.ceil(rates[-1] * args.step_seconds) > MAX_REQUESTS:
        raise UsageError(f"--max-rate {args.max_rate:g} x --step-seconds {args.step_seconds:g} is more than "
                         f"{MAX_REQUESTS} check-ins per step")
    from agentsim.load import run_load  # noqa: PLC0415

    async def run_step(step_settings: Any) -> dict[str, Any]:
        return await run_load(dataclasses.replace(step_settings, max_requests=math.ceil(
            step_settings.rate * step_settings.duration - 1e-9)), status_stream=None, handle_signals=True)

    def show(step: dict[str, Any]) -> None:
        print(f"agentsim: probe {step['rate_per_s']:g}/s: {'pass' if step['passed'] else 'FAIL'} "
              f"({step['reason']})", file=sys.stderr, flush=True)

    with output_file(args.json, "--json") as result_file:
        result = asyncio.run(probe_capacity(settings, rates, args.slo_p99_ms, run_step, on_step=show))
        result["nodes"] = args.nodes
        result["capacity_per_node_rps"] = (None if result["capacity_rps"] is None
                                           else round(result["capacity_rps"] / args.nodes, 3))
        write_json(result_file, result)
    print(probe_summary(result, args.nodes), flush=True)
    return EXIT_OK


# --- lab-report --------------------------------------------------------------------------------


def command_lab_report(args: argparse.Namespace) -> int:
    plan = find_fleet_plan(_read_json(args.plan, "--plan"), args.plan)
    run = load_report(args.run)
    verify = _read_json(args.verify, "--verify") if args.verify else None
    shares = backend_shares(read_haproxy_csv(args.haproxy_before), read_haproxy_csv(args.haproxy_after),
                            AGENT_BACKEND)
    rows = lab_table(plan, run, verify, shares, args.slo_p99_ms)
    png_name = None
    if args.png:
        render_chart([run], ["lab"], args.png, title="check-ins through the lab: latency over time")
        png_name = Path(args.png).name
    if args.markdown:
        document = markdown_report(plan, rows, human_summary(run),
                                   verify_summary(verify) if verify else "(not verified)", png_name, args.stats_url)
        try:
            Path(args.markdown).write_text(document, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--markdown {args.markdown}: cannot write the file: {exc.strerror or exc}") from None
    print(text_table(rows), flush=True)
    if args.stats_url:
        print(f"\nHAProxy statistics: {args.stats_url} (user and password: the proxy role's proxy_stats_user and "
              "proxy_stats_password; the lab's are in inventories/lab/group_vars/all/)")
    if args.markdown:
        print(f"Report: {args.markdown}")
    return EXIT_OK


def _read_json(path: str, option: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot read the file: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UsageError(f"{option} {path}: not valid JSON: {exc}") from None


# --- shared ------------------------------------------------------------------------------------


@contextlib.contextmanager
def output_file(path: str | None, option: str) -> Iterator[IO[str] | None]:
    """An output file, opened before the work so that a bad path fails before anything is sent.

    If the work fails, the file is removed rather than left empty: no file, no result.
    """
    if path is None:
        yield None
        return
    try:
        handle = Path(path).open("w", encoding="utf-8")  # noqa: SIM115  (closed by the `with` below)
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot write the file: {exc.strerror or exc}") from None
    try:
        with handle:
            yield handle
    except BaseException:
        Path(path).unlink(missing_ok=True)
        raise


def write_json(handle: IO[str] | None, document: dict[str, Any]) -> None:
    if handle is not None:
        json.dump(document, handle, indent=2)
        handle.write("\n")
