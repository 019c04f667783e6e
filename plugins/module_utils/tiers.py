# Copyright: fleetscale.split contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Node counts of one stateless tier from its load.

The rule (from the 3-way split stories): run each node at no more than the target
utilisation (add a server when one approaches half its limit), then add one node so
that losing any one leaves the rest at or under 100 % of their capacity.
"""

from __future__ import annotations

import math

# Loads are floats; a ratio a hair above a whole number from rounding is that number.
_EPSILON = 1e-9


def active_nodes(load_rps, capacity_rps, target_utilisation, minimum=1):
    """Nodes needed to carry load_rps with each at or under target utilisation."""
    needed = math.ceil(load_rps / (capacity_rps * target_utilisation) - _EPSILON)
    return max(minimum, needed)


def utilisation(load_rps, capacity_rps, nodes):
    """Share of capacity used when `nodes` nodes share the load evenly (None without nodes)."""
    if nodes <= 0:
        return None
    return round(load_rps / (capacity_rps * nodes), 6)


def size_tier(load_rps, capacity_rps, target_utilisation, redundancy=True, minimum=1):
    """Plan one stateless tier: active need, spare, utilisation at plan and after a loss."""
    active = active_nodes(load_rps, capacity_rps, target_utilisation, minimum)
    nodes = active + 1 if redundancy else active
    warnings = []
    after_loss = utilisation(load_rps, capacity_rps, nodes - 1)
    if not redundancy:
        if after_loss is None:
            warnings.append("redundancy is off: losing the only node stops this tier")
        else:
            warnings.append("redundancy is off: losing one node puts the rest at %.0f %% of capacity"
                            % (after_loss * 100))
    # The tier grows when the active share would pass the target: that is its headroom.
    headroom_rps = max(0.0, active * capacity_rps * target_utilisation - load_rps)
    return {
        "nodes": nodes,
        "active_needed": active,
        "spare": nodes - active,
        "capacity_rps": capacity_rps,
        "planned_rps": round(load_rps, 6),
        "per_node_rps": round(load_rps / nodes, 6),
        "utilisation": utilisation(load_rps, capacity_rps, nodes),
        "utilisation_after_loss": after_loss,
        "headroom_rps": round(headroom_rps, 6),
        "warnings": warnings,
    }
