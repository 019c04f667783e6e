"""Database tuning: usable memory, buffer pool, redo, I/O, connections, the 90 % guard, flavours, validation."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.fleetscale.split.plugins.module_utils import plan, tuning
from ansible_collections.fleetscale.split.plugins.module_utils.errors import PlanError

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB

# 3 web nodes x 4 workers x 4 pooled + 2 app nodes x 4 = 56 connections, 100 check-ins/s.
BASE = {"memory_mb": 8192, "checkin_rate_per_second": 100, "web_nodes": 3, "app_nodes": 2}
MEMORY_FIELDS = ("memory_mb", "memory_limit_mb", "reserved_mb")

# Every server version the filter distinguishes: MariaDB before / from 10.9 (online redo resize),
# MySQL before / from 8.0.27 (1M thread stack) and 8.0.30 (innodb_redo_log_capacity).
VERSIONS = [("mariadb", "10.6"), ("mariadb", "10.8"), ("mariadb", "10.9"), ("mariadb", "10.11"),
            ("mysql", "8.0.26"), ("mysql", "8.0.29"), ("mysql", "8.0.30"), ("mysql", "8.0"), ("mysql", "8.4")]

COMMON = {
    "innodb_buffer_pool_size", "innodb_buffer_pool_chunk_size", "innodb_io_capacity", "innodb_io_capacity_max",
    "innodb_flush_method", "max_connections", "thread_cache_size", "table_open_cache", "table_definition_cache",
    "skip_name_resolve", "tmp_table_size", "max_heap_table_size", "key_buffer_size", "innodb_log_buffer_size",
    "sort_buffer_size", "join_buffer_size", "read_buffer_size", "read_rnd_buffer_size", "thread_stack",
    "binlog_cache_size", "net_buffer_length", "innodb_flush_log_at_trx_commit", "sync_binlog",
}
# MariaDB 10.6+ has no buffer pool instances (one pool since 10.5), no innodb_dedicated_server and no
# TempTable engine; MySQL 8.0+ has no query cache and no Aria.
ONLY = {
    "mariadb": {"aria_pagecache_buffer_size", "query_cache_type", "query_cache_size"},
    "mysql": {"innodb_buffer_pool_instances", "innodb_dedicated_server", "temptable_max_ram"},
}
REDO_BEFORE_8_0_30 = {"innodb_log_file_size", "innodb_log_files_in_group"}


def tune(**changes):
    return tuning.mysql_tuning(dict(BASE, **changes))


def values(result):
    return {name: variable["value"] for name, variable in result["variables"].items()}


def refusal(raw, plan_=None):
    with pytest.raises(PlanError) as caught:
        tuning.mysql_tuning(raw, plan_)
    return caught.value


def worst_case(result):
    """The MySQLTuner worst case recomputed from the emitted values, not from the filter's own sums."""
    v = values(result)
    total = (v["innodb_buffer_pool_size"] + v["key_buffer_size"] + v["innodb_log_buffer_size"]
             + min(v["tmp_table_size"], v["max_heap_table_size"]))
    if result["flavor"] == "mariadb":
        total += v["query_cache_size"] + v["aria_pagecache_buffer_size"]
    else:
        total += v["temptable_max_ram"]
    per_thread = (v["read_buffer_size"] + v["read_rnd_buffer_size"] + v["sort_buffer_size"] + v["join_buffer_size"]
                  + v["thread_stack"] + v["binlog_cache_size"] + v["net_buffer_length"])
    return total + per_thread * v["max_connections"]


def grain(result):
    v = values(result)
    return v["innodb_buffer_pool_chunk_size"] * v.get("innodb_buffer_pool_instances", 1)


# --- usable memory -------------------------------------------------------------------------


