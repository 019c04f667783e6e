# Copyright: fleetscale.split contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one error type of the capacity model.

Every rule that refuses input raises PlanError with the dotted field path and the
offending value, so filters and the inventory plugin can name both (and the file)
without parsing messages.
"""

from __future__ import annotations


class PlanError(ValueError):
    """A spec value the capacity model refuses."""

    def __init__(self, field, value, reason):
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(self.describe())

    def describe(self, source=None):
        """Return 'SOURCE: field F: REASON (got V)'; SOURCE is a file or filter name."""
        prefix = "%s: " % source if source else ""
        return "%sfield '%s': %s (got %r)" % (prefix, self.field, self.reason, self.value)
