# Copyright: fleetscale.split contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""MariaDB / MySQL server variables sized for one shard host of a 3-way split.

Sizing order:
1. usable memory: min(memory_mb - reserved_mb, memory_limit_mb), refused under 512 MiB;
2. connections: web_nodes x workers_per_node x pool_size + app_nodes x app_connections
   (the plan's need) plus an admin margin, within the servers' 10 (MariaDB) to 100000;
3. buffers: fixed global buffers, per-thread buffers, and a buffer pool of 75 % of the
   usable memory left after a non-buffer allowance (grown to the data size when it fits);
4. the guard: the worst case (MySQLTuner's formula, see worst_case_bytes) must stay at or
   under 90 % of usable memory; if not, per-thread buffers are lowered, then
   max_connections (never below the plan's need), then the buffer pool, each with a warning;
   when even a 128 MiB pool does not fit, it fails naming the input that decided usable memory;
5. the redo log (about an hour of check-ins), I/O, caches and the durability profile.

A variable a flavour or version lacks, ignores or refuses is not emitted for it.
Every refusal is a PlanError naming the input and the value.
"""

from __future__ import annotations

import math
import re

from ansible_collections.fleetscale.split.plugins.module_utils.errors import PlanError
from ansible_collections.fleetscale.split.plugins.module_utils.spec import check_keys, check_number

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB

# Below this the server, its caches and a useful buffer pool do not fit together.
MIN_USABLE_MB = 512
# The guard: worst-case memory at or under 9/10 of usable memory (integer maths, no float drift).
GUARD_NUMERATOR = 9
GUARD_DENOMINATOR = 10
# Memory mysqld uses outside the counted buffers (dictionary, table handles, connection
# structures, allocator slack); MySQL adds performance_schema, on by default there.
NON_BUFFER_MB = {"mariadb": 256, "mysql": 384}
# Share of the rest the buffer pool gets before the guard looks at it.
POOL_SHARE = 0.75
POOL_FLOOR_MB = 128
# MySQL: stay near or under ~1000 chunks per pool (its manual's advice for resizing).
MAX_POOL_CHUNKS = 1024

# Redo written by one check-in: the agent row update and the check-in row insert, each in
# the clustered and one or two secondary indexes, plus their undo records: about 2 KiB.
REDO_BYTES_PER_CHECKIN = 2 * KIB
REDO_WINDOW_S = 3600
REDO_MIN_MB = 256
REDO_MAX_MB = 8192
REDO_GRAIN_MB = 64

MAX_MEMORY_MB = 64 * 1024 * 1024  # 64 TiB: beyond it the figure is a typo
MAX_LIMIT_MB = 2 ** 53  # cgroup v1 reports "no limit" as ~8 EiB; that must pass as no limit
MAX_COUNT = 100_000
# max_connections: both servers accept at most 100000; MariaDB raises anything under 10 to 10.
MAX_CONNECTIONS = 100_000
MIN_CONNECTIONS = {"mariadb": 10, "mysql": 1}
# thread_cache_size: the largest value both servers accept.
MAX_THREAD_CACHE = 16384
MAX_RATE = 10_000_000

FLAVORS = ("mariadb", "mysql")
DISK_CLASSES = ("ssd", "hdd", "network")
DURABILITY = ("strict", "relaxed")
DEFAULT_VERSION = {"mariadb": "10.11", "mysql": "8.4"}
SUPPORTED = {"mariadb": ((10, 6), (10, 11), "MariaDB 10.6 to 10.11"),
             "mysql": ((8, 0), (8, 4), "MySQL 8.0 to 8.4")}
# Matched whole (fullmatch), ASCII digits only: \d would take other scripts' digits.
VERSION_RE = re.compile(r"([0-9]+)\.([0-9]+)(?:\.([0-9]+))?(?:[-+~].*)?")

# (kind, default, low, high); kind "plan" = a whole number the plan can fill.
INPUT_FIELDS = {
    "memory_mb": (int, None, 1, MAX_MEMORY_MB),
    "memory_limit_mb": (int, None, 1, MAX_LIMIT_MB),
    "reserved_mb": (int, 0, 0, MAX_MEMORY_MB),
    "vcpus": (int, 2, 1, 4096),
    "disk_class": (DISK_CLASSES, "ssd", None, None),
    "flavor": (FLAVORS, "mariadb", None, None),
    "version": (str, None, None, None),
    "data_size_mb": (int, None, 0, MAX_LIMIT_MB),
    "checkin_rate_per_second": (float, None, 0, MAX_RATE),
    "web_nodes": (int, None, 1, MAX_COUNT),
    "workers_per_node": (int, 4, 1, MAX_COUNT),
    "pool_size": (int, 4, 1, MAX_COUNT),
    "app_nodes": (int, None, 0, MAX_COUNT),
    "app_connections": (int, 4, 0, MAX_COUNT),
    "admin_connections": (int, None, 0, MAX_COUNT),
    "binlog": (bool, True, None, None),
    "durability": (DURABILITY, "strict", None, None),
    "shard": (int, None, 1, MAX_COUNT),
}
# Required unless plan= fills them.
FROM_PLAN = ("checkin_rate_per_second", "web_nodes", "app_nodes")

# Per-thread buffers the guard may lower: (tuned value, floor). The check-in workload is
# point lookups and small sorts; bigger buffers would not speed it up, only cost memory.
LOWERABLE = {
    "sort_buffer_size": (1 * MIB, 256 * KIB),
    "join_buffer_size": (256 * KIB, 128 * KIB),
    "read_buffer_size": (128 * KIB, 64 * KIB),
    "read_rnd_buffer_size": (256 * KIB, 128 * KIB),
}
# Per-thread figures kept at the servers' defaults (the same in both flavours).
BINLOG_CACHE_SIZE = 32 * KIB
NET_BUFFER_LENGTH = 16 * KIB
# Each flavour's default stack: a smaller one risks "thread stack overrun" on deep queries.
# MySQL raised its default from 280K to 1M in 8.0.27.
THREAD_STACK = {"mariadb": 299008, "mysql": 1 * MIB}
THREAD_STACK_MYSQL_BEFORE_8_0_27 = 286720
KEY_BUFFER_SIZE = 8 * MIB
LOG_BUFFER_SIZE = 16 * MIB
ARIA_PAGECACHE_SIZE = 32 * MIB

IO_CAPACITY = {
    "ssd": (1000, 2000, "an SSD sustains tens of thousands of IOPS; 1000 background flushes a second keep up "
                        "with the check-in writes without wearing it, the max doubles that to catch up"),
    "hdd": (200, 400, "one spindle does about 150-200 random IOPS; flushing faster only queues"),
    "network": (500, 1000, "a network volume is throttled to its provisioned IOPS (e.g. 3000 on gp3), "
                           "shared with reads and log writes; background flushing takes a sixth of that"),
}


# --- inputs -----------------------------------------------------------------------------


def _check_choice(name, value, choices):
    if not isinstance(value, str) or value not in choices:
        raise PlanError(name, value, "must be one of: %s" % ", ".join(choices))
    return value


def _check_field(name, value):
    kind, _default, low, high = INPUT_FIELDS[name]
    if isinstance(kind, tuple):
        return _check_choice(name, value, kind)
    if kind is bool:
        if not isinstance(value, bool):
            raise PlanError(name, value, "must be true or false")
        return value
    if kind is str:
        return value  # the version has its own check
    return check_number(value, name, kind, low, high)


def _plan_value(plan, path):
    """A value of the split plan, refusing a plan that lacks it."""
    node = plan
    for depth, key in enumerate(path):
        if not isinstance(node, dict) or key not in node:
            raise PlanError("plan." + ".".join(path[:depth + 1]), None,
                            "is missing: pass the plan of fleetscale.split.split_plan (fleet_plan)")
        node = node[key]
    return node


def _shard_share(plan, shard):
    """The share of the fleet's check-ins that reach one shard."""
    shards = _plan_value(plan, ("shards",))
    agents = check_number(_plan_value(plan, ("agents",)), "plan.agents", int, 0)
    if not isinstance(shards, list):
        raise PlanError("plan.shards", shards, "must be a list of shards")
    for position, entry in enumerate(shards):
        if isinstance(entry, dict) and entry.get("shard") == shard:
            shard_agents = check_number(entry.get("agents"), "plan.shards[%d].agents" % position, int, 0)
            return shard_agents / agents if agents else 0.0
    raise PlanError("shard", shard, "is not a shard of the plan (it has %d)" % len(shards))


def _fill_from_plan(values, plan):
    """Take the rate and node counts the inputs leave out from the split plan."""
    if plan is None:
        if values.get("shard") is not None:
            raise PlanError("shard", values["shard"], "only with plan=: it picks that shard's share of the plan's rate")
        return values
    if not isinstance(plan, dict):
        raise PlanError("plan", plan, "must be the split plan mapping (fleet_plan)")
    filled = dict(values)
    if filled.get("checkin_rate_per_second") is None:
        rate = check_number(_plan_value(plan, ("rate", "per_second")), "plan.rate.per_second", float, 0, MAX_RATE)
        if filled.get("shard") is not None:
            rate *= _shard_share(plan, filled["shard"])
        filled["checkin_rate_per_second"] = rate
    if filled.get("web_nodes") is None:
        filled["web_nodes"] = sum(
            check_number(_plan_value(plan, ("tiers", tier, "nodes")), "plan.tiers.%s.nodes" % tier, int, 0, MAX_COUNT)
            for tier in ("web_agent", "web_user"))
    if filled.get("app_nodes") is None:
        filled["app_nodes"] = check_number(_plan_value(plan, ("tiers", "app", "nodes")), "plan.tiers.app.nodes", int,
                                           0, MAX_COUNT)
    return filled


def check_version(flavor, value):
    """Return (text, (major, minor), patch or None) of a supported server version."""
    if value is None:
        value = DEFAULT_VERSION[flavor]
    if not isinstance(value, str):
        raise PlanError("version", value, "must be a string such as '10.11' or '8.0.36' "
                                          "(quote it: YAML reads 10.10 as the number 10.1)")
    match = VERSION_RE.fullmatch(value.strip())
    if not match:
        raise PlanError("version", value, "must look like MAJOR.MINOR[.PATCH], e.g. '10.11' or '8.4.3'")
    series = (int(match.group(1)), int(match.group(2)))
    patch = int(match.group(3)) if match.group(3) is not None else None
    low, high, label = SUPPORTED[flavor]
    if not low <= series <= high:
        raise PlanError("version", value, "%s supports %s" % (flavor, label))
    return value.strip(), series, patch


def check_inputs(raw, plan=None):
    """Validated inputs with defaults; the plan fills the rate and node counts left out."""
    if not isinstance(raw, dict):
        raise PlanError("inputs", raw, "must be a mapping of tuning inputs")
    check_keys(raw, INPUT_FIELDS, "")
    values = {name: raw.get(name) for name in INPUT_FIELDS}
    if values["shard"] is not None:
        values["shard"] = _check_field("shard", values["shard"])
    values = _fill_from_plan(values, plan)
    if values["memory_mb"] is None:
        raise PlanError("memory_mb", None, "is required: the host's RAM in MiB (ansible_memtotal_mb)")
    checked = {}
    for name, (_kind, default, _low, _high) in INPUT_FIELDS.items():
        value = values[name]
        if value is None:
            if name in FROM_PLAN:
                raise PlanError(name, None, "is required unless plan= gives it")
            checked[name] = default
        else:
            checked[name] = _check_field(name, value)
    checked["version"], checked["series"], checked["patch"] = check_version(checked["flavor"], values["version"])
    if checked["reserved_mb"] >= checked["memory_mb"]:
        raise PlanError("reserved_mb", checked["reserved_mb"],
                        "must leave memory for the database: memory_mb is %d" % checked["memory_mb"])
    return checked


# --- server features --------------------------------------------------------------------


class Server:
    """What one flavour and version has, lacks and can change online."""

    def __init__(self, flavor, series, patch):
        self.flavor = flavor
        self.mariadb = flavor == "mariadb"
        self.mysql = flavor == "mysql"
        self.series = series
        self.patch = patch
        # MySQL 8.0.30 replaced innodb_log_file_size x innodb_log_files_in_group with one capacity.
        self.redo_capacity = self.mysql and (series > (8, 0) or patch is None or patch >= 30)
        self.assumed_patch = self.mysql and series == (8, 0) and patch is None
        # MariaDB 10.9 resizes the redo log online (MDEV-27812); MySQL before 8.0.30 cannot.
        self.log_file_size_dynamic = self.mariadb and series >= (10, 9)
        # MariaDB 10.5 made the buffer pool one instance and 10.6 removed the variable.
        self.pool_instances = self.mysql
        # The query cache was removed from MySQL 8.0; MariaDB still has it (off is what we want).
        self.query_cache = self.mariadb
        self.aria = self.mariadb
        self.dedicated_server = self.mysql
        # TempTable, MySQL's engine for internal temporary tables, has its own global RAM cap.
        self.temptable = self.mysql
        self.log_buffer_dynamic = self.mysql
        if self.mysql and series == (8, 0) and patch is not None and patch < 27:
            self.thread_stack = THREAD_STACK_MYSQL_BEFORE_8_0_27
            self.thread_stack_label = "MySQL 8.0 before 8.0.27"
        else:
            self.thread_stack = THREAD_STACK[flavor]
            self.thread_stack_label = "MariaDB" if self.mariadb else "MySQL"


# --- memory -----------------------------------------------------------------------------


def usable_memory(inputs):
    """(usable MiB, the input that decided it, a one-line account)."""
    host = inputs["memory_mb"]
    reserved = inputs["reserved_mb"]
    limit = inputs["memory_limit_mb"]
    after_reserve = host - reserved
    if limit is not None and limit < after_reserve:
        return limit, "memory_limit_mb", "the %d MiB container limit (host %d MiB)" % (limit, host)
    if reserved:
        return after_reserve, "reserved_mb", "host %d MiB less %d MiB reserved for other services" % (host, reserved)
    return host, "memory_mb", "the host's %d MiB" % host


def worst_case_bytes(sizes, flavor):
    """Worst-case memory of the server, MySQLTuner's formula with the binlog cache and net buffer.

    global = innodb_buffer_pool_size + key_buffer_size + innodb_log_buffer_size
             + min(tmp_table_size, max_heap_table_size)
             + query_cache_size + aria_pagecache_buffer_size     (MariaDB)
             + temptable_max_ram                                 (MySQL)
    per thread = read_buffer_size + read_rnd_buffer_size + sort_buffer_size + join_buffer_size
                 + thread_stack + binlog_cache_size + net_buffer_length
    worst = global + per thread x max_connections
    """
    return global_bytes(sizes, flavor) + per_thread_bytes(sizes) * sizes["max_connections"]


def global_bytes(sizes, flavor):
    total = (sizes["innodb_buffer_pool_size"] + sizes["key_buffer_size"] + sizes["innodb_log_buffer_size"]
             + min(sizes["tmp_table_size"], sizes["max_heap_table_size"]))
    if flavor == "mariadb":
        total += sizes["query_cache_size"] + sizes["aria_pagecache_buffer_size"]
    else:
        total += sizes["temptable_max_ram"]
    return total


def per_thread_bytes(sizes):
    return (sizes["read_buffer_size"] + sizes["read_rnd_buffer_size"] + sizes["sort_buffer_size"]
            + sizes["join_buffer_size"] + sizes["thread_stack"] + sizes["binlog_cache_size"]
            + sizes["net_buffer_length"])


def pool_layout(budget_bytes, server, vcpus, round_up=False):
    """(pool bytes, chunk bytes, instances): the pool a multiple of chunk x instances.

    Rounded down (never over the budget) unless round_up, used to cover a data size.
    """
    budget_mb = max(1, budget_bytes // MIB)
    instances = max(1, min(8, vcpus, budget_mb // 1024)) if server.pool_instances else 1
    # A small pool gets small chunks so rounding does not waste a large share of it.
    chunk_mb = 128 if budget_mb >= 1024 else 32
    while budget_mb // chunk_mb > MAX_POOL_CHUNKS:
        chunk_mb *= 2
    grain = chunk_mb * instances * MIB
    steps = -(-budget_bytes // grain) if round_up else budget_bytes // grain
    return max(1, steps) * grain, chunk_mb * MIB, instances


def tmp_table_bytes(usable_mb):
    if usable_mb < 4096:
        return 16 * MIB
    if usable_mb < 16384:
        return 32 * MIB
    return 64 * MIB


# --- connections ------------------------------------------------------------------------


def connection_need(inputs):
    """(plan need, admin margin, web share, app share); refuses a need no server accepts."""
    web = inputs["web_nodes"] * inputs["workers_per_node"] * inputs["pool_size"]
    app = inputs["app_nodes"] * inputs["app_connections"]
    need = web + app
    if need > MAX_CONNECTIONS:
        raise PlanError("max_connections", need,
                        "the plan needs %d connections (web %d nodes x %d workers x %d pooled = %d, app %d), above "
                        "the %d MariaDB and MySQL accept: lower workers_per_node or pool_size, or pool connections "
                        "in a proxy" % (need, inputs["web_nodes"], inputs["workers_per_node"], inputs["pool_size"],
                                        web, app, MAX_CONNECTIONS))
    admin = inputs["admin_connections"]
    if admin is None:
        admin = max(10, math.ceil(need / 10))
    return need, admin, web, app


# --- the guard --------------------------------------------------------------------------


class Sizing:
    """Sizes in bytes (and max_connections) while the guard adjusts them; notes what it changed."""

    def __init__(self, inputs, server, usable_mb, memory):
        self.inputs = inputs
        self.server = server
        self.usable_mb = usable_mb
        # (the input that decided usable memory, its value, a one-line account): named when memory is short.
        self.memory = memory
        self.limit = usable_mb * MIB * GUARD_NUMERATOR // GUARD_DENOMINATOR
        self.need, self.admin, self.web, self.app = connection_need(inputs)
        self.min_connections = max(self.need, MIN_CONNECTIONS[server.flavor])
        tmp = tmp_table_bytes(usable_mb)
        self.warnings = []
        wanted = self.need + self.admin
        if wanted > MAX_CONNECTIONS:
            self.warnings.append("max_connections capped at the servers' limit of %d: the admin margin is %d "
                                 "instead of %d" % (MAX_CONNECTIONS, MAX_CONNECTIONS - self.need, self.admin))
        self.sizes = {
            "max_connections": max(self.min_connections, min(MAX_CONNECTIONS, wanted)),
            "key_buffer_size": KEY_BUFFER_SIZE,
            "innodb_log_buffer_size": LOG_BUFFER_SIZE,
            "tmp_table_size": tmp,
            "max_heap_table_size": tmp,
            "query_cache_size": 0,
            "aria_pagecache_buffer_size": ARIA_PAGECACHE_SIZE if server.aria else 0,
            "temptable_max_ram": 2 * tmp if server.temptable else 0,
            "thread_stack": server.thread_stack,
            "binlog_cache_size": BINLOG_CACHE_SIZE,
            "net_buffer_length": NET_BUFFER_LENGTH,
        }
        self.sizes.update({name: tuned for name, (tuned, _floor) in LOWERABLE.items()})
        self.sizes["innodb_buffer_pool_size"] = 0
        self.chunk = 0
        self.instances = 1
        self.lowered = {}
        self.pool_basis = ""

    def worst(self):
        return worst_case_bytes(self.sizes, self.server.flavor)

    def others(self):
        """Everything counted except the buffer pool."""
        return self.worst() - self.sizes["innodb_buffer_pool_size"]

    def set_pool(self, budget_bytes, round_up=False):
        pool, self.chunk, self.instances = pool_layout(budget_bytes, self.server, self.inputs["vcpus"], round_up)
        self.sizes["innodb_buffer_pool_size"] = pool

    def size_pool(self):
        """75 % of what is left after the non-buffer allowance; grown to the data size when it fits."""
        left_mb = self.usable_mb - NON_BUFFER_MB[self.server.flavor]
        share = max(POOL_FLOOR_MB, int(POOL_SHARE * left_mb)) * MIB
        self.set_pool(share)
        self.pool_basis = "75 %% of usable memory less %d MiB for the server itself" % NON_BUFFER_MB[
            self.server.flavor]
        data_mb = self.inputs["data_size_mb"]
        if data_mb is None or data_mb * MIB <= self.sizes["innodb_buffer_pool_size"]:
            return
        room = min(self.limit, left_mb * MIB) - self.others()
        wanted = pool_layout(data_mb * MIB, self.server, self.inputs["vcpus"], round_up=True)[0]
        if wanted <= room:
            self.set_pool(data_mb * MIB, round_up=True)
            self.pool_basis = "the %d MiB of data, which fits" % data_mb
        elif room > self.sizes["innodb_buffer_pool_size"]:
            self.set_pool(room)
            self.pool_basis = "as much as memory allows toward the %d MiB of data" % data_mb

    def lower_per_thread(self):
        while self.worst() > self.limit:
            changed = False
            for name, (_tuned, floor) in LOWERABLE.items():
                if self.sizes[name] > floor:
                    self.lowered.setdefault(name, self.sizes[name])
                    self.sizes[name] = max(floor, self.sizes[name] // 2)
                    changed = True
            if not changed:
                break  # all at their floors: max_connections and the pool come next
        if self.lowered:
            self.warnings.append("memory guard: per-thread buffers lowered (%s) to keep the worst case under 90 %% "
                                 "of %d MiB" % (", ".join(sorted(self.lowered)), self.usable_mb))

    def lower_connections(self):
        if self.worst() <= self.limit:
            return
        before = self.sizes["max_connections"]
        spare = self.limit - global_bytes(self.sizes, self.server.flavor)
        fit = max(0, spare // per_thread_bytes(self.sizes))
        self.sizes["max_connections"] = max(self.min_connections, min(before, fit))
        if self.sizes["max_connections"] < before:
            self.lowered["max_connections"] = before
            self.warnings.append("memory guard: max_connections lowered from %d to %d (the plan needs %d), "
                                 "leaving %d for administrators"
                                 % (before, self.sizes["max_connections"], self.need,
                                    self.sizes["max_connections"] - self.need))

    def lower_pool(self):
        if self.worst() <= self.limit:
            return
        before = self.sizes["innodb_buffer_pool_size"]
        budget = self.limit - self.others()
        if budget < POOL_FLOOR_MB * MIB:
            per_thread = per_thread_bytes(self.sizes)
            most = max(0, (self.limit - global_bytes(self.sizes, self.server.flavor)
                           + self.sizes["innodb_buffer_pool_size"] - POOL_FLOOR_MB * MIB) // per_thread)
            field, value, basis = self.memory
            raise PlanError(field, value,
                            "leaves %d MiB usable (%s), too little for the plan's %d connections (web %d + app %d): "
                            "within 90 %% it holds at most %d beside a %d MiB buffer pool with the smallest per-thread "
                            "buffers (%d KiB each); add memory or lower workers_per_node or pool_size"
                            % (self.usable_mb, basis, self.min_connections, self.web, self.app, most, POOL_FLOOR_MB,
                               per_thread // KIB))
        self.set_pool(budget)
        self.lowered["innodb_buffer_pool_size"] = before
        self.warnings.append(
            "memory guard: innodb_buffer_pool_size lowered from %d MiB to %d MiB to make room for %d connections"
            % (before // MIB, self.sizes["innodb_buffer_pool_size"] // MIB, self.sizes["max_connections"]))

    def run(self):
        self.size_pool()
        self.lower_per_thread()
        self.lower_connections()
        self.lower_pool()
        data_mb = self.inputs["data_size_mb"]
        if data_mb is not None and self.sizes["innodb_buffer_pool_size"] < data_mb * MIB:
            self.warnings.append("the buffer pool (%d MiB) is smaller than the data (%d MiB): reads that miss it "
                                 "go to disk" % (self.sizes["innodb_buffer_pool_size"] // MIB, data_mb))
        return self


# --- variables --------------------------------------------------------------------------


def _var(value, reason, dynamic, unit=None):
    return {"value": value, "reason": reason, "dynamic": dynamic, "unit": unit}


def human(size):
    """Bytes as my.cnf writes them: 2G, 1280M, 292K or plain bytes."""
    for suffix, scale in (("G", GIB), ("M", MIB), ("K", KIB)):
        if size and size % scale == 0:
            return "%d%s" % (size // scale, suffix)
    return str(size)


def _lowered_note(sizing, name):
    if name in sizing.lowered:
        return "; lowered by the memory guard from %s" % human(sizing.lowered[name])
    return ""


def redo_bytes(rate, pool):
    """(bytes, one-line reason): about an hour of redo within the bounds."""
    hour_mb = rate * REDO_WINDOW_S * REDO_BYTES_PER_CHECKIN / MIB
    target = math.ceil(hour_mb / REDO_GRAIN_MB) * REDO_GRAIN_MB
    # Redo beyond the pool buys nothing: the checkpoint cannot lag behind more changes than the pool holds dirty.
    # Up to the pool it does: a smaller log forces flushing bursts on a slow disk (bench/mysql_tuning.py).
    whole_pool = pool // MIB // REDO_GRAIN_MB * REDO_GRAIN_MB
    # The floor wins over a small pool: the redo log costs disk, not memory.
    cap = min(REDO_MAX_MB, max(REDO_MIN_MB, whole_pool))
    value = min(max(target, REDO_MIN_MB), cap)
    if target < REDO_MIN_MB:
        bound = "raised to the %d MiB floor" % REDO_MIN_MB
    elif target <= cap:
        bound = "rounded up to %d MiB" % REDO_GRAIN_MB
    elif cap == REDO_MAX_MB:
        bound = "capped at %d MiB" % REDO_MAX_MB
    elif cap == whole_pool:
        bound = "capped at the buffer pool's size"
    else:
        bound = "capped at the %d MiB floor (the pool is smaller)" % REDO_MIN_MB
    reason = ("about an hour of redo: %.6g check-ins/s x %d KiB x %d s = %.0f MiB, %s (bounds: %d MiB to "
              "min(%d MiB, pool))" % (rate, REDO_BYTES_PER_CHECKIN // KIB, REDO_WINDOW_S, hour_mb, bound,
                                      REDO_MIN_MB, REDO_MAX_MB))
    return value * MIB, reason


def _pool_variables(sizing, server, basis):
    s = sizing.sizes
    out = {"innodb_buffer_pool_size": _var(
        s["innodb_buffer_pool_size"],
        "%s (usable: %s), a multiple of chunk %s x %d instance(s)%s"
        % (sizing.pool_basis, basis, human(sizing.chunk), sizing.instances,
           _lowered_note(sizing, "innodb_buffer_pool_size")),
        True, "bytes")}
    out["innodb_buffer_pool_chunk_size"] = _var(
        sizing.chunk, "set so the pool size is an exact multiple and online resizing steps are known "
                      "(128M, 32M under a 1 GiB pool, doubled past %d chunks)" % MAX_POOL_CHUNKS, False, "bytes")
    if server.pool_instances:
        out["innodb_buffer_pool_instances"] = _var(
            sizing.instances, "one per GiB of pool, at most 8 and at most one per vCPU: fewer mutex "
                              "collisions without tiny instances", False, "instances")
    return out


def _redo_variables(inputs, server, pool):
    capacity, reason = redo_bytes(inputs["checkin_rate_per_second"], pool)
    if server.redo_capacity:
        return {"innodb_redo_log_capacity": _var(capacity, reason, True, "bytes")}
    if server.mariadb:
        return {"innodb_log_file_size": _var(
            capacity, reason + "; one file" + (", resizable online since 10.9" if server.log_file_size_dynamic
                                               else ", resized at restart"),
            server.log_file_size_dynamic, "bytes")}
    return {
        "innodb_log_file_size": _var(capacity // 2, reason + "; split over two files", False, "bytes"),
        "innodb_log_files_in_group": _var(2, "the two files that hold the redo capacity", False, "files"),
    }


def _io_variables(inputs, server):
    disk = inputs["disk_class"]
    capacity, most, why = IO_CAPACITY[disk]
    out = {
        "innodb_io_capacity": _var(capacity, "%s disk: %s" % (disk, why), True, "iops"),
        "innodb_io_capacity_max": _var(most, "%s disk: twice innodb_io_capacity for flushing bursts near the "
                                             "redo limit" % disk, True, "iops"),
    }
    if disk == "network":
        out["innodb_flush_method"] = _var(
            "fsync", "network disk: O_DIRECT sends many small synchronous writes over the network (NetApp measured "
                     "fsync faster on NFS and SAN); fsync lets the client cache coalesce them", False)
    else:
        out["innodb_flush_method"] = _var(
            "O_DIRECT", "%s disk: the buffer pool already caches pages; O_DIRECT skips the second copy in the "
                        "OS page cache" % disk, False)
    if server.dedicated_server:
        out["innodb_dedicated_server"] = _var(
            False, "the sizes here already account for the container limit and reserved memory; automatic "
                   "sizing would override or fight them", False)
    return out


def _connection_variables(sizing, inputs):
    s = sizing.sizes
    conns = s["max_connections"]
    admin = conns - sizing.need
    per_node = inputs["workers_per_node"] * inputs["pool_size"]
    thread_cache = min(conns, MAX_THREAD_CACHE, max(16, 2 * per_node))
    table_open = min(4000, max(400, 4 * conns))
    return {
        "max_connections": _var(
            conns,
            "web %d nodes x %d workers x %d pooled = %d, app %d nodes x %d = %d, plus %d for admin and monitoring%s"
            % (inputs["web_nodes"], inputs["workers_per_node"], inputs["pool_size"], sizing.web,
               inputs["app_nodes"], inputs["app_connections"], sizing.app, admin,
               _lowered_note(sizing, "max_connections")),
            True, "connections"),
        "thread_cache_size": _var(
            thread_cache, "two web nodes' pools (2 x %d, at least 16, at most max_connections and %d): a rolling "
                          "restart reconnects them without creating threads" % (per_node, MAX_THREAD_CACHE),
            True, "threads"),
        "table_open_cache": _var(
            table_open, "4 tables per connection (a check-in touches the agent, check-in and tenant tables), "
                        "400 to 4000", True, "tables"),
        "table_definition_cache": _var(
            min(2000, 400 + table_open // 2),
            "400 + table_open_cache / 2, at most 2000 (MySQL's own autosizing rule)", True, "tables"),
        "skip_name_resolve": _var(
            True, "accounts are granted to addresses; a slow or failing DNS would otherwise stall every new "
                  "connection", False),
    }


def _buffer_variables(sizing, server, rate):
    s = sizing.sizes
    tmp = s["tmp_table_size"]
    redo_per_s = rate * REDO_BYTES_PER_CHECKIN
    held = "%.0f s" % (s["innodb_log_buffer_size"] / redo_per_s) if redo_per_s else "any number of seconds"
    out = {
        "tmp_table_size": _var(tmp, "in-memory temporary tables up to %s (16M under 4 GiB usable, 32M under 16 GiB, "
                                    "64M above); equal to max_heap_table_size since the smaller one wins"
                               % human(tmp), True, "bytes"),
        "max_heap_table_size": _var(tmp, "equal to tmp_table_size", True, "bytes"),
        "key_buffer_size": _var(s["key_buffer_size"], "MyISAM index cache: no table of the collection is MyISAM, "
                                                      "keep it small", True, "bytes"),
        "innodb_log_buffer_size": _var(
            s["innodb_log_buffer_size"], "16M holds %s of check-in redo and is written at least every second: "
                                         "commits never wait for buffer space" % held,
            server.log_buffer_dynamic, "bytes"),
    }
    if server.aria:
        out["aria_pagecache_buffer_size"] = _var(
            s["aria_pagecache_buffer_size"], "Aria caches the system tables and on-disk internal temporary tables "
                                             "only; the 128M default is memory the buffer pool needs more", False,
            "bytes")
    if server.query_cache:
        out["query_cache_type"] = _var(
            "OFF", "every check-in write invalidates cached results, and the cache's global mutex serialises "
                   "queries", True)
        out["query_cache_size"] = _var(0, "no memory for the disabled query cache", True, "bytes")
    if server.temptable:
        out["temptable_max_ram"] = _var(
            s["temptable_max_ram"], "cap of the TempTable engine's RAM for internal temporary tables (8.0's 1G "
                                    "default would not fit small hosts); beyond it they go to disk", True, "bytes")
    return out


def _per_thread_variables(sizing, server):
    s = sizing.sizes
    out = {}
    why = {
        "sort_buffer_size": "small sorts of the agent listing; a larger buffer only costs memory per connection",
        "join_buffer_size": "the check-in queries join by index, this buffer is for joins without one",
        "read_buffer_size": "sequential scans are rare in the check-in workload",
        "read_rnd_buffer_size": "sorted-row reads of small result pages",
    }
    for name in LOWERABLE:
        out[name] = _var(s[name], why[name] + _lowered_note(sizing, name), True, "bytes")
    out["thread_stack"] = _var(s["thread_stack"], "%s's default stack: a smaller one risks 'thread stack overrun' "
                                                  "on deep queries" % server.thread_stack_label,
                               False, "bytes")
    out["binlog_cache_size"] = _var(s["binlog_cache_size"], "the default 32K holds a check-in transaction's "
                                                            "binary log events", True, "bytes")
    out["net_buffer_length"] = _var(s["net_buffer_length"], "the default 16K; it grows per connection up to "
                                                            "max_allowed_packet when needed", True, "bytes")
    return out


def _durability_variables(inputs):
    if inputs["durability"] == "strict":
        out = {"innodb_flush_log_at_trx_commit": _var(
            1, "strict: the redo log is flushed at every commit, so every acknowledged check-in survives a "
               "crash of the server or the host", True)}
        if inputs["binlog"]:
            out["sync_binlog"] = _var(1, "strict: the binary log is synced at every commit, so replicas and "
                                         "point-in-time recovery have every acknowledged check-in", True)
        return out
    out = {"innodb_flush_log_at_trx_commit": _var(
        2, "relaxed: redo is written at commit and flushed once a second (group commit); an OS crash or power "
           "loss loses up to about one second of check-ins", True)}
    if inputs["binlog"]:
        out["sync_binlog"] = _var(0, "relaxed: the OS flushes the binary log; an OS crash can lose its last "
                                     "seconds, so replicas and point-in-time recovery may miss recent check-ins",
                                  True)
    return out


def render(variable):
    value = variable["value"]
    if isinstance(value, bool):
        return "ON" if value else "OFF"
    if variable["unit"] == "bytes":
        return human(value)
    return value


def mysql_tuning(raw, plan=None):
    """Server variables, their reasons and the worst-case memory for one shard host.

    Raises PlanError naming the input and value for anything refused, including a host
    whose memory cannot carry the plan's connections.
    """
    inputs = check_inputs(raw, plan)
    server = Server(inputs["flavor"], inputs["series"], inputs["patch"])
    usable_mb, field, basis = usable_memory(inputs)
    if usable_mb < MIN_USABLE_MB:
        raise PlanError(field, inputs[field],
                        "leaves %d MiB usable (%s), under the %d MiB a database server needs"
                        % (usable_mb, basis, MIN_USABLE_MB))
    sizing = Sizing(inputs, server, usable_mb, (field, inputs[field], basis)).run()
    warnings = []
    if server.assumed_patch:
        warnings.append("version '%s' has no patch number: assumed 8.0.30 or later (innodb_redo_log_capacity); "
                        "give e.g. '8.0.28' for an older server" % inputs["version"])
    warnings.extend(sizing.warnings)

    variables = {}
    variables.update(_pool_variables(sizing, server, basis))
    variables.update(_redo_variables(inputs, server, sizing.sizes["innodb_buffer_pool_size"]))
    variables.update(_io_variables(inputs, server))
    variables.update(_connection_variables(sizing, inputs))
    variables.update(_buffer_variables(sizing, server, inputs["checkin_rate_per_second"]))
    variables.update(_per_thread_variables(sizing, server))
    variables.update(_durability_variables(inputs))

    worst = sizing.worst()
    return {
        "variables": variables,
        "usable_memory_mb": usable_mb,
        "worst_case_memory_mb": round(worst / MIB, 3),
        "worst_case_ratio": round(worst / (usable_mb * MIB), 4),
        "warnings": warnings,
        "flavor": inputs["flavor"],
        "version": inputs["version"],
        "durability": inputs["durability"],
        "config": {name: render(variable) for name, variable in variables.items()},
    }