@pytest.mark.parametrize(("memory_mb", "limit", "reserved", "usable", "field"), [
    (8192, None, 0, 8192, "memory_mb"),
    # the lab: a 2 GiB container on a 24 GiB machine
    (24576, 2048, 0, 2048, "memory_limit_mb"),
    # a limit above the host's RAM is no limit
    (8192, 16384, 0, 8192, "memory_mb"),
    # cgroup v1 reports "no limit" as 9223372036854771712 bytes
    (8192, 9223372036854771712 // MIB, 0, 8192, "memory_mb"),
    (8192, None, 2048, 6144, "reserved_mb"),
    # the reservation is below the limit: it wins
    (8192, 7000, 2048, 6144, "reserved_mb"),
    (8192, 4096, 2048, 4096, "memory_limit_mb"),
    (8192, 6144, 2048, 6144, "reserved_mb"),
])
def test_usable_memory_table(memory_mb, limit, reserved, usable, field):
    inputs = tuning.check_inputs(dict(BASE, memory_mb=memory_mb, memory_limit_mb=limit, reserved_mb=reserved))
    assert tuning.usable_memory(inputs)[:2] == (usable, field)
    assert tune(memory_mb=memory_mb, memory_limit_mb=limit, reserved_mb=reserved)["usable_memory_mb"] == usable


def test_a_container_limit_below_the_hosts_ram_sizes_everything():
    limited = tune(memory_mb=24576, memory_limit_mb=2048)
    small_host = tune(memory_mb=2048)
    assert values(limited) == values(small_host)
    assert limited["usable_memory_mb"] == 2048
    assert "2048 MiB container limit (host 24576 MiB)" in limited["variables"]["innodb_buffer_pool_size"]["reason"]
    assert values(tune(memory_mb=24576))["innodb_buffer_pool_size"] > 10 * values(limited)["innodb_buffer_pool_size"]


def test_a_shared_hosts_reservation_is_taken_off_its_ram():
    shared = tune(memory_mb=16384, reserved_mb=8192)
    assert values(shared) == values(tune(memory_mb=8192))
    assert "less 8192 MiB reserved" in shared["variables"]["innodb_buffer_pool_size"]["reason"]


# --- buffer pool -----------------------------------------------------------------------------


# Worked by hand: 75 % of (usable - 256 MiB MariaDB / 384 MiB MySQL), rounded down to chunk x instances;
# 32 MiB chunks under a 1 GiB pool, 128 MiB above, doubled while there would be more than 1024 chunks;
# MySQL instances one per GiB, at most 8 and at most one per vCPU.
@pytest.mark.parametrize(("flavor", "memory_mb", "vcpus", "pool_mb", "chunk_mb", "instances"), [
    ("mariadb", 8192, 8, 5888, 128, None),         # 5952 -> 46 x 128
    ("mysql", 8192, 8, 5760, 128, 5),              # 5856 -> 9 x (128 x 5)
    ("mysql", 8192, 2, 5632, 128, 2),              # 5856 -> 22 x (128 x 2)
    ("mariadb", 2048, 2, 1280, 128, None),         # 1344 -> 10 x 128
    ("mariadb", 1024, 2, 576, 32, None),           # 576 = 18 x 32
    ("mysql", 1024, 4, 480, 32, 1),                # 480 = 15 x 32, one instance under 1 GiB
    ("mysql", 65536, 16, 48128, 128, 8),           # 48864 -> 47 x (128 x 8)
    ("mariadb", 2 * 1024 * 1024, 64, 1570816, 2048, None),  # 1572672 MiB: 2 GiB chunks keep it under 1024
])
def test_buffer_pool_table(flavor, memory_mb, vcpus, pool_mb, chunk_mb, instances):
    result = tune(flavor=flavor, memory_mb=memory_mb, vcpus=vcpus)
    v = values(result)
    assert v["innodb_buffer_pool_size"] == pool_mb * MIB
    assert v["innodb_buffer_pool_chunk_size"] == chunk_mb * MIB
    assert v.get("innodb_buffer_pool_instances") == instances
    assert v["innodb_buffer_pool_size"] % grain(result) == 0
    assert result["warnings"] == []


def test_mariadb_has_one_buffer_pool_instance_and_mysql_splits_by_gib_and_vcpu():
    assert "innodb_buffer_pool_instances" not in tune(memory_mb=65536, vcpus=16)["variables"]
    assert values(tune(flavor="mysql", memory_mb=65536, vcpus=3))["innodb_buffer_pool_instances"] == 3
    assert values(tune(flavor="mysql", memory_mb=2048, vcpus=16))["innodb_buffer_pool_instances"] == 1


@pytest.mark.parametrize(("flavor", "memory_mb", "data_mb", "pool_mb"), [
    # the data fits beside everything else: the pool covers it, rounded up to the chunk
    ("mariadb", 16384, 14000, 14080),
    ("mysql", 16384, 12000, 12288),
    # the 75 % share already holds it
    ("mariadb", 8192, 1000, 5888),
    ("mariadb", 8192, 5888, 5888),
])
def test_the_pool_grows_to_the_data_when_memory_allows(flavor, memory_mb, data_mb, pool_mb):
    result = tune(flavor=flavor, memory_mb=memory_mb, vcpus=4, data_size_mb=data_mb)
    pool = values(result)["innodb_buffer_pool_size"]
    assert pool == pool_mb * MIB
    assert pool >= data_mb * MIB
    assert pool % grain(result) == 0
    assert result["warnings"] == []
    if pool_mb > 5888:
        assert "the %d MiB of data, which fits" % data_mb in result["variables"]["innodb_buffer_pool_size"]["reason"]


def test_data_larger_than_memory_gets_as_much_pool_as_the_guard_leaves_and_a_warning():
    result = tune(memory_mb=8192, data_size_mb=100_000)
    pool = values(result)["innodb_buffer_pool_size"]
    assert values(tune(memory_mb=8192))["innodb_buffer_pool_size"] < pool < 100_000 * MIB
    assert "as much as memory allows toward the 100000 MiB" in result["variables"]["innodb_buffer_pool_size"]["reason"]
    assert result["warnings"] == ["the buffer pool (%d MiB) is smaller than the data (100000 MiB): reads that miss "
                                  "it go to disk" % (pool // MIB)]
    assert worst_case(result) <= 0.9 * 8192 * MIB
    # one more chunk would not fit
    assert worst_case(result) + grain(result) > min(0.9 * 8192, 8192 - 256) * MIB


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(VERSIONS), st.integers(4096, 1024 * 1024), st.integers(1, 64), st.floats(0.0, 1.0))
def test_data_well_inside_memory_is_always_covered(version, memory_mb, vcpus, share):
    data_mb = int(share * (0.8 * memory_mb - 2048))
    result = tune(flavor=version[0], version=version[1], memory_mb=memory_mb, vcpus=vcpus, data_size_mb=data_mb)
    assert values(result)["innodb_buffer_pool_size"] >= data_mb * MIB
    assert values(result)["innodb_buffer_pool_size"] % grain(result) == 0


# --- redo log --------------------------------------------------------------------------------


# An hour of redo is rate x 2 KiB x 3600 s, rounded up to 64 MiB, between 256 MiB and min(8 GiB, pool).
@pytest.mark.parametrize(("changes", "name", "size_mb", "words"), [
    ({"checkin_rate_per_second": 0}, "innodb_log_file_size", 256, "raised to the 256 MiB floor"),
    ({}, "innodb_log_file_size", 704, "= 703 MiB, rounded up to 64 MiB"),
    ({"checkin_rate_per_second": 1000}, "innodb_log_file_size", 5888, "capped at the buffer pool's size"),
    ({"memory_mb": 2048}, "innodb_log_file_size", 704, "= 703 MiB, rounded up to 64 MiB"),
    ({"memory_mb": 1024}, "innodb_log_file_size", 576, "capped at the buffer pool's size"),
    ({"memory_mb": 512}, "innodb_log_file_size", 256, "capped at the 256 MiB floor (the pool is smaller)"),
    ({"flavor": "mysql", "memory_mb": 65536, "checkin_rate_per_second": 1000}, "innodb_redo_log_capacity", 7040,
     "rounded up"),
    ({"flavor": "mysql", "memory_mb": 65536, "checkin_rate_per_second": 5000}, "innodb_redo_log_capacity", 8192,
     "capped at 8192 MiB"),
])
def test_redo_is_about_an_hour_of_checkins_within_bounds(changes, name, size_mb, words):
    variable = tune(**changes)["variables"][name]
    assert variable["value"] == size_mb * MIB
    assert words in variable["reason"]
    assert variable["unit"] == "bytes"


@settings(max_examples=200, deadline=None)
@given(st.floats(0, 1e7), st.integers(0, 2 ** 40))
def test_redo_bounds_property(rate, pool):
    size, reason = tuning.redo_bytes(rate, pool)
    hour = rate * 3600 * 2 * KIB
    assert 256 * MIB <= size <= 8192 * MIB
    assert size % (64 * MIB) == 0
    assert size <= max(256 * MIB, pool)
    if 256 * MIB <= hour <= min(8192 * MIB, pool) - 64 * MIB:
        assert hour <= size < hour + 64 * MIB
    assert reason


def test_mysql_before_8_0_30_splits_the_redo_over_two_files():
    v = values(tune(flavor="mysql", version="8.0.28"))
    assert v["innodb_log_file_size"] == 352 * MIB
    assert v["innodb_log_files_in_group"] == 2
    assert "innodb_redo_log_capacity" not in v


def test_a_bare_mysql_8_0_is_taken_as_8_0_30_or_later_with_a_warning():
    result = tune(flavor="mysql", version="8.0")
    assert "innodb_redo_log_capacity" in result["variables"]
    assert "innodb_log_file_size" not in result["variables"]
    assert any("assumed 8.0.30 or later" in w for w in result["warnings"])
    assert not any("assumed" in w for w in tune(flavor="mysql", version="8.0.36")["warnings"])


# --- flavours and versions ----------------------------------------------------------------------


@pytest.mark.parametrize(("flavor", "version"), VERSIONS)
def test_each_flavour_and_version_gets_exactly_the_variables_it_has(flavor, version):
    names = set(tune(flavor=flavor, version=version)["variables"])
    if flavor == "mariadb":
        redo = {"innodb_log_file_size"}
    elif version in ("8.0.26", "8.0.29"):
        redo = REDO_BEFORE_8_0_30
    else:
        redo = {"innodb_redo_log_capacity"}
    assert names == COMMON | ONLY[flavor] | redo


@pytest.mark.parametrize(("flavor", "version", "online"), [
    ("mariadb", "10.6", False), ("mariadb", "10.8", False), ("mariadb", "10.9", True), ("mariadb", "10.11", True),
])
def test_mariadb_resizes_its_redo_log_online_from_10_9(flavor, version, online):
    variable = tune(flavor=flavor, version=version)["variables"]["innodb_log_file_size"]
    assert variable["dynamic"] is online
    assert ("online since 10.9" in variable["reason"]) is online


@pytest.mark.parametrize(("flavor", "version", "name", "dynamic"), [
    ("mysql", "8.4", "innodb_redo_log_capacity", True),
    ("mysql", "8.0.29", "innodb_log_file_size", False),
    ("mysql", "8.4", "innodb_log_buffer_size", True),
    ("mariadb", "10.11", "innodb_log_buffer_size", False),
    ("mariadb", "10.11", "aria_pagecache_buffer_size", False),
    ("mysql", "8.4", "innodb_buffer_pool_instances", False),
    ("mysql", "8.4", "innodb_buffer_pool_size", True),
    ("mariadb", "10.6", "innodb_buffer_pool_chunk_size", False),
    ("mariadb", "10.6", "innodb_flush_method", False),
    ("mysql", "8.4", "skip_name_resolve", False),
    ("mysql", "8.4", "thread_stack", False),
    ("mysql", "8.4", "max_connections", True),
])
def test_dynamic_flag_follows_the_server(flavor, version, name, dynamic):
    assert tune(flavor=flavor, version=version)["variables"][name]["dynamic"] is dynamic


@pytest.mark.parametrize(("flavor", "version", "stack"), [
    ("mariadb", "10.6", 299008), ("mariadb", "10.11", 299008),
    ("mysql", "8.0.26", 286720), ("mysql", "8.0.27", MIB), ("mysql", "8.0", MIB), ("mysql", "8.4", MIB),
])
def test_thread_stack_is_the_servers_own_default(flavor, version, stack):
    assert values(tune(flavor=flavor, version=version))["thread_stack"] == stack


def test_mysql_caps_temptable_ram_and_turns_off_its_own_autosizing():
    v = values(tune(flavor="mysql"))
    assert v["temptable_max_ram"] == 2 * v["tmp_table_size"]
    assert v["innodb_dedicated_server"] is False
    assert tune(flavor="mysql")["config"]["innodb_dedicated_server"] == "OFF"


def test_mariadb_turns_the_query_cache_off_and_shrinks_aria():
    result = tune()
    assert result["config"]["query_cache_type"] == "OFF"
    assert result["config"]["query_cache_size"] == "0"
    assert result["config"]["aria_pagecache_buffer_size"] == "32M"


@pytest.mark.parametrize(("version", "series"), [
    ("10.11.6-MariaDB-0+deb12u1", (10, 11)), (" 10.6.18 ", (10, 6)), ("10.10", (10, 10)),
])
def test_version_strings_as_servers_report_them(version, series):
    assert tuning.check_version("mariadb", version)[1] == series
    assert tune(version=version)["version"] == version.strip()


# --- I/O ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("disk", "io", "io_max", "flush"), [
    ("ssd", 1000, 2000, "O_DIRECT"),
    ("hdd", 200, 400, "O_DIRECT"),
    ("network", 500, 1000, "fsync"),
])
@pytest.mark.parametrize("flavor", ["mariadb", "mysql"])
def test_io_capacity_and_flush_method_by_disk_class(flavor, disk, io, io_max, flush):
    result = tune(flavor=flavor, disk_class=disk)
    v = values(result)
    assert (v["innodb_io_capacity"], v["innodb_io_capacity_max"], v["innodb_flush_method"]) == (io, io_max, flush)
    assert result["variables"]["innodb_io_capacity"]["reason"].startswith("%s disk: " % disk)


