# Copyright: fleetscale.split contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Split-sizing filters: thin wrappers over the capacity model in module_utils.

Documentation of each filter lives in its sidecar YAML file (checkin_rate.yml, ...).
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.fleetscale.split.plugins.module_utils import placement, plan, rate, spec
from ansible_collections.fleetscale.split.plugins.module_utils.errors import PlanError


def _refuse(name, ex):
    return AnsibleFilterError(ex.describe(source="fleetscale.split.%s" % name))


def checkin_rate(agents, checkin_ratio=0.30, poll_interval=None):
    """Check-ins per minute, second, day and month of an agent fleet."""
    try:
        return rate.checkin_rate(agents, checkin_ratio, poll_interval)
    except PlanError as ex:
        raise _refuse("checkin_rate", ex) from ex


def split_plan(fleet_spec, existing=None, rebalance=False):
    """Every tier of a 3-way split sized from a fleet spec (agents or tenants, model)."""
    if not isinstance(rebalance, bool):
        raise AnsibleFilterError("fleetscale.split.split_plan: field 'rebalance': must be true or false (got %r)"
                                 % (rebalance,))
    try:
        return plan.build_plan(fleet_spec, existing, rebalance)
    except PlanError as ex:
        raise _refuse("split_plan", ex) from ex


def shard_tenants(tenants, agents_per_db=50000, existing=None, rebalance=False):
    """Tenants placed on database shards, largest first onto the least-loaded shard."""
    if not isinstance(rebalance, bool):
        raise AnsibleFilterError("fleetscale.split.shard_tenants: field 'rebalance': must be true or false (got %r)"
                                 % (rebalance,))
    try:
        checked = spec.check_tenants(tenants)
        return placement.place_tenants(checked, agents_per_db, existing, rebalance)
    except PlanError as ex:
        raise _refuse("shard_tenants", ex) from ex


class FilterModule:
    """fleetscale.split sizing filters."""

    def filters(self):
        return {
            "checkin_rate": checkin_rate,
            "split_plan": split_plan,
            "shard_tenants": shard_tenants,
        }
