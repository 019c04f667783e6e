# Copyright: fleetscale.split contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Node filters for replacements: thin wrappers over module_utils/topology.py.

Documentation of each filter lives in its sidecar YAML file (next_nodes.yml).
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.fleetscale.split.plugins.module_utils import topology
from ansible_collections.fleetscale.split.plugins.module_utils.errors import PlanError


def next_nodes(fleet_plan, tier, count=1, taken=None, shard=None):
    """The next new nodes of a tier, named and addressed by the plan's own rule."""
    try:
        return topology.next_nodes(fleet_plan, tier, count, taken or (), shard)
    except PlanError as ex:
        raise AnsibleFilterError(ex.describe(source="fleetscale.split.next_nodes")) from ex


class FilterModule:
    """fleetscale.split node filters."""

    def filters(self):
        return {"next_nodes": next_nodes}
