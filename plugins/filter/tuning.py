# Copyright: fleetscale.split contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Database tuning filter: a thin wrapper over module_utils/tuning.py.

Its documentation lives in the sidecar file mysql_tuning.yml.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.fleetscale.split.plugins.module_utils import tuning
from ansible_collections.fleetscale.split.plugins.module_utils.errors import PlanError


def mysql_tuning(inputs, plan=None):
    """MariaDB / MySQL server variables sized from usable memory, disk and the split plan."""
    try:
        return tuning.mysql_tuning(inputs, plan)
    except PlanError as ex:
        raise AnsibleFilterError(ex.describe(source="fleetscale.split.mysql_tuning")) from ex


class FilterModule:
    """fleetscale.split database tuning filters."""

    def filters(self):
        return {"mysql_tuning": mysql_tuning}
