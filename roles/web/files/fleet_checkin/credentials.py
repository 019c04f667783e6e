"""Who may call the check-in service: agent tokens and user API keys (pure, stdlib only).

Agents. Each tenant has one or more keys (secrets the web nodes hold). An agent's token is
``<key id>.<mac>`` where mac is the unpadded base64url HMAC-SHA256, under the tenant's key, of
the tenant and the agent id. The service checks it with the tenant's keys from its config: no
database round trip, and a token is valid for exactly one agent of one tenant, so an agent can
check in only as itself. The first key of a tenant issues tokens; every listed key verifies, which
is how a key is rotated (add a new first key, re-enrol the agents, drop the old one).

A tenant's keys are listed for it, or derived from the fleet's master keys (HMAC-SHA256 of the
tenant under the master secret, under the master key's id): a fleet of thousands of tenants then
keeps one vaulted secret, and a tenant whose key must change on its own gets listed keys.

Users. An API key is ``<key id>.<secret>``; the config stores only the SHA-256 of the secret
(the secret is 32 random bytes, so a plain hash is as strong as a slow one and costs microseconds)
with the tenants it may see, or admin for every tenant and the cross-tenant views.

This module is the one home of both formulas: the service verifies with it, the enrolment
command (fleet_checkin.enrol) and the agent simulator (tools/agentsim) issue with it.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

# Separates these MACs from any other use of the same key (and of a future token format).
AGENT_TOKEN_CONTEXT = b"fleetscale-agent-token-v1\0"
TENANT_KEY_CONTEXT = b"fleetscale-tenant-key-v1\0"
KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,16}")
KEY_ID_RULE = "1-16 characters of A-Z a-z 0-9 _ -"
MIN_SECRET_CHARS = 32
_MAC_CHARS = 43  # 32 bytes of SHA-256 in unpadded base64url
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
API_SECRET_BYTES = 32


class CredentialError(ValueError):
    """A key or token is malformed (never carries the secret itself)."""


@dataclass(frozen=True)
class ApiKey:
    """One user API key as the config holds it: the secret's digest and its scope."""

    key_id: str
    sha256: str
    tenants: frozenset[str]
    admin: bool = False

    def may_see(self, tenant: str) -> bool:
        return self.admin or tenant in self.tenants


@functools.lru_cache(maxsize=4096)
def _keyed(secret: str) -> hmac.HMAC:
    """The HMAC of a key with the context already absorbed: per token only the identity is hashed."""
    return hmac.new(secret.encode(), AGENT_TOKEN_CONTEXT, hashlib.sha256)


def _mac(secret: str, tenant: str, agent_id: str) -> str:
    mac = _keyed(secret).copy()
    mac.update(tenant.encode() + b"\0" + agent_id.encode())
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()


def tenant_keys(
    tenant: str, listed: Sequence[tuple[str, str | None]], master: Sequence[tuple[str, str]],
) -> tuple[tuple[str, str], ...]:
    """The tenant's (key id, secret) pairs: its listed keys, else one derived from each master key.

    A listed key without a secret (None) is the tenant's key derived from the master key of that id:
    how a tenant keeps its current agents' tokens while a key of its own is rotated in.
    """
    masters = dict(master)

    def derived(key_id: str) -> str:
        return hmac.new(masters[key_id].encode(), TENANT_KEY_CONTEXT + tenant.encode(), hashlib.sha256).hexdigest()

    if listed:
        return tuple((key_id, secret if secret is not None else derived(key_id)) for key_id, secret in listed)
    return tuple((key_id, derived(key_id)) for key_id, _ in master)


def agent_token(key_id: str, secret: str, tenant: str, agent_id: str) -> str:
    """The token of `agent_id` of `tenant` under the tenant key `key_id`."""
    if not KEY_ID.fullmatch(key_id):
        raise CredentialError(f"key id {key_id[:40]!r} must be {KEY_ID_RULE}")
    if len(secret) < MIN_SECRET_CHARS:
        raise CredentialError(f"the secret of key {key_id!r} is shorter than {MIN_SECRET_CHARS} characters")
    return f"{key_id}.{_mac(secret, tenant, agent_id)}"


def verify_agent_token(keys: Mapping[str, str], token: str, tenant: str, agent_id: str) -> bool:
    """Whether `token` is the token of `agent_id` of `tenant` under one of the tenant's `keys` (id -> secret)."""
    key_id, dot, mac = token.partition(".")
    if not dot or len(mac) != _MAC_CHARS:
        return False
    secret = keys.get(key_id)
    if secret is None:
        return False
    return hmac.compare_digest(mac.encode(), _mac(secret, tenant, agent_id).encode())


def bearer(header: str | None) -> str | None:
    """The credential of an `Authorization: Bearer <credential>` header, else None."""
    if not header:
        return None
    scheme, _, credential = header.strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential or " " in credential:
        return None
    return credential


def api_key_digest(secret: str) -> str:
    """What the config stores of an API key's secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def verify_api_key(keys: Mapping[str, ApiKey], presented: str) -> ApiKey | None:
    """The key `presented` (`<key id>.<secret>`) is, or None when unknown or wrong."""
    key_id, dot, secret = presented.partition(".")
    key = keys.get(key_id) if dot else None
    if key is None:
        return None
    return key if hmac.compare_digest(key.sha256, api_key_digest(secret)) else None


def new_api_key(key_id: str) -> tuple[str, str]:
    """A fresh API key: (the key to hand to its user, the digest for the config)."""
    if not KEY_ID.fullmatch(key_id):
        raise CredentialError(f"key id {key_id[:40]!r} must be {KEY_ID_RULE}")
    secret = secrets.token_urlsafe(API_SECRET_BYTES)
    return f"{key_id}.{secret}", api_key_digest(secret)


def check_sha256(value: object) -> bool:
    return isinstance(value, str) and bool(_SHA256_HEX.fullmatch(value))


def issue_agent_tokens(keys: Sequence[tuple[str, str]], tenant: str, agent_ids: Iterable[str]) -> list[tuple[str, str]]:
    """(agent id, token) under the tenant's first (issuing) key, for each agent id."""
    if not keys:
        raise CredentialError(f"tenant {tenant!r} has no agent key")
    key_id, secret = keys[0]
    return [(agent_id, agent_token(key_id, secret, tenant, agent_id)) for agent_id in agent_ids]
