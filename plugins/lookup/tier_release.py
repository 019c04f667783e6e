# Copyright: fleetscale.split contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The release of each tier image: a thin wrapper over module_utils/images.py."""

from __future__ import annotations

DOCUMENTATION = r"""
name: tier_release
version_added: "1.1.0"
author: fleetscale.split developers (@fleetscale)
short_description: Release tag of a baked tier image, from its base image and its role's install inputs
description:
  - Returns, for each tier given, the release of its baked image as C(<suite>-<12 hex digits>), a digest of the
    tier, the Debian release, the base image's id (which carries the package snapshot) and the content the role's
    install part reads (C(defaults/), C(files/), C(vars/), C(tasks/install.yml), C(tasks/service_user.yml)).
  - The same inputs always give the same release, so C(playbooks/bake.yml) reuses an image whose tag exists and
    bakes again only when the base image or the role's install inputs changed.
  - The bake playbook (C(playbooks/bake.yml)) is part of the release too, since it decides what else an image
    holds.
  - Reads the roles of this collection on the controller; caches, compiled Python and editor files are left out.
options:
  _terms:
    description: Tiers, each one of C(proxy), C(web), C(app) or C(database).
    type: list
    elements: str
    required: true
  suite:
    description: Debian release of the base image, for example C(bookworm) or C(trixie).
    type: str
    required: true
  base_image_id:
    description: Docker id of the base node image (C(sha256:) and 64 hex digits).
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Release of the web tier's image
  ansible.builtin.debug:
    msg: "{{ lookup('fleetscale.split.tier_release', 'web', suite='bookworm', base_image_id=base.images[0].Id) }}"
"""

RETURN = r"""
_raw:
  description: One release per tier given, in the same order.
  type: list
  elements: str
"""

import os

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

from ansible_collections.fleetscale.split.plugins.module_utils import images
from ansible_collections.fleetscale.split.plugins.module_utils.errors import PlanError

_COLLECTION = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
_ROLES_DIR = os.path.join(_COLLECTION, "roles")
# The playbook that bakes: what it records and clears in an image is part of the image.
_RECIPE = (os.path.join(_COLLECTION, "playbooks", "bake.yml"),)


class LookupModule(LookupBase):
    """fleetscale.split.tier_release"""

    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        suite = self.get_option("suite")
        base_image_id = self.get_option("base_image_id")
        try:
            return [images.tier_release(tier, suite, base_image_id, _ROLES_DIR, _RECIPE) for tier in terms]
        except PlanError as ex:
            raise AnsibleLookupError(ex.describe(source="fleetscale.split.tier_release")) from ex