def test_default_disk_is_ssd():
    assert values(tune())["innodb_io_capacity"] == 1000


# --- connections ---------------------------------------------------------------------------------


# max_connections = web nodes x workers x pool + app nodes x app connections + admin (a tenth, at least 10).
@pytest.mark.parametrize(("changes", "expected"), [
    ({}, 66),                                                                           # 48 + 8 + 10
    ({"web_nodes": 8, "workers_per_node": 8, "pool_size": 4}, 291),                     # 256 + 8 + 27
    ({"admin_connections": 3}, 59),
    ({"app_nodes": 0}, 58),
    ({"app_connections": 10}, 78),                                                      # 48 + 20 + 10
    ({"web_nodes": 20, "workers_per_node": 8, "pool_size": 8, "app_connections": 10, "admin_connections": 50,
      "memory_mb": 65536}, 1350),                                                       # 1280 + 20 + 50
    # MariaDB raises anything under 10 to 10; MySQL accepts 1
    ({"web_nodes": 1, "workers_per_node": 2, "pool_size": 2, "app_nodes": 1, "app_connections": 0,
      "admin_connections": 0}, 10),
    ({"flavor": "mysql", "web_nodes": 1, "workers_per_node": 2, "pool_size": 2, "app_nodes": 1,
      "app_connections": 0, "admin_connections": 0}, 4),
])
def test_max_connections_from_the_pools(changes, expected):
    result = tune(**changes)
    assert values(result)["max_connections"] == expected
    assert result["warnings"] == []


