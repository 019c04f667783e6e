"""Enrolment on a web node: issue agent tokens from the config's keys, or make a new user API key.

    python3 -m fleet_checkin.enrol agent-tokens CONFIG.json TENANT < agent-ids   # "<agent id> <token>" lines
    python3 -m fleet_checkin.enrol new-api-key KEY_ID

Tokens go to stdout only; nothing is written on the node.
"""

from __future__ import annotations

import sys

from .config import ConfigError, load_config
from .credentials import CredentialError, issue_agent_tokens, new_api_key
from .validation import IDENTIFIER, IDENTIFIER_RULE

USAGE = (
    "usage: python3 -m fleet_checkin.enrol agent-tokens CONFIG.json TENANT < agent-ids\n"
    "       python3 -m fleet_checkin.enrol new-api-key KEY_ID"
)


def agent_tokens(config_path: str, tenant: str, lines: list[str]) -> int:
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        print(f"invalid: {exc}", file=sys.stderr)
        return 1
    if tenant not in config.agent_keys:
        print(f"tenant {tenant[:64]!r} is not routed by {config_path}", file=sys.stderr)
        return 1
    ids = [line.strip() for line in lines if line.strip()]
    for number, agent_id in enumerate(ids, 1):
        if not IDENTIFIER.fullmatch(agent_id):
            print(f"stdin line {number}: agent id {agent_id[:80]!r} {IDENTIFIER_RULE}", file=sys.stderr)
            return 1
    for agent_id, token in issue_agent_tokens(config.agent_keys[tenant], tenant, ids):
        print(f"{agent_id} {token}")
    return 0


def api_key(key_id: str) -> int:
    try:
        key, digest = new_api_key(key_id)
    except CredentialError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(f"key (give it to its user, once): {key}\nsha256 (for fleet_api_keys): {digest}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 3 and argv[0] == "agent-tokens":
        return agent_tokens(argv[1], argv[2], sys.stdin.readlines())
    if len(argv) == 2 and argv[0] == "new-api-key":
        return api_key(argv[1])
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
