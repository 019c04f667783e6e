# Copyright: fleetscale.split contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validation and defaults of a fleet spec: the input every planner function takes.

A spec is a plain mapping (from YAML or from a play):

    agents: 20000            # or tenants: [...]
    tenant_count: 4          # with agents only: how many equal tenants to synthesise
    tenants:                 # name, agents, weight, dedicated, shard (a pin)
      - {name: acme, agents: 12000}
    model: {...}             # the parameters in MODEL_FIELDS

Nothing here does arithmetic on capacity: it only refuses what the planner must never
see, naming the field and the value.
"""

from __future__ import annotations

import math
import re

from ansible_collections.fleetscale.split.plugins.module_utils.errors import PlanError

# Sanity ceilings: a value beyond them is a typo (an extra zero), not a plan.
MAX_AGENTS = 100_000_000
MAX_TENANTS = 1_000_000
MAX_RPS = 10_000_000
MAX_NODES_SETTING = 1000
MAX_POLL_INTERVAL_S = 86400

# Matched whole (fullmatch): with re.match, '$' would also accept a name ending in a newline.
TENANT_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class Field:
    """One model parameter: its type, bounds and default."""

    def __init__(self, kind, default, low=None, high=None, low_open=False, doc=""):
        self.kind = kind
        self.default = default
        self.low = low
        self.high = high
        self.low_open = low_open
        self.doc = doc


# The model's parameters. Defaults are documented in the filter and inventory docs.
MODEL_FIELDS = {
    "checkin_ratio": Field(
        float, 0.30, 0.0, 1.0, low_open=True,
        doc="share of agents that check in each minute (ConnectWise Automate planning figure)"),
    # An agent polls every few seconds at the most: below a second is a unit typo (ms for s).
    "poll_interval": Field(
        float, None, 1.0, MAX_POLL_INTERVAL_S,
        doc="seconds between two polls of one agent; replaces checkin_ratio when set"),
    "target_utilisation": Field(
        float, 0.5, 0.0, 1.0, low_open=True,
        doc="utilisation a node is planned at: add a node when one approaches this share of its limit"),
    # 400/s puts the published 3-way split's "two agent web nodes for 20,000-40,000 agents"
    # exactly at the target utilisation; measure the real figure with playbooks/capacity.yml.
    "web_agent_capacity_rps": Field(
        float, 400.0, 0.0, MAX_RPS, low_open=True,
        doc="check-ins per second one agent web node serves at its limit"),
    "web_user_capacity_rps": Field(
        float, 100.0, 0.0, MAX_RPS, low_open=True,
        doc="user and integration requests per second one user web node serves at its limit"),
    "proxy_capacity_rps": Field(
        float, 10000.0, 0.0, MAX_RPS, low_open=True,
        doc="requests per second one reverse proxy forwards at its limit"),
    "concurrent_users": Field(
        int, 50, 0, 10_000_000, doc="technicians and staff using the console at the same time"),
    "user_request_rate": Field(
        float, 0.2, 0.0, 1000.0, doc="requests per second one active user causes"),
    "integration_rps": Field(
        float, 5.0, 0.0, MAX_RPS, doc="requests per second from integrations (PSA, scripts, APIs)"),
    "web_user_nodes": Field(
        int, 1, 1, MAX_NODES_SETTING, doc="dedicated user web nodes at the least"),
    "min_proxies": Field(
        int, 2, 1, MAX_NODES_SETTING, doc="reverse proxies at the least (an active/backup pair)"),
    "app_active": Field(
        int, 1, 1, 1, doc="active instances of the singleton application service: always 1"),
    "app_standbys": Field(
        int, 1, 0, MAX_NODES_SETTING, doc="idle standbys of the singleton application service"),
    "database_replicas": Field(
        int, 1, 0, 9, doc="replicas of each shard's primary; 0 only on purpose: losing the lone node loses its data"),
    "agents_per_db": Field(
        int, 50_000, 1, MAX_AGENTS, doc="agents one tuned database instance carries before sharding"),
    "redundancy": Field(
        bool, True, doc="plan N+1 in every stateless tier; false only with a warning"),
    # A capacity or utilisation off by a factor (0.001 for 1000) plans hundreds of thousands of
    # hosts in silence; above this many nodes in one tier the plan is refused until raised.
    "max_nodes_per_tier": Field(
        int, 1000, 1, 100_000,
        doc="most nodes one tier may be planned with; a larger plan is refused as a likely typo until this is "
            "raised to confirm it"),
}

TENANT_FIELDS = ("name", "agents", "weight", "dedicated", "shard")
SPEC_FIELDS = ("agents", "tenant_count", "tenants", "model")


def check_keys(mapping, allowed, field):
    """Refuse keys a mapping must not have; the error names the first unknown one."""
    if not isinstance(mapping, dict):
        raise PlanError(field, mapping, "must be a mapping")
    for key in mapping:
        if key not in allowed:
            where = "%s.%s" % (field, key) if field else str(key)
            raise PlanError(where, mapping[key], "unknown key; allowed: %s" % ", ".join(sorted(allowed)))


def check_number(value, field, kind, low=None, high=None, low_open=False):
    """Return value as kind after type and range checks (booleans are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PlanError(field, value, "must be a %s" % ("whole number" if kind is int else "number"))
    if kind is int and isinstance(value, float):
        if not value.is_integer():
            raise PlanError(field, value, "must be a whole number")
        value = int(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise PlanError(field, value, "must be finite")
    if low is not None and (value < low or (low_open and value == low)):
        if low_open and high is not None:
            raise PlanError(field, value, "must be in (%s, %s]" % (low, high))
        raise PlanError(field, value, "must be %s %s" % (">" if low_open else ">=", low))
    if high is not None and value > high:
        if low_open and low is not None:
            raise PlanError(field, value, "must be in (%s, %s]" % (low, high))
        raise PlanError(field, value, "must be <= %s" % high)
    return kind(value)


def check_model(model):
    """Return the model with defaults filled in, refusing unknown keys and bad values."""
    model = {} if model is None else model
    check_keys(model, MODEL_FIELDS, "model")
    if model.get("checkin_ratio") is not None and model.get("poll_interval") is not None:
        raise PlanError("model.poll_interval", model["poll_interval"],
                        "give checkin_ratio or poll_interval, not both")
    if "app_active" in model and model["app_active"] != 1:
        raise PlanError("model.app_active", model["app_active"],
                        "the application tier runs a singleton: exactly 1 active, never active-active")
    resolved = {}
    for name, spec in MODEL_FIELDS.items():
        value = model.get(name)
        field = "model.%s" % name
        if value is None:
            resolved[name] = spec.default
        elif spec.kind is bool:
            if not isinstance(value, bool):
                raise PlanError(field, value, "must be true or false")
            resolved[name] = value
        else:
            resolved[name] = check_number(value, field, spec.kind, spec.low, spec.high, spec.low_open)
    if resolved["poll_interval"] is not None:
        # One basis for the rate: a poll interval replaces the ratio.
        resolved["checkin_ratio"] = None
    return resolved


def check_tenants(tenants, field="tenants"):
    """Return tenants as a list of complete dicts; refuse duplicates and bad values."""
    if not isinstance(tenants, list):
        raise PlanError(field, tenants, "must be a list of tenants")
    if not tenants:
        raise PlanError(field, tenants, "must name at least one tenant")
    if len(tenants) > MAX_TENANTS:
        raise PlanError(field, len(tenants), "more than %d tenants" % MAX_TENANTS)
    seen = {}
    result = []
    for position, tenant in enumerate(tenants):
        where = "%s[%d]" % (field, position)
        check_keys(tenant, TENANT_FIELDS, where)
        name = tenant.get("name")
        if not isinstance(name, str) or not TENANT_NAME_RE.fullmatch(name):
            raise PlanError(where + ".name", name,
                            "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
        if name in seen:
            raise PlanError(where + ".name", name, "duplicate tenant name (also %s[%d])" % (field, seen[name]))
        seen[name] = position
        if "agents" not in tenant:
            raise PlanError(where + ".agents", None, "is required")
        agents = check_number(tenant["agents"], where + ".agents", int, 1, MAX_AGENTS)
        weight = 1.0
        if tenant.get("weight") is not None:
            weight = check_number(tenant["weight"], where + ".weight", float, 0.0, 1000.0, low_open=True)
        dedicated = tenant.get("dedicated", False)
        if not isinstance(dedicated, bool):
            raise PlanError(where + ".dedicated", dedicated, "must be true or false")
        shard = tenant.get("shard")
        if shard is not None:
            shard = check_number(shard, where + ".shard", int, 1, MAX_AGENTS)
        result.append({"name": name, "agents": agents, "weight": weight, "dedicated": dedicated, "shard": shard})
    return result


def check_tier_size(tier, nodes, model, basis):
    """Refuse a tier planned beyond model.max_nodes_per_tier; basis says what the count comes from."""
    limit = model["max_nodes_per_tier"]
    if nodes > limit:
        raise PlanError("model.max_nodes_per_tier", limit,
                        "the %s tier would have %d nodes (%s): check those figures, or raise "
                        "model.max_nodes_per_tier to confirm a plan this large" % (tier, nodes, basis))


def synthesise_tenants(agents, count):
    """Equal tenants tenant-001.. for a spec that gives only an agent count.

    Names depend only on the position, so growing the agent count keeps every name.
    """
    base, extra = divmod(agents, count)
    width = max(3, len(str(count)))
    return [
        {"name": "tenant-%0*d" % (width, i + 1), "agents": base + (1 if i < extra else 0),
         "weight": 1.0, "dedicated": False, "shard": None}
        for i in range(count) if base + (1 if i < extra else 0) > 0
    ]


def check_spec(spec):
    """Return {'agents', 'tenants', 'model', 'synthetic_tenants'} from a raw spec."""
    check_keys(spec, SPEC_FIELDS, "")
    model = check_model(spec.get("model"))
    has_agents = spec.get("agents") is not None
    has_tenants = spec.get("tenants") is not None
    if not has_agents and not has_tenants:
        raise PlanError("agents", None, "give agents (a count) or tenants (a list)")
    if has_tenants:
        if spec.get("tenant_count") is not None:
            raise PlanError("tenant_count", spec["tenant_count"], "only with agents, not with a tenant list")
        tenants = check_tenants(spec["tenants"])
        total = sum(t["agents"] for t in tenants)
        if total > MAX_AGENTS:
            raise PlanError("tenants", total, "total agents above %d" % MAX_AGENTS)
        if has_agents:
            agents = check_number(spec["agents"], "agents", int, 1, MAX_AGENTS)
            if agents != total:
                raise PlanError("agents", agents, "differs from the sum of tenants[].agents (%d)" % total)
        return {"agents": total, "tenants": tenants, "model": model, "synthetic_tenants": False}
    agents = check_number(spec["agents"], "agents", int, 1, MAX_AGENTS)
    count = spec.get("tenant_count")
    if count is None:
        count = max(1, math.ceil(agents / model["agents_per_db"]))
        # One tenant per shard: refuse before making millions of them for agents_per_db: 1.
        check_tier_size("database", count * (1 + model["database_replicas"]), model,
                        "%d agents at agents_per_db %d" % (agents, model["agents_per_db"]))
    else:
        count = check_number(count, "tenant_count", int, 1, MAX_TENANTS)
        if count > agents:
            raise PlanError("tenant_count", count, "more tenants than agents (%d)" % agents)
    return {"agents": agents, "tenants": synthesise_tenants(agents, count), "model": model,
            "synthetic_tenants": True}
