"""playbooks/mysql_tune.yml and the database role check their inputs with the filter's own choices and floor."""

import pathlib

import yaml

from ansible_collections.fleetscale.split.plugins.module_utils import tuning

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _input_play_vars():
    plays = yaml.safe_load((ROOT / "playbooks" / "mysql_tune.yml").read_text())
    first = plays[0]
    assert first["hosts"] == "localhost", "the first play checks the inputs on the controller"
    return first["vars"]


def _role_options():
    specs = yaml.safe_load((ROOT / "roles" / "database" / "meta" / "argument_specs.yml").read_text())
    return specs["argument_specs"]["main"]["options"]


def test_playbook_checks_use_the_filter_choices_and_floor():
    checked = _input_play_vars()
    assert tuple(checked["mysql_tune_disk_classes"]) == tuning.DISK_CLASSES
    assert tuple(checked["mysql_tune_durability_profiles"]) == tuning.DURABILITY
    assert checked["mysql_tune_min_memory_mb"] == tuning.MIN_USABLE_MB


def test_role_argument_specs_use_the_filter_choices():
    options = _role_options()
    assert tuple(options["database_disk_class"]["choices"]) == tuning.DISK_CLASSES
    assert tuple(options["database_durability"]["choices"]) == tuning.DURABILITY


def test_role_defaults_are_valid_filter_choices():
    defaults = yaml.safe_load((ROOT / "roles" / "database" / "defaults" / "main.yml").read_text())
    assert defaults["database_disk_class"] in tuning.DISK_CLASSES
    assert defaults["database_durability"] in tuning.DURABILITY


def test_role_keeps_no_sizing_formula_of_its_own():
    """One formula: the role's old sizing variables are gone from defaults, specs, vars and templates."""
    retired = ("database_buffer_pool_ratio", "database_buffer_pool_max_mb", "database_innodb_log_file_size_mb",
               "database_innodb_flush_log_at_trx_commit", "database_sync_binlog", "database_max_connections",
               "__database_buffer_pool_mb", "__database_log_file_mb")
    role = ROOT / "roles" / "database"
    for path in [*role.rglob("*.yml"), *role.rglob("*.j2"), role / "README.md"]:
        text = path.read_text()
        found = [name for name in retired if name in text]
        assert not found, f"{path.relative_to(ROOT)} still uses {found}"
