# Copyright: fleetscale.split contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rolling replacement filters: thin wrappers over module_utils/rolling.py.

Documentation of each filter lives in its sidecar YAML file (rolling_hosts.yml, rolling_batches.yml,
rolling_play_hosts.yml, rolling_record.yml).
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.fleetscale.split.plugins.module_utils import rolling
from ansible_collections.fleetscale.split.plugins.module_utils.errors import PlanError


def _refuse(name, ex):
    return AnsibleFilterError(ex.describe(source="fleetscale.split.%s" % name))


def rolling_hosts(targets, groups, skip=None):
    """The hosts rolling_targets names, in order, each once."""
    try:
        return rolling.expand_targets(targets, groups, skip or ())
    except PlanError as ex:
        raise _refuse("rolling_hosts", ex) from ex


def rolling_batches(olds, groups, fleet_plan, indices=None, surge=1, provider="lab", pool=None, primaries=None):
    """The batches of (old, new) pairs that replace `olds`."""
    try:
        return rolling.plan_batches(olds, groups, indices or {}, fleet_plan, surge, provider, pool or [],
                                    primaries or [])
    except PlanError as ex:
        raise _refuse("rolling_batches", ex) from ex


def rolling_play_hosts(batches, known=None):
    """The batch plays' hosts, a controller step host before each batch's new nodes, and their batch sizes."""
    try:
        return rolling.play_hosts(batches, known or ())
    except PlanError as ex:
        raise _refuse("rolling_play_hosts", ex) from ex


def rolling_record(state, batch, step, explicit=False, listed=None):
    """The replacements record after one step of a batch."""
    try:
        return rolling.record_step(state, batch, step, explicit, listed or [])
    except PlanError as ex:
        raise _refuse("rolling_record", ex) from ex


class FilterModule:
    """fleetscale.split rolling replacement filters."""

    def filters(self):
        return {"rolling_hosts": rolling_hosts, "rolling_batches": rolling_batches,
                "rolling_play_hosts": rolling_play_hosts, "rolling_record": rolling_record}