def test_max_connections_reason_shows_the_sum():
    reason = tune()["variables"]["max_connections"]["reason"]
    assert reason == "web 3 nodes x 4 workers x 4 pooled = 48, app 2 nodes x 4 = 8, plus 10 for admin and monitoring"


@pytest.mark.parametrize(("changes", "thread_cache", "open_cache", "definition_cache"), [
    ({}, 32, 400, 600),
    ({"web_nodes": 8, "workers_per_node": 8, "pool_size": 4}, 64, 1164, 982),
    ({"web_nodes": 40, "workers_per_node": 16, "pool_size": 8, "memory_mb": 65536}, 256, 4000, 2000),
])
def test_thread_and_table_caches(changes, thread_cache, open_cache, definition_cache):
    v = values(tune(**changes))
    assert (v["thread_cache_size"], v["table_open_cache"], v["table_definition_cache"]) == (
        thread_cache, open_cache, definition_cache)
    assert v["skip_name_resolve"] is True


def test_the_servers_connection_limit_caps_the_admin_margin():
    # 9 x 100 x 100 + 1000 x 10 = 100,000: the servers' maximum leaves no admin margin
    result = tune(memory_mb=512 * 1024, web_nodes=9, workers_per_node=100, pool_size=100, app_nodes=1000,
                  app_connections=10)
    v = values(result)
    assert v["max_connections"] == 100_000
    assert v["thread_cache_size"] == 16384
    assert any("capped at the servers' limit of 100000" in w for w in result["warnings"])


