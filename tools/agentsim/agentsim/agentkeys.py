"""The agents' credentials: the keys file of --agent-keys and each simulated agent's token.

The service refuses a check-in without `Authorization: Bearer <token>` of its own tenant and
agent. The token formula has one home, the service's fleet_checkin.credentials (the service
verifies with it); the simulator issues with that very module, imported from this checkout's
roles/web/files, so that it can never drift from what the service accepts. This module is the
only place agentsim reaches into the role.

The keys file holds the two key fields of the service config (the Ansible variables
fleet_agent_master_keys and fleet_agent_keys): `{"agent_master_keys": [{"id": "m1", "secret":
"<at least 32 characters>"}], "agent_keys": {"<tenant>": [{"id": "k1", "secret": "..."}]}}`; either
may be left out. A tenant's listed keys win, else its key derives from the master keys, as in the
service. The first key issues the tokens. Errors name the file, the tenant and the field, never a
secret.
"""

from __future__ import annotations

import functools
import importlib
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from agentsim.errors import UsageError

# tools/agentsim/agentsim/agentkeys.py -> the checkout -> the service's package directory.
SERVICE_FILES = Path(__file__).resolve().parents[3] / "roles" / "web" / "files"


@functools.cache
def credentials() -> ModuleType:
    """fleet_checkin.credentials of this checkout (imported once, on first use)."""
    if str(SERVICE_FILES) not in sys.path:
        sys.path.insert(0, str(SERVICE_FILES))
    # No __pycache__ next to the role's files: they are the service's source, copied to the nodes.
    previous, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        return importlib.import_module("fleet_checkin.credentials")
    except ImportError as exc:
        raise UsageError(
            f"--agent-keys: cannot import fleet_checkin.credentials (the token formula of the check-in service) "
            f"from {SERVICE_FILES}: {exc}; run agentsim from the collection's checkout") from None
    finally:
        sys.dont_write_bytecode = previous


@dataclass(frozen=True)
class AgentKeys:
    """The issuing (first) key of each tenant of a keys file; the secrets stay out of repr and reports."""

    path: str
    issuing: dict[str, tuple[str, str]] = field(repr=False)  # tenant -> (key id, secret)

    def token(self, tenant: str, agent_id: str) -> str:
        """The token of one agent; the roster asks once per agent, not per check-in."""
        key_id, secret = self.issuing[tenant]
        return credentials().agent_token(key_id, secret, tenant, agent_id)


def load_agent_keys(path: str, tenants: Iterable[str]) -> AgentKeys:
    """Read and check the keys file once: every entry well formed, a key for each tenant that sends."""
    module = credentials()  # before reading, so that a checkout without the service fails first
    where = f"--agent-keys {path}"
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{where}: cannot read the file: {exc.strerror or exc}") from None
    except ValueError as exc:
        # The decoder's message gives a position, never the file's text.
        raise UsageError(f"{where}: not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise UsageError(f"{where}: must be a JSON object with 'agent_keys' and/or 'agent_master_keys', "
                         f"got {_kind(document)}")
    unknown = sorted(set(document) - {"agent_keys", "agent_master_keys"})
    if unknown:
        raise UsageError(f"{where}: unknown field {unknown[0][:64]!r} (the file holds the service config's "
                         "'agent_keys' and 'agent_master_keys')")
    master = document.get("agent_master_keys", [])
    if not isinstance(master, list):
        raise UsageError(f"{where}: field 'agent_master_keys' must be a list of keys, got {_kind(master)}")
    for index, entry in enumerate(master):
        _check_entry(f"{where}: field 'agent_master_keys'", index, entry, module)
    listed = document.get("agent_keys", {})
    if not isinstance(listed, dict):
        raise UsageError(f"{where}: field 'agent_keys' must be an object of tenant -> keys, got {_kind(listed)}")
    master_pairs = [(entry["id"], entry["secret"]) for entry in master]
    for tenant, entries in listed.items():
        if not isinstance(entries, list):
            raise UsageError(f"{where}: tenant {tenant[:64]!r}: must be a list of keys, got {_kind(entries)}")
        for index, entry in enumerate(entries):
            if isinstance(entry, dict) and "derived" in entry:
                # The tenant's key derived from a master key, as the service config allows.
                if entry.get("derived") is not True or entry.get("id") not in dict(master_pairs):
                    raise UsageError(f"{where}: tenant {tenant[:64]!r}: key {index}: a derived key needs "
                                     "'derived': true and the id of one of 'agent_master_keys'")
                continue
            _check_entry(f"{where}: tenant {tenant[:64]!r}", index, entry, module)
    issuing = {}
    for tenant in tenants:
        if tenant in listed and not listed[tenant]:
            raise UsageError(f"{where}: tenant {tenant!r} of the roster has an empty list of keys: "
                             "its agents could not check in")
        pairs = module.tenant_keys(tenant, [(e["id"], e.get("secret")) for e in listed.get(tenant, [])], master_pairs)
        if not pairs:
            raise UsageError(f"{where}: tenant {tenant!r} of the roster has no key in the file (none in "
                             "'agent_keys', no 'agent_master_keys'): its agents could not check in")
        issuing[tenant] = pairs[0]
    return AgentKeys(path=path, issuing=issuing)


def _check_entry(where: str, index: int, entry: Any, module: ModuleType) -> None:
    here = f"{where}: key {index}"
    if not isinstance(entry, dict):
        raise UsageError(f"{here}: must be an object with 'id' and 'secret', got {_kind(entry)}")
    for name in ("id", "secret"):
        if name not in entry:
            raise UsageError(f"{here}: field {name!r} is missing (an entry needs 'id' and 'secret')")
    key_id, secret = entry["id"], entry["secret"]
    if not isinstance(key_id, str) or not module.KEY_ID.fullmatch(key_id):
        raise UsageError(f"{here}: field 'id' must be {module.KEY_ID_RULE}, got {key_id!r:.40}")
    if not isinstance(secret, str) or len(secret) < module.MIN_SECRET_CHARS:
        # What is wrong with it, never the value: a short secret is still a secret.
        got = f"{len(secret)} characters" if isinstance(secret, str) else _kind(secret)
        raise UsageError(f"{here} ({key_id}): field 'secret' must be a string of at least "
                         f"{module.MIN_SECRET_CHARS} characters, got {got}")


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
