"""bench/mysql_tuning.py: the configurations it compares and how it reads and reports sysbench."""

import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
_SPEC = importlib.util.spec_from_file_location("mysql_tuning_bench", ROOT / "bench" / "mysql_tuning.py")
bench = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bench)

MIB = 1024 * 1024
GIB = 1024 * MIB

SYSBENCH_OUTPUT = """
SQL statistics:
    transactions:                        34512  (1150.21 per sec.)
    queries:                             172560 (5751.05 per sec.)
    ignored errors:                      0      (0.00 per sec.)
Latency (ms):
         min:                                    1.21
         avg:                                   13.90
         max:                                  210.33
         95th percentile:                       40.37
"""


@pytest.mark.parametrize(("memory_mb", "vcpus", "pool", "redo"), [
    (512, 2, 128 * MIB, 1 * GIB),        # under 1 GiB: the 128M default
    (1024, 2, 512 * MIB, 1 * GIB),       # 1 to 4 GiB: half
    (2048, 2, 1 * GIB, 1 * GIB),
    (4096, 4, 2 * GIB, 2 * GIB),
    (8192, 8, 6 * GIB, 4 * GIB),         # above 4 GiB: 75 %
    (65536, 64, 48 * GIB, 16 * GIB),     # the redo log capacity stops at 16 GiB
])
def test_dedicated_server_formula_of_the_mysql_manual(memory_mb, vcpus, pool, redo):
    assert bench.dedicated_server(memory_mb, vcpus) == {"innodb_buffer_pool_size": pool, "innodb_log_file_size": redo}


def test_tuned_configuration_is_sized_for_the_container_limit_not_the_machine():
    configs = bench.configurations(memory_mb=24105, limit_mb=2048, vcpus=2, version="10.11.18", data_size_mb=1769,
                                   agents=1_000_000)
    assert list(configs) == ["debian", "dedicated", "tuned", "tuned-relaxed"]
    assert configs["debian"][1] == {}
    assert configs["dedicated"][1] == {"innodb_buffer_pool_size": "1G", "innodb_log_file_size": "1G"}
    tuned, relaxed = configs["tuned"][1], configs["tuned-relaxed"][1]
    assert tuned["innodb_buffer_pool_size"] == "1280M"
    assert tuned["innodb_flush_log_at_trx_commit"] == 1 and tuned["sync_binlog"] == 1
    assert relaxed["innodb_flush_log_at_trx_commit"] == 2 and relaxed["sync_binlog"] == 0


def test_the_data_set_is_planned_on_one_database():
    plan = bench.fleet_plan.build_plan(bench.fleet_spec(1_000_000))
    assert plan["tiers"]["database"]["shards"] == 1
    assert sum(tenant["agents"] for tenant in plan["tenants"]) == 1_000_000


def test_render_puts_the_tuning_over_the_strict_base_and_drops_none():
    text = bench.render({"innodb_buffer_pool_size": "1G", "log_bin": None, "sync_binlog": 0})
    lines = text.splitlines()
    assert lines[0] == "[mysqld]"
    assert "innodb_buffer_pool_size = 1G" in lines
    assert "sync_binlog = 0" in lines and "sync_binlog = 1" not in lines
    assert not any(line.startswith("log_bin") for line in lines)
    assert "innodb_flush_log_at_trx_commit = 1" in lines


@pytest.mark.parametrize(("variables", "size"), [
    ({}, 128 * MIB), ({"innodb_buffer_pool_size": "1280M"}, 1280 * MIB), ({"innodb_buffer_pool_size": "1G"}, GIB),
    ({"innodb_buffer_pool_size": 603979776}, 603979776),
])
def test_expected_pool_reads_my_cnf_sizes(variables, size):
    assert bench.expected_pool(variables) == size


def test_parse_sysbench_reads_rate_p95_and_errors():
    assert bench.parse_sysbench(SYSBENCH_OUTPUT) == (1150.21, 40.37, 0)


def test_parse_sysbench_refuses_a_report_without_figures():
    with pytest.raises(RuntimeError, match="no transaction rate"):
        bench.parse_sysbench("FATAL: error 2013: Lost connection to server during query")


def test_io_per_transaction_divides_the_counters_by_the_commits():
    before = {"Com_commit": 1000, "Innodb_buffer_pool_reads": 50, "Innodb_buffer_pool_pages_flushed": 0,
              "Innodb_os_log_written": 10_000}
    after = {"Com_commit": 3000, "Innodb_buffer_pool_reads": 1650, "Innodb_buffer_pool_pages_flushed": 1000,
             "Innodb_os_log_written": 1_270_000}
    assert bench.io_per_transaction(before, after) == {"reads": 0.8, "page_writes": 0.5, "redo_bytes": 630.0}


def _run(config, tps, p95, reads):
    return {"config": config, "tps": tps, "p95_ms": p95, "reads": reads, "page_writes": 0.0, "redo_bytes": 630.0}


def test_summary_ratios_and_table():
    runs = [_run("debian", 900.0, 40.0, 0.8), _run("dedicated", 1200.0, 30.0, 0.1),
            _run("debian", 1100.0, 44.0, 0.7), _run("dedicated", 1000.0, 34.0, 0.1)]
    summary = bench.summarise(runs)
    assert summary["debian"]["tps"] == 1000.0 and summary["debian"]["p95_ms"] == 42.0
    assert summary["dedicated"]["rounds"] == [(1200.0, 30.0), (1000.0, 34.0)]
    by_debian = bench.ratios(summary, "debian")
    assert by_debian["dedicated"]["tps"] == pytest.approx(1.1)
    assert by_debian["dedicated"]["p95"] == pytest.approx(32.0 / 42.0)
    text = bench.table(summary, {"debian": "Debian", "dedicated": "formula"})
    assert "| dedicated | 1100 | 32.0 | x1.10 | x0.76 | x1.00 | x1.00 | 0.10 | 0.00 | 630 |" in text
    assert "| debian | 1000 | 42.0 | x1.00 | x1.00 | x0.91 | x1.31 | 0.75 | 0.00 | 630 |" in text