def test_a_plan_needing_more_connections_than_a_server_accepts_is_refused():
    error = refusal(dict(BASE, memory_mb=1024 * 1024, web_nodes=1000, workers_per_node=20, pool_size=10))
    assert (error.field, error.value) == ("max_connections", 200_008)
    assert "above the 100000" in error.reason


def test_the_plan_fills_rate_and_node_counts():
    fleet_plan = plan.build_plan({"agents": 20_000})  # 2 agent + 1 user web node, 2 app nodes, 100 check-ins/s
    result = tuning.mysql_tuning({"memory_mb": 8192}, fleet_plan)
    assert values(result) == values(tune())
    assert values(tuning.mysql_tuning({"memory_mb": 8192, "web_nodes": 5}, fleet_plan))["max_connections"] == 98


def test_a_shard_takes_its_share_of_the_plans_rate():
    fleet_plan = plan.build_plan({"agents": 120_000})  # 600 check-ins/s on three shards of 40,000 agents
    result = tuning.mysql_tuning({"memory_mb": 16384, "shard": 2}, fleet_plan)
    # 200 check-ins/s x 2 KiB x 3600 s = 1406.25 MiB, rounded up to 1408
    assert values(result)["innodb_log_file_size"] == 1408 * MIB
    whole = tuning.mysql_tuning({"memory_mb": 16384}, fleet_plan)
    assert values(whole)["innodb_log_file_size"] == 4224 * MIB  # 4219 MiB, within the pool


# --- the memory guard ----------------------------------------------------------------------------


def test_the_guard_lowers_per_thread_buffers_first():
    result = tune(memory_mb=2048, web_nodes=20)
    v = values(result)
    assert v["max_connections"] == 361
    assert v["sort_buffer_size"] == 512 * KIB
    assert "lowered by the memory guard from 1M" in result["variables"]["sort_buffer_size"]["reason"]
    assert result["warnings"] == ["memory guard: per-thread buffers lowered (join_buffer_size, read_buffer_size, "
                                  "read_rnd_buffer_size, sort_buffer_size) to keep the worst case under 90 % of "
                                  "2048 MiB"]
    assert worst_case(result) <= 0.9 * 2048 * MIB


def test_the_guard_then_lowers_max_connections_to_the_need_then_the_pool_and_says_so():
    result = tune(memory_mb=2048, web_nodes=40)
    v = values(result)
    assert (v["sort_buffer_size"], v["join_buffer_size"], v["read_buffer_size"], v["read_rnd_buffer_size"]) == (
        256 * KIB, 128 * KIB, 64 * KIB, 128 * KIB)
    assert v["max_connections"] == 648  # the need: 40 x 4 x 4 + 2 x 4
    assert v["innodb_buffer_pool_size"] == 1152 * MIB
    assert [w.split(" lowered")[0] for w in result["warnings"]] == [
        "memory guard: per-thread buffers", "memory guard: max_connections", "memory guard: innodb_buffer_pool_size"]
    assert "lowered by the memory guard from 713" in result["variables"]["max_connections"]["reason"]
    assert "lowered by the memory guard from 1280M" in result["variables"]["innodb_buffer_pool_size"]["reason"]
    assert worst_case(result) <= 0.9 * 2048 * MIB


