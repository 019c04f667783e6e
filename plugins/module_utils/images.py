# Copyright: fleetscale.split contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The release of a tier image.

A tier image is the base node image with the install part of one role applied (playbooks/bake.yml).
Its release names what it holds: the base image (the Debian release and the package snapshot its
apt cache carries) and a digest of the role content the install part reads. The same inputs give
the same release, so a bake with nothing changed finds its image and builds nothing.
"""

from __future__ import annotations

import hashlib
import os
import re

from ansible_collections.fleetscale.split.plugins.module_utils.errors import PlanError

# The role whose install part each tier image carries.
TIER_ROLES = {"proxy": "proxy", "web": "web", "app": "app", "database": "database"}

# What a role's install part reads: its code and settings, and the task files of the install step.
# Everything else (templates, configuration tasks) is applied at converge and leaves the image alone.
INSTALL_INPUTS = ("defaults", "files", "vars", "tasks/install.yml", "tasks/service_user.yml")

# Never part of a role's content: what a local test run or an editor leaves behind.
_IGNORED = re.compile(r"(^|/)(__pycache__|\.pytest_cache)(/|$)|\.py[co]$|~$|\.swp$")

_DIGEST_LENGTH = 12


def _files(root, inputs):
    """Paths (relative to root, sorted) of the regular files under the inputs that exist."""
    found = []
    for entry in inputs:
        path = os.path.join(root, entry)
        if os.path.isfile(path):
            found.append(entry)
        elif os.path.isdir(path):
            for parent, dirs, names in os.walk(path):
                dirs.sort()
                for name in names:
                    relative = os.path.relpath(os.path.join(parent, name), root).replace(os.sep, "/")
                    if not _IGNORED.search(relative):
                        found.append(relative)
    return sorted(set(found))


def _add_file(digest, path, name):
    """One file into the digest: its name, executable bit, length and bytes."""
    with open(path, "rb") as handle:
        content = handle.read()
    executable = "x" if os.access(path, os.X_OK) else "-"
    digest.update(("%s\0%s\0%d\0" % (name, executable, len(content))).encode())
    digest.update(content)


def content_digest(root, inputs=INSTALL_INPUTS):
    """SHA-256 over the names (relative to root), executable bits and bytes of the files under root/inputs."""
    if not os.path.isdir(root):
        raise PlanError("role_path", root, "is not a directory")
    digest = hashlib.sha256()
    for relative in _files(root, inputs):
        _add_file(digest, os.path.join(root, relative), relative)
    return digest.hexdigest()


def tier_release(tier, suite, base_image_id, roles_dir, recipe=()):
    """The release of a tier image: '<suite>-<12 hex>' from the base image, the role's install inputs and
    the recipe (the files that bake it, such as playbooks/bake.yml)."""
    if tier not in TIER_ROLES:
        raise PlanError("tier", tier, "must be one of %s" % ", ".join(sorted(TIER_ROLES)))
    # fullmatch: with re.match, '$' would also accept a value ending in a newline.
    if not isinstance(suite, str) or not re.fullmatch(r"[a-z][a-z0-9]*", suite):
        raise PlanError("suite", suite, "must be a Debian release name such as bookworm or trixie")
    if not isinstance(base_image_id, str) or not re.fullmatch(r"sha256:[0-9a-f]{64}", base_image_id):
        raise PlanError("base_image_id", base_image_id, "must be a Docker image id (sha256:<64 hex>)")
    role = content_digest(os.path.join(roles_dir, TIER_ROLES[tier]))
    recipe_digest = hashlib.sha256()
    for path in recipe:
        if not os.path.isfile(path):
            raise PlanError("recipe", path, "is not a file")
        # By its name only: the same recipe read through another path is the same recipe.
        _add_file(recipe_digest, path, os.path.basename(path))
    baked_by = recipe_digest.hexdigest() if recipe else ""
    combined = hashlib.sha256(("%s\0%s\0%s\0%s\0%s" % (tier, suite, base_image_id, role, baked_by)).encode()
                              ).hexdigest()
    return "%s-%s" % (suite, combined[:_DIGEST_LENGTH])
