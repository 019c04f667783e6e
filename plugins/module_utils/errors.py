# Copyright: fleetscale.split contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one error type of the capacity model.

Every rule that refuses input raises PlanError with the dotted field path and the
offending value, so filters and the inventory plugin can name both (and the file)
without parsing messages.
"""

from __future__ import annotations

import reprlib

# An error names the value it refuses, but a value can be anything a spec holds: a long
# string, a whole list, or a few bytes of YAML aliases that expand to millions of items.
# reprlib never builds the whole repr, and the result is cut to this many characters.
MAX_VALUE_CHARS = 120
_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxdict = _REPR.maxlist = _REPR.maxtuple = _REPR.maxset = _REPR.maxfrozenset = _REPR.maxdeque = 6
_REPR.maxlong = 40
_REPR.maxstring = _REPR.maxother = 80


def short_repr(value, limit=MAX_VALUE_CHARS):
    """A repr of value of at most about `limit` characters, '...' where it was cut."""
    try:
        text = _REPR.repr(value)
    except ValueError:
        # Python refuses to print an int of more than 4,300 digits.
        text = "an integer of %d bits" % value.bit_length() if isinstance(value, int) else type(value).__name__
    return text if len(text) <= limit else text[:limit] + "..."


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
        return "%sfield '%s': %s (got %s)" % (prefix, self.field, self.reason, short_repr(self.value))