@pytest.mark.parametrize(("changes", "field", "value"), [
    ({"memory_mb": 600, "web_nodes": 50}, "memory_mb", 600),
    ({"memory_mb": 24576, "memory_limit_mb": 1024, "web_nodes": 100}, "memory_limit_mb", 1024),
    ({"memory_mb": 8192, "reserved_mb": 7000, "web_nodes": 100}, "reserved_mb", 7000),
])
def test_too_little_memory_for_the_plans_connections_fails_naming_the_memory(changes, field, value):
    error = refusal(dict(BASE, **changes))
    assert (error.field, error.value) == (field, value)
    need = changes["web_nodes"] * 16 + 8
    assert "too little for the plan's %d connections" % need in error.reason
    assert "add memory or lower workers_per_node or pool_size" in error.reason


def _floor_fits(inputs):
    """Whether the plan's connections fit with every buffer at its floor and a 128 MiB pool (computed here)."""
    usable = tuning.usable_memory(inputs)[0]
    flavor = inputs["flavor"]
    tmp = 16 * MIB if usable < 4096 else 32 * MIB if usable < 16384 else 64 * MIB
    extra = 32 * MIB if flavor == "mariadb" else 2 * tmp
    server = tuning.Server(flavor, inputs["series"], inputs["patch"])
    per_thread = (256 + 128 + 64 + 128 + 32 + 16) * KIB + server.thread_stack
    need = (inputs["web_nodes"] * inputs["workers_per_node"] * inputs["pool_size"]
            + inputs["app_nodes"] * inputs["app_connections"])
    need = max(need, 10 if flavor == "mariadb" else 1)
    return 128 * MIB + 8 * MIB + 16 * MIB + tmp + extra + per_thread * need <= usable * MIB * 9 // 10


RAW = st.fixed_dictionaries({
    "memory_mb": st.integers(448, 256 * 1024),
    "memory_limit_mb": st.none() | st.integers(448, 64 * 1024),
    "reserved_mb": st.just(0) | st.integers(0, 1024),
    "vcpus": st.integers(1, 96),
    "disk_class": st.sampled_from(["ssd", "hdd", "network"]),
    "durability": st.sampled_from(["strict", "relaxed"]),
    "binlog": st.booleans(),
    "data_size_mb": st.none() | st.integers(0, 512 * 1024),
    "checkin_rate_per_second": st.floats(0, 100_000),
    "web_nodes": st.integers(1, 40),
    "workers_per_node": st.integers(1, 32),
    "pool_size": st.integers(1, 16),
    "app_nodes": st.integers(0, 10),
    "app_connections": st.integers(0, 50),
    "admin_connections": st.none() | st.integers(0, 500),
})


@settings(max_examples=300, deadline=None)
@given(RAW, st.sampled_from(VERSIONS))
def test_worst_case_stays_at_or_under_90_percent_or_the_memory_is_named(raw, version):
    raw = dict(raw, flavor=version[0], version=version[1])
    if raw["reserved_mb"] >= raw["memory_mb"]:
        raw["reserved_mb"] = 0
    inputs = tuning.check_inputs(raw)
    usable, field, _basis = tuning.usable_memory(inputs)
    try:
        result = tuning.mysql_tuning(raw)
    except PlanError as error:
        assert error.field in MEMORY_FIELDS
        assert (error.field, error.value) == (field, raw[field])
        assert "MiB" in error.reason
        assert usable < 512 or not _floor_fits(inputs)
        return
    assert usable >= 512
    assert _floor_fits(inputs)
    assert result["usable_memory_mb"] == usable
    assert worst_case(result) <= usable * MIB * 9 // 10
    assert result["worst_case_ratio"] <= 0.9
    assert result["worst_case_memory_mb"] == round(worst_case(result) / MIB, 3)
    v = values(result)
    need, _admin, _web, _app = tuning.connection_need(inputs)
    assert v["max_connections"] >= need
    assert v["innodb_buffer_pool_size"] >= 128 * MIB
    assert v["innodb_buffer_pool_size"] % grain(result) == 0
    redo = v.get("innodb_redo_log_capacity") or v["innodb_log_file_size"] * v.get("innodb_log_files_in_group", 1)
    assert 256 * MIB <= redo <= 8192 * MIB
    assert 1 <= v["thread_cache_size"] <= min(v["max_connections"], 16384)
    for name, variable in result["variables"].items():
        assert variable["reason"].strip() and "\n" not in variable["reason"], name
    # whatever the guard lowered, it says so in the warnings and in the variable's reason
    guard = [w for w in result["warnings"] if w.startswith("memory guard")]
    for name in ("max_connections", "innodb_buffer_pool_size", *tuning.LOWERABLE):
        noted = "lowered by the memory guard" in result["variables"][name]["reason"]
        assert noted == any(name in w for w in guard), name


