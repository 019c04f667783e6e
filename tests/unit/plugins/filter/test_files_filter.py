"""installed_checksums: which installed files a copy would leave as they are."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.fleetscale.split.plugins.filter import files


def entry(name, owner="root", group="root", mode="0644", checksum="abc"):
    return {"path": f"/opt/pkg/{name}", "pw_name": owner, "gr_name": group, "mode": mode, "checksum": checksum}


def test_files_with_the_wanted_owner_group_and_mode_are_mapped_by_name():
    found = {"files": [entry("a.py", checksum="1"), entry("b.py", owner="www-data"), entry("c.py", mode="0666"),
                       entry("d.py", group="staff"), entry("e.py", checksum="2")]}
    assert files.installed_checksums(found) == {"a.py": "1", "e.py": "2"}
    assert files.installed_checksums(found, owner="www-data") == {"b.py": "abc"}


def test_nothing_installed_is_an_empty_mapping():
    assert files.installed_checksums(None) == {}
    assert files.installed_checksums({"files": []}) == {}


@pytest.mark.parametrize("found", [{"matched": 0}, "files", {"files": [{"mode": "0644"}]}])
def test_anything_but_a_find_result_is_refused(found):
    with pytest.raises(AnsibleFilterError, match=r"fleetscale\.split\.installed_checksums: field 'files'"):
        files.installed_checksums(found)


def test_the_filter_is_registered():
    assert files.FilterModule().filters() == {"installed_checksums": files.installed_checksums}
