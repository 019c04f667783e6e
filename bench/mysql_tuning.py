#!/usr/bin/env python3
"""Benchmark: the check-in write workload on MariaDB under three tunings of one container.

One database container (tuning-bench-db, systemd, fleetscale/node:bookworm) with a fixed
memory limit (2 GiB) holds one database of the reference check-in schema
(roles/database/files/shard_schema.sql): by default 1,000,000 agents and 10 check-ins of
history each, about 2.3 GB on disk, more than the container's memory and eighteen times
Debian's 128 MiB buffer pool. Every check-in touches one random agent's rows, so the pages
a transaction needs are spread over the whole agents table and check-in index (about
1 GB): what the buffer pool does not hold is read from the disk. sysbench runs the web tier's
check-in transaction (bench/checkin.lua: insert the check-in, upsert the agent, hand out
its commands, commit) inside the container, over the server's socket, with strict
durability (innodb_flush_log_at_trx_commit = 1, binary log with sync_binlog = 1) for:

  debian     MariaDB 10.11 as Debian ships it (128M buffer pool, 96M redo log);
  dedicated  MySQL's innodb_dedicated_server formula applied to the container's memory
             (MySQL 8.4 manual: buffer pool 128M under 1 GiB, half of 1-4 GiB, 75 % above;
             redo log capacity = logical processors / 2 GiB, at most 16 GiB);
  tuned      this collection's tuning (fleetscale.split.mysql_tuning, the function the
             database role renders its configuration from), for the same container;

and, reported apart, `tuned` with the relaxed durability profile. Each configuration
starts the server cold (no buffer pool dump or load), reads the indexes the workload uses
once (so each buffer pool starts as full as it can be, whatever its size), runs the
workload to warm up, then is measured; three
rounds in alternating order, medians reported, with the machine's load average beside
each run (a busy machine makes tps and p95 noisy), and what each transaction costs the
disk (buffer pool reads, pages written back, redo bytes), which CPU contention does not
blur. Prints transactions/s and p95 latency, the ratios to Debian's defaults and to the
dedicated formula, and writes them to bench/results/.

--disk-iops N limits the container's reads and writes on Docker's disk to N per second each
(the kernel's block I/O throttle), like a cloud volume with provisioned IOPS (3000 is the
baseline of a general-purpose SSD volume). The throttle applies to direct I/O, which InnoDB
uses for its data files in every configuration here (O_DIRECT, MariaDB's default since
10.6), so the three configurations meet the same disk. The disk class given to the tuning
stays ssd for the same reason.

Traffic stays inside the container (unix socket). The container and its network carry
the label fleetscale.bench=1 and are removed at the end (--keep leaves them).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / ".build" / "collections"))

from ansible_collections.fleetscale.split.plugins.module_utils import plan as fleet_plan
from ansible_collections.fleetscale.split.plugins.module_utils import tuning

OUT = ROOT / "bench" / "results"
IMAGE = "fleetscale/node:bookworm"
CONTAINER = "tuning-bench-db"
NETWORK = "fleetscale-bench"
# Its own small subnet, apart from the lab (172.28/16) and the molecule scenarios (172.29/16, 172.30/16).
SUBNET = "192.168.213.0/24"
LABEL = "fleetscale.bench=1"
SOCKET = "/run/mysqld/mysqld.sock"
CONFIG = "/etc/mysql/mariadb.conf.d/70-bench.cnf"
SCHEMA = "bench"
WORKLOAD = "/root/checkin.lua"

TENANTS = 4
# Rows per INSERT ... SELECT while loading: big enough to be quick, small enough for the loading pool.
LOAD_BATCH_ROWS = 500_000
# The indexes every check-in reads or changes, read once before each configuration's warm-up.
PRELOAD = ("SELECT COUNT(*) FROM agents FORCE INDEX (PRIMARY)",
           "SELECT COUNT(*) FROM agents FORCE INDEX (idx_agents_online_seen)",
           "SELECT COUNT(*) FROM checkins FORCE INDEX (uq_checkins_agent_seq)")
# The role's connection inputs (roles/database/defaults/main.yml).
ROLE_INPUTS = {"workers_per_node": 4, "pool_size": 4, "app_connections": 4, "admin_connections": 20}
# What each transaction costs the disk: pages read into the buffer pool, pages the
# server wrote back (flushing, eviction), bytes of redo.
IO_COUNTERS = {"reads": "Innodb_buffer_pool_reads", "page_writes": "Innodb_buffer_pool_pages_flushed",
               "redo_bytes": "Innodb_os_log_written"}
DEBIAN_POOL = 128 * tuning.MIB
DEBIAN_REDO = 96 * tuning.MIB

# Every configuration: the collection's static settings (binary log, UTC, utf8mb4), strict
# durability unless the tuning says otherwise, and a cold start.
BASE = {
    "bind_address": "127.0.0.1",
    "character_set_server": "utf8mb4",
    "collation_server": "utf8mb4_unicode_ci",
    "server_id": 1,
    "log_bin": "mysql-bin",
    "binlog_format": "ROW",
    "innodb_flush_log_at_trx_commit": 1,
    "sync_binlog": 1,
    "innodb_buffer_pool_dump_at_shutdown": "OFF",
    "innodb_buffer_pool_load_at_startup": "OFF",
}
# Loading the data set: fast, not durable, binary log off (None drops a BASE setting).
LOADING = {"innodb_buffer_pool_size": "1280M", "innodb_log_file_size": "1G", "innodb_flush_log_at_trx_commit": 0,
           "log_bin": None, "binlog_format": None, "sync_binlog": None}


# --- the configurations -----------------------------------------------------------------


def dedicated_server(memory_mb, vcpus):
    """MySQL 8.4's innodb_dedicated_server sizes for `memory_mb` of memory and `vcpus` processors."""
    memory = memory_mb * tuning.MIB
    if memory < tuning.GIB:
        pool = DEBIAN_POOL
    elif memory <= 4 * tuning.GIB:
        pool = memory // 2
    else:
        pool = memory * 3 // 4
    redo = min(16 * tuning.GIB, max(1, vcpus) * tuning.GIB // 2)
    return {"innodb_buffer_pool_size": pool, "innodb_log_file_size": redo}


def fleet_spec(agents):
    """The plan of the data set: its agents on one database (the planned load the tuning sizes for)."""
    return {"agents": agents, "tenant_count": TENANTS, "model": {"agents_per_db": agents}}


def collection_tuning(memory_mb, limit_mb, vcpus, version, data_size_mb, durability, agents):
    """The mysql_tuning filter's result for the container, as the database role computes it."""
    inputs = dict(ROLE_INPUTS, memory_mb=memory_mb, memory_limit_mb=limit_mb, vcpus=vcpus, version=version,
                  data_size_mb=data_size_mb, durability=durability, shard=1)
    return tuning.mysql_tuning(inputs, fleet_plan.build_plan(fleet_spec(agents)))


def configurations(memory_mb, limit_mb, vcpus, version, data_size_mb, agents):
    """name -> (one-line description, server variables on top of BASE)."""
    dedicated = dedicated_server(limit_mb, vcpus)
    strict = collection_tuning(memory_mb, limit_mb, vcpus, version, data_size_mb, "strict", agents)
    relaxed = collection_tuning(memory_mb, limit_mb, vcpus, version, data_size_mb, "relaxed", agents)
    return {
        "debian": ("Debian defaults (pool 128M, redo 96M)", {}),
        "dedicated": ("innodb_dedicated_server formula for %d MiB, %d vCPUs (pool %s, redo %s)"
                      % (limit_mb, vcpus, tuning.human(dedicated["innodb_buffer_pool_size"]),
                         tuning.human(dedicated["innodb_log_file_size"])),
                      {name: tuning.human(value) for name, value in dedicated.items()}),
        "tuned": ("fleetscale.split.mysql_tuning, strict (pool %s, redo %s)"
                  % (strict["config"]["innodb_buffer_pool_size"], strict["config"]["innodb_log_file_size"]),
                  strict["config"]),
        "tuned-relaxed": ("fleetscale.split.mysql_tuning, relaxed (flush once a second)", relaxed["config"]),
    }


def render(variables):
    """A my.cnf [mysqld] section of BASE with `variables` on top (a None value drops the setting)."""
    merged = dict(BASE, **variables)
    return "[mysqld]\n" + "".join("%s = %s\n" % (name, value) for name, value in merged.items() if value is not None)


def expected_pool(variables):
    value = str(variables.get("innodb_buffer_pool_size", DEBIAN_POOL))
    match = re.fullmatch(r"(\d+)([KMG]?)", value)
    return int(match.group(1)) * {"": 1, "K": tuning.KIB, "M": tuning.MIB, "G": tuning.GIB}[match.group(2)]


# --- sysbench -----------------------------------------------------------------------------


def parse_sysbench(output):
    """(transactions per second, p95 latency in ms, errors) from sysbench 1.0's report."""
    tps = re.search(r"transactions:\s+\d+\s+\(([\d.]+) per sec\.\)", output)
    p95 = re.search(r"95th percentile:\s+([\d.]+)", output)
    errors = re.search(r"ignored errors:\s+(\d+)", output)
    if not tps or not p95:
        raise RuntimeError("sysbench printed no transaction rate or p95:\n" + output[-2000:])
    return float(tps.group(1)), float(p95.group(1)), int(errors.group(1)) if errors else 0


def io_per_transaction(before, after):
    """Disk reads, page writes and redo bytes per committed transaction between two SHOW GLOBAL STATUS readings."""
    commits = max(1, after["Com_commit"] - before["Com_commit"])
    return {key: (after[name] - before[name]) / commits for key, name in IO_COUNTERS.items()}


def summarise(runs):
    """Per configuration: medians over the rounds (robust to a round slowed by a busy machine)."""
    summary = {}
    for name in dict.fromkeys(run["config"] for run in runs):
        mine = [run for run in runs if run["config"] == name]
        summary[name] = {key: statistics.median(run[key] for run in mine) for key in ("tps", "p95_ms", *IO_COUNTERS)}
        summary[name]["rounds"] = [(run["tps"], run["p95_ms"]) for run in mine]
    return summary


def ratios(summary, against):
    """tps ratio (higher is better) and p95 ratio (lower is better) of each configuration to `against`."""
    base = summary[against]
    return {name: {"tps": figures["tps"] / base["tps"], "p95": figures["p95_ms"] / base["p95_ms"]}
            for name, figures in summary.items()}


def table(summary, descriptions):
    by_debian = ratios(summary, "debian")
    by_dedicated = ratios(summary, "dedicated")
    lines = ["| configuration | tps | p95 ms | tps vs debian | p95 vs debian | tps vs dedicated | p95 vs dedicated "
             "| disk reads / txn | page writes / txn | redo bytes / txn |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, figures in summary.items():
        lines.append("| %s | %.0f | %.1f | x%.2f | x%.2f | x%.2f | x%.2f | %.2f | %.2f | %.0f |" % (
            name, figures["tps"], figures["p95_ms"], by_debian[name]["tps"], by_debian[name]["p95"],
            by_dedicated[name]["tps"], by_dedicated[name]["p95"], figures["reads"], figures["page_writes"],
            figures["redo_bytes"]))
    lines.append("")
    lines.extend("- %s: %s; rounds (tps, p95 ms): %s" % (
        name, descriptions[name], ", ".join("(%.0f, %.1f)" % r for r in figures["rounds"]))
        for name, figures in summary.items())
    return "\n".join(lines)


# --- the container ------------------------------------------------------------------------


def docker(*args, check=True, capture=True, stdin=None):
    done = subprocess.run(["docker", *args], check=False, capture_output=capture, text=True, input=stdin)
    if check and done.returncode != 0:
        raise RuntimeError("docker %s failed: %s" % (" ".join(args[:3]), (done.stderr or done.stdout)[-2000:]))
    return done


def node(command, check=True, stdin=None):
    return docker("exec", "-i", CONTAINER, "bash", "-c", command, check=check, stdin=stdin)


def sql(statement, database=""):
    return node("mariadb --batch --skip-column-names %s" % database, stdin=statement).stdout.strip()


def remove_own(kind, name):
    """Remove a container or network of this benchmark, never anything without its label."""
    inspect = docker(kind, "inspect", "--format", "{{ index .Labels \"fleetscale.bench\" }}" if kind == "network"
                     else "{{ index .Config.Labels \"fleetscale.bench\" }}", name, check=False)
    if inspect.returncode != 0:
        return
    if inspect.stdout.strip() != "1":
        raise RuntimeError("%s %s exists without the label %s: not ours, not touching it" % (kind, name, LABEL))
    docker(kind, "rm", *(["-f"] if kind == "container" else []), name)


def docker_disk():
    """The whole disk under Docker's data root (I/O limits apply to a disk, not to a partition)."""
    root = docker("info", "--format", "{{ .DockerRootDir }}").stdout.strip()
    source = subprocess.run(["findmnt", "-n", "-o", "SOURCE", "--target", root], capture_output=True, text=True,
                            check=True).stdout.strip().split("[")[0]
    if not source.startswith("/dev/"):
        raise RuntimeError("Docker's data root %s is on %r, not a block device: --disk-iops cannot limit it"
                           % (root, source))
    parent = subprocess.run(["lsblk", "-n", "-o", "PKNAME", source], capture_output=True, text=True,
                            check=True).stdout.strip()
    return "/dev/" + parent if parent else source


def create(memory_mb, disk_iops):
    remove_own("container", CONTAINER)
    remove_own("network", NETWORK)
    docker("network", "create", "--label", LABEL, "--subnet", SUBNET, NETWORK)
    limits = []
    if disk_iops:
        disk = docker_disk()
        limits = ["--device-read-iops", "%s:%d" % (disk, disk_iops), "--device-write-iops", "%s:%d" % (disk, disk_iops)]
    docker("run", "-d", "--name", CONTAINER, "--hostname", CONTAINER, "--label", LABEL, "--network", NETWORK,
           "--cap-add", "SYS_ADMIN", "--cgroupns", "host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
           "--tmpfs", "/run", "--tmpfs", "/run/lock", "--stop-signal", "SIGRTMIN+3",
           "--memory", "%dm" % memory_mb, "--memory-swap", "%dm" % memory_mb, *limits, IMAGE, "/lib/systemd/systemd")
    for _ in range(60):
        state = node("systemctl is-system-running", check=False).stdout.strip()
        if state in ("running", "degraded"):
            return
        time.sleep(1)
    raise RuntimeError("systemd in %s did not boot: %s" % (CONTAINER, state))


def install():
    node("apt-get -q update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get -q -y install "
         "mariadb-server sysbench >/dev/null")
    docker("cp", str(ROOT / "bench" / "checkin.lua"), "%s:%s" % (CONTAINER, WORKLOAD))
    docker("cp", str(ROOT / "roles" / "database" / "files" / "shard_schema.sql"), "%s:/root/shard_schema.sql"
           % CONTAINER)


def configure(variables):
    node("cat > %s" % CONFIG, stdin=render(variables))
    node("systemctl restart mariadb")
    live = int(sql("SELECT @@innodb_buffer_pool_size"))
    if live != expected_pool(variables):
        raise RuntimeError("the server runs a %d byte buffer pool, not %d: the configuration did not apply"
                           % (live, expected_pool(variables)))


def load(agents, tenants, history):
    """The shard schema, its agents and their check-in history (the Sequence engine generates them)."""
    configure(LOADING)
    sql("DROP DATABASE IF EXISTS %s; CREATE DATABASE %s" % (SCHEMA, SCHEMA))
    node("mariadb %s < /root/shard_schema.sql" % SCHEMA)
    name = "CONCAT('tenant-', LPAD(a.seq %% %d + 1, 3, '0')), CONCAT('agent-', LPAD(a.seq, 7, '0'))" % tenants
    sql("INSERT INTO agents (tenant, agent_id, last_seq, status, online, last_seen, first_seen) "
        "SELECT %s, %d, 'ok', 1, NOW(3), NOW(3) - INTERVAL 30 DAY FROM seq_1_to_%d a" % (name, history, agents),
        SCHEMA)
    batch = max(1, LOAD_BATCH_ROWS // history)
    for first in range(1, agents + 1, batch):
        last = min(agents, first + batch - 1)
        sql("INSERT INTO checkins (tenant, agent_id, seq, status, received_at, served_by) "
            "SELECT %s, s.seq, 'ok', NOW(3) - INTERVAL (%d - s.seq) * 200 SECOND - INTERVAL a.seq MICROSECOND, "
            "'web-agent-01' FROM seq_%d_to_%d a JOIN seq_1_to_%d s ORDER BY a.seq, s.seq"
            % (name, history, first, last, history), SCHEMA)
    sql("ANALYZE TABLE agents, checkins", SCHEMA)
    return int(sql("SELECT SUM(data_length + index_length) DIV 1048576 FROM information_schema.TABLES "
                   "WHERE table_schema = '%s'" % SCHEMA))


# What a buffer pool miss and a commit's flush cost on this disk, measured where the data lives:
# random 16 KiB reads that bypass the page cache, and 4 KiB appends each made durable.
DISK_PROBE = r"""
import mmap, os, random, time
path = "/var/lib/mysql/disk-probe.bin"
fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
block = b"x" * 4096
started = time.perf_counter()
for _ in range(300):
    os.write(fd, block)
    os.fdatasync(fd)
flush_ms = (time.perf_counter() - started) / 300 * 1000
chunk = b"y" * (1 << 20)
for _ in range(512):
    os.write(fd, chunk)
os.fsync(fd)
os.close(fd)
fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
buffer = mmap.mmap(-1, 16384)
pages = (512 << 20) // 16384
started = time.perf_counter()
for _ in range(2000):
    os.preadv(fd, [buffer], random.randrange(pages) * 16384)
read_ms = (time.perf_counter() - started) / 2000 * 1000
os.close(fd)
os.unlink(path)
print("%.3f %.3f" % (read_ms, flush_ms))
"""


def disk_latency():
    """(ms per random 16 KiB O_DIRECT read, ms per 4 KiB write + fdatasync) on the data directory's disk."""
    read_ms, flush_ms = node("python3 -", stdin=DISK_PROBE).stdout.split()
    return float(read_ms), float(flush_ms)


def server_status():
    rows = sql("SHOW GLOBAL STATUS WHERE Variable_name IN (%s)"
               % ", ".join("'%s'" % name for name in ("Com_commit", *IO_COUNTERS.values())))
    return {name: int(value) for name, value in (line.split("\t") for line in rows.splitlines())}


def preload():
    """Read the workload's indexes once: a pool that can hold them starts warm, a small one does not."""
    started = time.monotonic()
    for statement in PRELOAD:
        sql(statement, SCHEMA)
    return time.monotonic() - started


def sysbench(agents, tenants, threads, seconds, run_id):
    done = node("sysbench %s --db-driver=mysql --mysql-socket=%s --mysql-user=root --mysql-db=%s --threads=%d "
                "--time=%d --events=0 --percentile=95 --report-interval=0 --agents=%d --tenants=%d --run-id=%d run"
                % (WORKLOAD, SOCKET, SCHEMA, threads, seconds, agents, tenants, run_id), check=False)
    if done.returncode != 0:
        raise RuntimeError("sysbench failed:\n" + (done.stderr or done.stdout)[-2000:])
    return parse_sysbench(done.stdout)


# --- main ---------------------------------------------------------------------------------


def measure(configs, args, agents, tenants):
    """Every configuration, round after round (alternating order): one dict of figures per run."""
    runs = []
    order = list(configs)
    for round_number in range(args.rounds):
        for name in order if round_number % 2 == 0 else order[::-1]:
            configure(configs[name][1])
            preload_s = preload()
            run_id = len(runs) + 1
            sysbench(agents, tenants, args.threads, args.warmup, 100 + run_id)
            before = server_status()
            tps, p95, errors = sysbench(agents, tenants, args.threads, args.seconds, run_id)
            io = io_per_transaction(before, server_status())
            # The machine's load next to each figure: other work on it shows up as noise in
            # tps and p95, not in the I/O per transaction.
            load_1m = os.getloadavg()[0]
            runs.append({"config": name, "round": round_number + 1, "tps": tps, "p95_ms": p95, "errors": errors,
                         "loadavg_1m": load_1m, "preload_s": preload_s, **io})
            print("  round %d %-14s %8.0f tps  p95 %7.1f ms  %5.2f reads %5.2f page writes/txn  (load %.1f)"
                  % (round_number + 1, name, tps, p95, io["reads"], io["page_writes"], load_1m), flush=True)
    return runs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memory-mb", type=int, default=2048, help="memory limit of the container (MiB)")
    parser.add_argument("--disk-iops", type=int, default=0,
                        help="limit the container's reads and writes to this many per second each on Docker's disk, "
                             "like a provisioned-IOPS volume (default: no limit)")
    parser.add_argument("--agents", type=int, default=1_000_000, help="agents in the data set")
    parser.add_argument("--history", type=int, default=10, help="check-ins of history per agent")
    parser.add_argument("--threads", type=int, default=16, help="sysbench threads (connections)")
    parser.add_argument("--warmup", type=int, default=30, help="seconds of load before each measurement")
    parser.add_argument("--seconds", type=int, default=30, help="seconds measured per configuration and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over every configuration (alternating order)")
    parser.add_argument("--keep", action="store_true", help="leave the container and its network running")
    args = parser.parse_args()

    started = time.monotonic()
    agents, tenants = args.agents, TENANTS
    print("bench/mysql_tuning.py: %s with --memory %dm%s, %d agents x %d check-ins of history"
          % (CONTAINER, args.memory_mb, ", %d read and %d write IOPS" % (args.disk_iops, args.disk_iops)
             if args.disk_iops else "", agents, args.history), flush=True)
    try:
        create(args.memory_mb, args.disk_iops)
        install()
        data_mb = load(agents, tenants, args.history)
        memory_mb = int(node("awk '/^MemTotal:/ {print $2}' /proc/meminfo").stdout) // 1024
        vcpus = int(node("nproc --all").stdout)
        version = sql("SELECT VERSION()").split("-")[0]
        configs = configurations(memory_mb, args.memory_mb, vcpus, version, data_mb, agents)
        print("data set %d MiB (Debian's buffer pool: 128 MiB), loaded in %.0f s; %d vCPUs, MariaDB %s"
              % (data_mb, time.monotonic() - started, vcpus, version), flush=True)
        read_ms, flush_ms = disk_latency()
        print("the data directory's disk: a random 16 KiB read (O_DIRECT) %.3f ms, a 4 KiB write + fdatasync %.3f ms"
              % (read_ms, flush_ms), flush=True)
        runs = measure(configs, args, agents, tenants)
    finally:
        if not args.keep:
            remove_own("container", CONTAINER)
            remove_own("network", NETWORK)

    summary = summarise(runs)
    strict = {name: figures for name, figures in summary.items() if name != "tuned-relaxed"}
    descriptions = {name: description for name, (description, _variables) in configs.items()}
    text = ("Strict durability (innodb_flush_log_at_trx_commit = 1, sync_binlog = 1), %d threads, %d s per run, "
            "%d round(s) (medians), container limit %d MiB%s, %d agents x %d check-ins of history = %d MiB of data; "
            "disk: random 16 KiB read %.3f ms, 4 KiB write + fdatasync %.3f ms:"
            "\n\n%s\n\nRelaxed profile, apart:\n\n%s\n"
            % (args.threads, args.seconds, args.rounds, args.memory_mb,
               " and %d IOPS each way" % args.disk_iops if args.disk_iops else "", agents, args.history, data_mb,
               read_ms, flush_ms, table(strict, descriptions), table(summary, descriptions)))
    print("\n" + text)
    print("relaxed vs strict (tuned): tps x%.2f, p95 x%.2f; whole run %.0f s"
          % (summary["tuned-relaxed"]["tps"] / summary["tuned"]["tps"],
             summary["tuned-relaxed"]["p95_ms"] / summary["tuned"]["p95_ms"], time.monotonic() - started))
    OUT.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    (OUT / ("mysql_tuning-%s.md" % stamp)).write_text(text)
    (OUT / ("mysql_tuning-%s.json" % stamp)).write_text(json.dumps({
        "memory_mb": args.memory_mb, "disk_iops": args.disk_iops, "agents": agents, "history": args.history,
        "data_mb": data_mb,
        "disk_read_16k_ms": read_ms, "disk_write_fdatasync_4k_ms": flush_ms,
        "threads": args.threads, "seconds": args.seconds,
        "configurations": {name: {"description": d, "variables": v} for name, (d, v) in configs.items()},
        "runs": runs, "summary": summary}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
