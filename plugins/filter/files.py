# Copyright: fleetscale.split contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""File filters of the roles' install parts.

Documentation of each filter lives in its sidecar YAML file (installed_checksums.yml).
"""

from __future__ import annotations

import os

from ansible.errors import AnsibleFilterError


def installed_checksums(found, owner="root", group="root", mode="0644"):
    """File name -> checksum of the files of an ansible.builtin.find result that have the wanted owner,
    group and mode: what a copy would leave as it is."""
    if found is None:
        return {}
    files = found.get("files") if isinstance(found, dict) else None
    if not isinstance(files, list):
        raise AnsibleFilterError("fleetscale.split.installed_checksums: field 'files': must be the result of "
                                 "ansible.builtin.find with get_checksum (got %r)" % (found,))
    checksums = {}
    for entry in files:
        if not isinstance(entry, dict) or "path" not in entry:
            raise AnsibleFilterError("fleetscale.split.installed_checksums: field 'files': each entry needs a path "
                                     "(got %r)" % (entry,))
        if entry.get("pw_name") == owner and entry.get("gr_name") == group and entry.get("mode") == mode \
                and entry.get("checksum"):
            checksums[os.path.basename(entry["path"])] = entry["checksum"]
    return checksums


class FilterModule:
    """fleetscale.split file filters."""

    def filters(self):
        return {"installed_checksums": installed_checksums}
