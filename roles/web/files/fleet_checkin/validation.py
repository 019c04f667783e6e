"""Checks on what clients send: JSON bodies and query strings.

Everything here is pure (no I/O) so the rules can be unit tested directly.
A RequestInvalid names the field and the value so that an agent developer can
fix the request from the response alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Identifiers end up in VARCHAR(64) key columns and in URLs, so they are kept
# to a conservative alphabet rather than escaped everywhere.
IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}")
IDENTIFIER_RULE = "must be 1-64 characters of A-Z a-z 0-9 . _ : @ - starting with a letter or digit"
MAX_SEQ = 2**63 - 1  # BIGINT UNSIGNED would allow more, Python clients rarely do
MAX_STATUS_CHARS = 32
MAX_COMMAND_CHARS = 1024
AGENT_STATES = ("online", "offline")


class RequestInvalid(ValueError):
    """The request is well-formed HTTP but its content breaks a rule (HTTP 400)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class CheckinRequest:
    agent_id: str
    tenant: str
    seq: int
    status: str


@dataclass(frozen=True)
class AgentQuery:
    state: str | None  # None lists every agent
    limit: int
    after: str | None  # keyset cursor: the last agent_id of the previous page


def decode_json_object(raw: bytes) -> dict[str, Any]:
    """Decode a request body that must be one JSON object."""
    if not raw.strip():
        raise RequestInvalid("malformed JSON: the request body is empty")
    try:
        document = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError and bodies that are not UTF-8.
        raise RequestInvalid(f"malformed JSON: {exc}") from None
    if not isinstance(document, dict):
        raise RequestInvalid(f"malformed JSON: expected an object, got {type(document).__name__}")
    return document


def parse_checkin(document: Mapping[str, Any]) -> CheckinRequest:
    """Validate the body of POST /agent/checkin (unknown fields are ignored)."""
    agent_id = _identifier(document, "agent_id")
    tenant = _required_string(document, "tenant")
    seq = _required(document, "seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= MAX_SEQ:
        raise _invalid("seq", seq, f"must be an integer 0-{MAX_SEQ}")
    status = document.get("status", "ok")
    if not isinstance(status, str) or not 1 <= len(status) <= MAX_STATUS_CHARS:
        raise _invalid("status", status, f"must be a string of 1-{MAX_STATUS_CHARS} characters")
    return CheckinRequest(agent_id=agent_id, tenant=tenant, seq=seq, status=status)


def parse_command(document: Mapping[str, Any]) -> str:
    """Validate the body of POST .../commands and return the command text."""
    command = _required(document, "command")
    if not isinstance(command, str) or not command.strip() or len(command) > MAX_COMMAND_CHARS:
        raise _invalid("command", command, f"must be a non-blank string of at most {MAX_COMMAND_CHARS} characters")
    return command


def check_agent_id(agent_id: str) -> str:
    """Validate an agent id taken from a URL path."""
    if not IDENTIFIER.fullmatch(agent_id):
        raise _invalid("agent_id", agent_id, IDENTIFIER_RULE)
    return agent_id


def parse_agent_query(params: Mapping[str, Any], default_limit: int, max_limit: int) -> AgentQuery:
    """Validate ?state=&limit=&after= of the agent listing; limit is capped, not refused."""
    state = _single(params, "state")
    if state is not None and state not in AGENT_STATES:
        raise _invalid("state", state, "must be one of " + ", ".join(AGENT_STATES))
    limit = _single(params, "limit")
    if limit is None or limit == "":
        limit_value = default_limit
    elif limit.isdigit() and int(limit) >= 1:
        limit_value = min(int(limit), max_limit)
    else:
        raise _invalid("limit", limit, "must be a positive integer")
    after = _single(params, "after") or None
    if after is not None and not IDENTIFIER.fullmatch(after):
        raise _invalid("after", after, "must be an agent id (the last one of the previous page)")
    return AgentQuery(state=state, limit=limit_value, after=after)


def _required(document: Mapping[str, Any], name: str) -> Any:
    if name not in document:
        raise RequestInvalid(f"missing required field {name!r}", field=name)
    return document[name]


def _required_string(document: Mapping[str, Any], name: str) -> str:
    value = _required(document, name)
    if not isinstance(value, str) or not value:
        raise _invalid(name, value, "must be a non-empty string")
    return value


def _identifier(document: Mapping[str, Any], name: str) -> str:
    value = _required_string(document, name)
    if not IDENTIFIER.fullmatch(value):
        raise _invalid(name, value, IDENTIFIER_RULE)
    return value


def _single(params: Mapping[str, Any], name: str) -> str | None:
    value = params.get(name)
    if isinstance(value, list):
        raise _invalid(name, value, "must be given once")
    return value


def _invalid(name: str, value: Any, rule: str) -> RequestInvalid:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return RequestInvalid(f"field {name!r} {rule}, got {shown}", field=name)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")
