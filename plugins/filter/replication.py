# Copyright: fleetscale.split contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Database replication filters: thin wrappers over module_utils/replication.py.

Documentation of each filter lives in its sidecar YAML file (database_shard_state.yml, database_member_states.yml,
database_most_advanced.yml, database_replication_health.yml).
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.fleetscale.split.plugins.module_utils import replication
from ansible_collections.fleetscale.split.plugins.module_utils.errors import PlanError


def database_shard_state(members, shard, planned_primary):
    """The shard's primary and what its other nodes need, from each node's own state."""
    try:
        return replication.shard_state(shard, members, planned_primary)
    except PlanError as ex:
        raise AnsibleFilterError(ex.describe(source="fleetscale.split.database_shard_state")) from ex


def database_member_states(results, was_writable=None):
    """Each node's status for database_shard_state, from the loop of one state query per node."""
    try:
        return replication.member_states(results, was_writable or ())
    except PlanError as ex:
        raise AnsibleFilterError(ex.describe(source="fleetscale.split.database_member_states")) from ex


def database_most_advanced(candidates, shard):
    """The replica to promote: the one at or past every other's GTID position."""
    try:
        return replication.most_advanced(shard, candidates)
    except PlanError as ex:
        raise AnsibleFilterError(ex.describe(source="fleetscale.split.database_most_advanced")) from ex


def database_replication_health(state, name, semi_sync_timeout_ms):
    """What may lose an acknowledged check-in on this node of a replicated shard, and a one-line summary."""
    try:
        return replication.replication_health(name, state, semi_sync_timeout_ms)
    except PlanError as ex:
        raise AnsibleFilterError(ex.describe(source="fleetscale.split.database_replication_health")) from ex


class FilterModule:
    """fleetscale.split database replication filters."""

    def filters(self):
        return {"database_shard_state": database_shard_state, "database_member_states": database_member_states,
                "database_most_advanced": database_most_advanced,
                "database_replication_health": database_replication_health}