# --- durability ------------------------------------------------------------------------------------


@pytest.mark.parametrize("flavor", ["mariadb", "mysql"])
@pytest.mark.parametrize(("durability", "trx_commit", "sync_binlog", "words"), [
    ("strict", 1, 1, "every acknowledged check-in survives"),
    ("relaxed", 2, 0, "up to about one second of check-ins"),
])
def test_durability_profiles(flavor, durability, trx_commit, sync_binlog, words):
    result = tune(flavor=flavor, durability=durability)
    v = values(result)
    assert (v["innodb_flush_log_at_trx_commit"], v["sync_binlog"]) == (trx_commit, sync_binlog)
    assert words in result["variables"]["innodb_flush_log_at_trx_commit"]["reason"]
    assert result["durability"] == durability
    without_binlog = tune(flavor=flavor, durability=durability, binlog=False)
    assert "sync_binlog" not in without_binlog["variables"]
    assert values(without_binlog)["innodb_flush_log_at_trx_commit"] == trx_commit


def test_strict_is_the_default():
    assert tune()["durability"] == "strict"
    assert values(tune())["innodb_flush_log_at_trx_commit"] == 1


# --- every output ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("flavor", "version"), VERSIONS)
@pytest.mark.parametrize("durability", ["strict", "relaxed"])
def test_every_output_has_a_one_line_reason_and_a_config_line(flavor, version, durability):
    result = tune(flavor=flavor, version=version, durability=durability, disk_class="network", data_size_mb=4000,
                  memory_mb=4096, web_nodes=30)
    for name, variable in result["variables"].items():
        assert set(variable) == {"value", "reason", "dynamic", "unit"}, name
        assert isinstance(variable["reason"], str) and variable["reason"].strip(), name
        assert "\n" not in variable["reason"], name
        assert isinstance(variable["dynamic"], bool), name
    assert set(result["config"]) == set(result["variables"])


@pytest.mark.parametrize(("size", "text"), [
    (2 * GIB, "2G"), (1280 * MIB, "1280M"), (299008, "292K"), (286720, "280K"), (1000, "1000"), (0, "0"),
])
def test_sizes_render_as_my_cnf_writes_them(size, text):
    assert tuning.human(size) == text


def test_config_renders_booleans_and_counts():
    config = tune()["config"]
    assert config["skip_name_resolve"] == "ON"
    assert config["innodb_buffer_pool_size"] == "5888M"
    assert config["max_connections"] == 66
    assert config["innodb_flush_method"] == "O_DIRECT"


def test_the_result_does_not_change_its_inputs():
    raw = dict(BASE)
    fleet_plan = plan.build_plan({"agents": 20_000})
    before = repr(fleet_plan)
    tuning.mysql_tuning(raw, fleet_plan)
    assert raw == BASE
    assert repr(fleet_plan) == before


