# Copyright: fleetscale.split contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: fleet
version_added: "1.0.0"
author: fleetscale.split developers (@fleetscale)
short_description: Build a 3-way split inventory from a short fleet spec
description:
  - Reads a fleet spec (a YAML file whose name ends in C(fleet.yml) or C(fleet.yaml)), sizes every tier with
    the collection's capacity model (the one behind P(fleetscale.split.split_plan#filter)) and adds the
    planned hosts with their groups and variables.
  - "Groups: C(proxy), C(web) (children C(web_agent) and C(web_user)), C(app), C(database) (children
    C(db_shard_N))."
  - "Host variables: C(fleet_role), C(fleet_index), C(fleet_address), and where they apply
    C(fleet_capacity_rps), C(fleet_planned_rps), C(fleet_utilisation), C(fleet_app_role) (active or standby),
    C(fleet_shard), C(fleet_tenants), C(fleet_shard_agents), C(fleet_database_role) (the planned primary or
    replica), C(fleet_database_primary) (the shard's planned primary) and C(fleet_database_server_id). The
    whole plan is the variable named by O(plan_var) on C(all); each of its C(shards) lists its C(members),
    C(host) (planned primary), C(writer_address) and C(address) (what clients connect to)."
  - Names and addresses are stable, derived from each node's index in its tier, so growing a spec only adds
    hosts.
  - A bad topology is refused before anything runs, with the file, the field and the value.
extends_documentation_fragment:
  - ansible.builtin.constructed
options:
  plugin:
    description: The name of this plugin; it must be C(fleetscale.split.fleet).
    required: true
    type: str
    choices: ["fleetscale.split.fleet"]
  agents:
    description: Number of agents. Give this or O(tenants).
    type: int
  tenant_count:
    description: With O(agents) only, the number of equal tenants C(tenant-001), ... to plan.
    type: int
  tenants:
    description:
      - The tenants, each with C(name), C(agents), optional C(weight), C(dedicated) and C(shard) (a pin to a
        shard number, to keep an existing placement).
    type: list
    elements: dict
  model:
    description:
      - Capacity model parameters (see P(fleetscale.split.split_plan#filter) for every key and its default).
    type: dict
    default: {}
  measurements_file:
    description:
      - A YAML file with measured model parameters under a C(model) key (for example
        C(web_agent_capacity_rps) written by C(playbooks/capacity.yml)). They override O(model).
      - Relative to the spec's directory and under it, or an absolute path; a regular file of at most 4 MiB. A
        missing file is not an error; the spec's values are used.
    type: str
  naming:
    description:
      - Host name pattern per tier, containing C({index}), for example C(web-{index:02d}).
      - "The database pattern also contains C({shard}) (default C(db-{shard:02d}-{index:02d})): node 1 of a
        shard is its planned primary, the next ones its replicas."
    type: dict
    default: {}
  network:
    description:
      - C(subnet) (CIDR) and C(first_address), a mapping of tier to the first address of that tier. The node
        with index N gets the tier's first address plus N - 1.
      - The database tier gives each shard a block of 32 addresses from its first address on (shard S starts
        at first + 32 (S - 1)). The block's first address is the shard's writer address, held by the writable
        primary (the web and app tiers connect to it); node N of the shard gets the block's address N.
      - C(writer_addresses) maps shard numbers to the writer address of each shard of explicit database hosts
        (C(hosts.database)), inside C(subnet) and used by no host; such a shard can then switch over and have
        its nodes replaced like a generated one.
    type: dict
  hosts:
    description:
      - Explicit hosts for a tier, a list of C(name) and C(address). The list is the tier and must hold at least
        the planned number of nodes.
      - Database hosts also take C(shard), C(role) (C(primary) or C(replica); a shard's only host is its
        primary) and, on a replica, C(replica_of) (its shard's primary). Each shard needs exactly one primary
        and C(model.database_replicas) replicas. Without a writer address (C(network.writer_addresses)), clients
        reach a shard's primary by its own address.
    type: dict
    default: {}
  retired:
    description:
      - "Node indices of generated tiers (proxy, web_agent, web_user, app) that were replaced and stay out of use,
        for example C({web_agent: [1]}): that tier's nodes then start at index 2, and a replacement takes the next
        free index. The plan keeps the naming and addressing in C(layout) so new nodes follow the same rule."
      - "Database nodes are numbered within their shard: C(database) maps shard numbers to indices, for example
        C({database: {1: [1]}}) (shard 1's first node is gone; the shard's nodes start at its index 2)."
    type: dict
    default: {}
  replacements_file:
    description:
      - "A YAML file written by C(playbooks/rolling_replace.yml) that records replacements: C(retired) (merged
        with O(retired)), C(adding) (new nodes of a replacement in progress, in their tier on top of the plan)
        and C(hosts) (replaces O(hosts) for the tiers it lists, for fleets of explicit hosts)."
      - Relative to the spec's directory and under it, or an absolute path; a regular file of at most 4 MiB. A
        missing file means no replacement yet.
    type: str
  plan_var:
    description:
      - Name of the variable on C(all) that holds the whole plan.
      - Not a name Ansible reserves or sets (C(ansible_*), play keywords, magic variables such as C(hostvars)) nor
        a host variable this plugin sets.
    type: str
    default: fleet_plan
"""

EXAMPLES = r"""
# lab.fleet.yml: the 20,000-agent lab
plugin: fleetscale.split.fleet
agents: 20000
tenant_count: 4
network:
  subnet: 172.28.0.0/16
  first_address:
    proxy: 172.28.1.10
    web_agent: 172.28.2.10
    web_user: 172.28.3.10
    app: 172.28.4.10
    database: 172.28.5.10
---
# A multi-tenant fleet with existing hosts, tuned model and extra groups
plugin: fleetscale.split.fleet
tenants:
  - {name: acme, agents: 42000, shard: 1}
  - {name: globex, agents: 38000}
model:
  checkin_ratio: 0.33
  web_agent_capacity_rps: 950
hosts:
  proxy:
    - {name: lb1, address: 10.20.0.11}
    - {name: lb2, address: 10.20.0.12}
keyed_groups:
  - key: fleet_role
    prefix: role
"""

import os
import re
import stat

import yaml
from ansible import constants as C
from ansible.errors import AnsibleError, AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin, Constructable
from ansible.vars.reserved import is_reserved_name

from ansible_collections.fleetscale.split.plugins.module_utils import fleet, topology
from ansible_collections.fleetscale.split.plugins.module_utils.errors import PlanError, short_repr

SPEC_OPTIONS = ("agents", "tenant_count", "tenants", "model")
PLAN_VAR_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Variables Ansible sets on every host (hostvars, groups, inventory_hostname...): a plan stored
# under one of these names would replace it.
MAGIC_VARIABLES = frozenset(C.INTERNAL_STATIC_VARS) | frozenset(C.MAGIC_VARIABLE_MAPPING)
# A replacements or measurements file is a few KiB even for a large fleet of explicit hosts.
MAX_SIDE_FILE_BYTES = 4 * 1024 * 1024


class InventoryModule(BaseInventoryPlugin, Constructable):
    """Fleet spec to inventory."""

    NAME = "fleetscale.split.fleet"

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith(("fleet.yml", "fleet.yaml"))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        raw = self._raw_spec(path)
        try:
            config = self._read_config_data(path)
        except AnsibleParserError:
            raise
        except AnsibleError as ex:
            raise AnsibleParserError("%s: %s" % (path, ex)) from ex
        allowed = set(self._options) | {"plugin"}
        for key in config:
            if key not in allowed:
                raise AnsibleParserError("%s: field '%s': unknown key; allowed: %s (got %s)"
                                         % (path, key, ", ".join(sorted(allowed)), short_repr(config[key])))
        plan_var = self._check_plan_var(path)
        # The spec's own values, not the typed options: option typing would turn `agents: true`
        # into 1 and `agents: "2e4"` into a number before the capacity model could refuse them.
        spec = {key: raw[key] for key in SPEC_OPTIONS if raw.get(key) not in (None, {})}
        hosts, retired, adding = self._merge_replacements(path, self.get_option("hosts"), self.get_option("retired"))
        try:
            spec["model"] = self._merge_measurements(path, spec.get("model") or {})
            built = fleet.build_fleet(spec, naming=self.get_option("naming"), network=self.get_option("network"),
                                      hosts=hosts, retired=retired, adding=adding)
        except PlanError as ex:
            raise AnsibleParserError(ex.describe(source=path)) from ex
        clash = sorted({key for record in built["hosts"] for key in record["vars"]} & {plan_var})
        if clash:
            raise AnsibleParserError("%s: field 'plan_var': names a host variable this plugin sets (got %s)"
                                     % (path, short_repr(plan_var)))
        self._populate(built, path, plan_var)

    def _raw_spec(self, path):
        """The spec as written, refused with the file's name when it is empty or not a mapping."""
        try:
            raw = self.loader.load_from_file(path, cache="none")
        except AnsibleError as ex:
            raise AnsibleParserError("%s: %s" % (path, ex)) from ex
        if raw is None or raw == {}:
            raise AnsibleParserError("%s: the fleet spec is empty: give at least `plugin: %s` and agents (a count)"
                                     " or tenants (a list)" % (path, self.NAME))
        if not isinstance(raw, dict):
            raise AnsibleParserError("%s: a fleet spec must be a mapping of options (got a %s)"
                                     % (path, type(raw).__name__))
        return raw

    def _check_plan_var(self, path):
        """The plan's variable name: an identifier that shadows no Ansible or connection variable."""
        name = self.get_option("plan_var")
        if not isinstance(name, str) or not PLAN_VAR_RE.fullmatch(name):
            raise AnsibleParserError("%s: field 'plan_var': must be a variable name (letters, digits and '_', "
                                     "not starting with a digit) (got %s)" % (path, short_repr(name)))
        if name.startswith("ansible_") or is_reserved_name(name) or name in MAGIC_VARIABLES:
            raise AnsibleParserError("%s: field 'plan_var': must not be a name Ansible reserves or sets itself "
                                     "(ansible_*, play keywords, magic variables such as hostvars or groups) (got %s)"
                                     % (path, short_repr(name)))
        return name

    def _side_file(self, path, option, allowed):
        """(file, mapping) of a YAML file named by `option` beside the spec; (None, {}) when absent.

        A relative name must stay under the spec's directory (an absolute one is the operator's
        explicit choice); only a regular file is read, so a FIFO or a device cannot hang the run,
        and its content is never repeated in an error.
        """
        name = self.get_option(option)
        if not name:
            return None, {}
        base = os.path.dirname(os.path.abspath(path))
        full = name if os.path.isabs(name) else os.path.join(base, name)
        if not os.path.isabs(name):
            inside = os.path.realpath(full)
            if os.path.commonpath([inside, os.path.realpath(base)]) != os.path.realpath(base):
                raise AnsibleParserError("%s: field '%s': a relative path must stay under the spec's directory %s; "
                                         "give an absolute path to read a file elsewhere (got %s)"
                                         % (path, option, base, short_repr(name)))
        try:
            found = os.stat(full)
        except FileNotFoundError:
            return None, {}
        except OSError as ex:
            raise AnsibleParserError("%s: field '%s': cannot read %s: %s" % (path, option, full, ex.strerror)) from ex
        if not stat.S_ISREG(found.st_mode):
            raise AnsibleParserError("%s: field '%s': %s is not a regular file" % (path, option, full))
        if found.st_size > MAX_SIDE_FILE_BYTES:
            raise AnsibleParserError("%s: field '%s': %s is %d bytes, more than the %d a record of this kind can be"
                                     % (path, option, full, found.st_size, MAX_SIDE_FILE_BYTES))
        try:
            with open(full, "rb") as handle:
                data = yaml.safe_load(handle.read(MAX_SIDE_FILE_BYTES + 1))
        except yaml.YAMLError as ex:
            mark = getattr(ex, "problem_mark", None)
            where = " at line %d, column %d" % (mark.line + 1, mark.column + 1) if mark else ""
            # Not chained: Ansible prints a cause's message, and the YAML error quotes the file.
            raise AnsibleParserError("%s: field '%s': %s is not valid YAML%s" % (path, option, full, where)) from None
        except (OSError, UnicodeDecodeError) as ex:
            raise AnsibleParserError("%s: field '%s': cannot read %s: %s"
                                     % (path, option, full, getattr(ex, "strerror", None) or type(ex).__name__)) from ex
        if data is None:
            return full, {}
        if not isinstance(data, dict):
            raise AnsibleParserError("%s: must be a mapping with %s (got a %s)"
                                     % (full, " and ".join(allowed), type(data).__name__))
        for key in data:
            if key not in allowed:
                raise AnsibleParserError("%s: field '%s': unknown key; allowed: %s"
                                         % (full, str(key)[:64], ", ".join(allowed)))
        return full, data

    def _merge_replacements(self, path, hosts, retired):
        """The spec's hosts and retired indices with the replacements file's record on top."""
        full, data = self._side_file(path, "replacements_file", ("retired", "adding", "hosts"))
        if full is None:
            return hosts, retired, {}
        merged_hosts = dict(hosts or {})
        value = data.get("hosts") or {}
        if not isinstance(value, dict):
            raise AnsibleParserError("%s: field 'hosts': must be a mapping of tiers (got a %s)"
                                     % (full, type(value).__name__))
        merged_hosts.update(value)
        # Each record checked where it was written: the spec's, then the replacements file's on top.
        try:
            spec_retired = topology.merge_retired(retired, None)
        except PlanError as ex:
            raise AnsibleParserError(ex.describe(source=path)) from ex
        try:
            merged_retired = topology.merge_retired(spec_retired, data.get("retired"))
        except PlanError as ex:
            raise AnsibleParserError(ex.describe(source=full)) from ex
        adding = data.get("adding") or {}
        if not isinstance(adding, dict):
            raise AnsibleParserError("%s: field 'adding': must be a mapping of tiers (got a %s)"
                                     % (full, type(adding).__name__))
        return merged_hosts, merged_retired, adding

    def _merge_measurements(self, path, model):
        """Overlay measured model parameters (e.g. from capacity.yml) on the spec's model."""
        full, data = self._side_file(path, "measurements_file", ("model",))
        if full is None:
            return model
        if not isinstance(data.get("model", {}), dict):
            raise AnsibleParserError("%s: field 'model': must be a mapping (got a %s)"
                                     % (full, type(data["model"]).__name__))
        if not isinstance(model, dict):
            raise AnsibleParserError("%s: field 'model': must be a mapping (got %s)" % (path, short_repr(model)))
        merged = dict(model)
        merged.update(data.get("model") or {})
        return merged

    def _populate(self, built, path, plan_var):
        inventory = self.inventory
        for child, parent in sorted(built["parents"].items()):
            inventory.add_group(parent)
            inventory.add_group(child)
            inventory.add_child(parent, child)
        for group in ("proxy", "web", "web_agent", "web_user", "app", "database"):
            inventory.add_group(group)
        inventory.set_variable("all", plan_var, built["plan"])
        strict = self.get_option("strict")
        for record in built["hosts"]:
            name = record["name"]
            for group in record["groups"]:
                inventory.add_host(name, group=group)
            for key, value in record["vars"].items():
                inventory.set_variable(name, key, value)
            composite = dict(record["vars"])
            composite[plan_var] = built["plan"]
            try:
                self._set_composite_vars(self.get_option("compose"), composite, name, strict=strict)
                self._add_host_to_composed_groups(self.get_option("groups"), composite, name, strict=strict)
                self._add_host_to_keyed_groups(self.get_option("keyed_groups"), composite, name, strict=strict)
            except AnsibleError as ex:
                raise AnsibleParserError("%s: host %s: %s" % (path, name, ex)) from ex
        for warning in built["plan"]["warnings"]:
            self.display.warning("%s: %s" % (path, warning))
