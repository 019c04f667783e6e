"""molecule/default repeats the lab plan's hosts and images (molecule.yml cannot template): keep them in step."""

import pathlib

import yaml

from ansible_collections.fleetscale.split.plugins.module_utils import fleet

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_default_scenario_platforms_are_the_lab_plan_hosts():
    spec = yaml.safe_load((ROOT / "inventories" / "lab" / "lab.fleet.yml").read_text())
    built = fleet.build_fleet({k: spec[k] for k in ("agents", "tenant_count") if k in spec},
                              network=spec.get("network"))
    planned = {h["name"]: h["vars"]["fleet_address"] for h in built["hosts"]}
    scenario = yaml.safe_load((ROOT / "molecule" / "default" / "molecule.yml").read_text())
    platforms = {p["name"]: p["networks"][0]["ipv4_address"] for p in scenario["platforms"]}
    assert platforms == planned


def test_default_scenario_platforms_boot_their_tier_image():
    spec = yaml.safe_load((ROOT / "inventories" / "lab" / "lab.fleet.yml").read_text())
    built = fleet.build_fleet({k: spec[k] for k in ("agents", "tenant_count") if k in spec},
                              network=spec.get("network"))
    lab = yaml.safe_load((ROOT / "inventories" / "lab" / "group_vars" / "all" / "lab.yml").read_text())
    planned = {h["name"]: lab["lab_tier_images"][h["vars"]["fleet_role"]] for h in built["hosts"]}
    scenario = yaml.safe_load((ROOT / "molecule" / "default" / "molecule.yml").read_text())
    assert {p["name"]: p["image"] for p in scenario["platforms"]} == planned