# --- validation --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("changes", "field", "value", "words"), [
    # memory below the minimum, naming the figure that decided it
    ({"memory_mb": 400}, "memory_mb", 400, "under the 512 MiB"),
    ({"memory_limit_mb": 256}, "memory_limit_mb", 256, "under the 512 MiB"),
    ({"reserved_mb": 7800}, "reserved_mb", 7800, "under the 512 MiB"),
    ({"reserved_mb": 8192}, "reserved_mb", 8192, "must leave memory for the database"),
    ({"memory_mb": 0}, "memory_mb", 0, ">= 1"),
    ({"memory_mb": 10 ** 9}, "memory_mb", 10 ** 9, "<= 67108864"),
    ({"memory_mb": None}, "memory_mb", None, "is required"),
    # choices
    ({"disk_class": "nvme"}, "disk_class", "nvme", "must be one of: ssd, hdd, network"),
    ({"disk_class": ["ssd"]}, "disk_class", ["ssd"], "must be one of"),
    ({"durability": "fast"}, "durability", "fast", "must be one of: strict, relaxed"),
    ({"durability": "STRICT"}, "durability", "STRICT", "must be one of"),
    ({"flavor": "percona"}, "flavor", "percona", "must be one of: mariadb, mysql"),
    # versions
    ({"version": "10.5"}, "version", "10.5", "MariaDB 10.6 to 10.11"),
    ({"version": "11.4"}, "version", "11.4", "MariaDB 10.6 to 10.11"),
    ({"version": "8.0.36"}, "version", "8.0.36", "MariaDB 10.6 to 10.11"),
    ({"flavor": "mysql", "version": "5.7"}, "version", "5.7", "MySQL 8.0 to 8.4"),
    ({"flavor": "mysql", "version": "9.1"}, "version", "9.1", "MySQL 8.0 to 8.4"),
    ({"flavor": "mysql", "version": "10.11"}, "version", "10.11", "MySQL 8.0 to 8.4"),
    ({"version": "ten"}, "version", "ten", "MAJOR.MINOR"),
    ({"version": 10.11}, "version", 10.11, "quote it"),
    ({"version": "\u0661\u0660.\u0661\u0661"}, "version", "\u0661\u0660.\u0661\u0661", "MAJOR.MINOR"),
    # keys and types
    ({"memory": 8192}, "memory", 8192, "unknown key"),
    ({"memory_mb": "8G"}, "memory_mb", "8G", "whole number"),
    ({"memory_mb": 8192.5}, "memory_mb", 8192.5, "whole number"),
    ({"memory_mb": True}, "memory_mb", True, "whole number"),
    ({"vcpus": True}, "vcpus", True, "whole number"),
    ({"vcpus": 0}, "vcpus", 0, ">= 1"),
    ({"web_nodes": False}, "web_nodes", False, "whole number"),
    ({"web_nodes": 0}, "web_nodes", 0, ">= 1"),
    ({"admin_connections": -1}, "admin_connections", -1, ">= 0"),
    ({"data_size_mb": -5}, "data_size_mb", -5, ">= 0"),
    ({"checkin_rate_per_second": True}, "checkin_rate_per_second", True, "must be a number"),
    ({"checkin_rate_per_second": "fast"}, "checkin_rate_per_second", "fast", "must be a number"),
    ({"checkin_rate_per_second": -1}, "checkin_rate_per_second", -1, ">= 0"),
    ({"checkin_rate_per_second": float("inf")}, "checkin_rate_per_second", float("inf"), "finite"),
    ({"checkin_rate_per_second": None}, "checkin_rate_per_second", None, "required unless plan"),
    ({"app_nodes": None}, "app_nodes", None, "required unless plan"),
    ({"binlog": "yes"}, "binlog", "yes", "true or false"),
    ({"binlog": 1}, "binlog", 1, "true or false"),
    ({"shard": 1}, "shard", 1, "only with plan="),
    ({"shard": True}, "shard", True, "whole number"),
])
def test_each_validation_rule_names_field_and_value(changes, field, value, words):
    error = refusal(dict(BASE, **changes))
    assert error.field == field
    assert error.value == value
    assert words in error.reason
    assert "field '%s'" % field in str(error)
    assert "(got %r)" % (value,) in str(error)


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize(("field", "plan_"), [
    ("memory_mb", None), ("memory_limit_mb", None), ("vcpus", None), ("checkin_rate_per_second", None),
    ("plan.rate.per_second", "agents"),
])
def test_non_finite_numbers_are_refused_naming_field_and_value(field, plan_, number):
    if plan_ is None:
        raw = dict(BASE, **{field: number})
    else:
        raw = {"memory_mb": 8192}
        plan_ = plan.build_plan({"agents": 20_000})
        plan_["rate"]["per_second"] = number
    error = refusal(raw, plan_)
    assert error.field == field
    assert repr(number) == repr(error.value)


@pytest.mark.parametrize(("raw", "plan_", "field", "words"), [
    (["memory_mb", 8192], None, "inputs", "mapping"),
    ("memory_mb=8192", None, "inputs", "mapping"),
    ({"memory_mb": 8192}, "fleet_plan", "plan", "split plan mapping"),
    ({"memory_mb": 8192}, {}, "plan.rate", "is missing"),
    ({"memory_mb": 8192}, {"rate": {"per_second": 10}}, "plan.tiers", "is missing"),
    ({"memory_mb": 8192}, {"rate": {"per_second": "x"}}, "plan.rate.per_second", "number"),
    ({"memory_mb": 8192, "shard": 7}, "agents", "shard", "is not a shard of the plan (it has 1)"),
])
def test_bad_inputs_and_plans_are_refused(raw, plan_, field, words):
    if plan_ == "agents":
        plan_ = plan.build_plan({"agents": 20_000})
    error = refusal(raw, plan_)
    assert error.field == field
    assert words in error.reason
    assert "(got " in str(error)


def test_inputs_given_win_over_the_plan_and_a_shard_is_ignored_with_a_rate():
    fleet_plan = plan.build_plan({"agents": 20_000})
    result = tuning.mysql_tuning({"memory_mb": 8192, "checkin_rate_per_second": 0, "shard": 1}, fleet_plan)
    assert values(result)["innodb_log_file_size"] == 256 * MIB


def test_input_fields_table_is_consistent():
    for name, (kind, default, low, high) in tuning.INPUT_FIELDS.items():
        assert kind in (int, float, str, bool) or isinstance(kind, tuple), name
        if isinstance(kind, tuple):
            assert default in kind, name
        if low is not None and high is not None:
            assert low <= high, name
    assert math.isclose(tuning.POOL_SHARE, 0.75)
