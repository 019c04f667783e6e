"""The falcon resources of the check-in service and their wiring.

create_app() takes its collaborators (config, store, clock, drain check) as
arguments so the unit tests can run it against an in-memory store.
Every answer is JSON and carries X-Fleet-Node and X-Fleet-Version; no
traceback ever reaches a client.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

import falcon

from .config import Config
from .credentials import ApiKey, bearer, verify_agent_token, verify_api_key
from .store import StoreUnavailable
from .validation import (
    RequestInvalid,
    check_agent_id,
    decode_json_object,
    parse_agent_query,
    parse_checkin,
    parse_command,
)

log = logging.getLogger(__name__)

# Tells clients (agents, HAProxy) when trying again makes sense after a 503.
RETRY_AFTER_SECONDS = "1"


class FleetHeaders:
    """Middleware: stamp every response, errors and 404s included, with node and version."""

    def __init__(self, node: str, version: str):
        self._node = node
        self._version = version

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool) -> None:
        resp.set_header("X-Fleet-Node", self._node)
        resp.set_header("X-Fleet-Version", self._version)


class Shards:
    """Tenant routing shared by the resources."""

    def __init__(self, config: Config):
        self._config = config

    def for_tenant(self, tenant: str) -> int:
        shard = self._config.shard_for(tenant)
        if shard is None:
            raise falcon.HTTPNotFound(description=f"unknown tenant {tenant!r}")
        return shard


AGENT_REALM = 'Bearer realm="fleet-agents"'
USER_REALM = 'Bearer realm="fleet-api"'


def unauthorized(description: str, realm: str) -> falcon.HTTPUnauthorized:
    return falcon.HTTPUnauthorized(description=description, challenges=[realm])


def require_credential(req: falcon.Request, realm: str, what: str) -> str:
    """The bearer credential of the request: 401 (JSON) when there is none."""
    credential = bearer(req.get_header("Authorization"))
    if credential is None:
        raise unauthorized(f"{what} needs credentials: send Authorization: Bearer <credential>", realm)
    return credential


class Users:
    """Which user API key a request carries (401 when none or wrong) and what it may see (403)."""

    def __init__(self, config: Config):
        self._keys = config.api_keys

    def key(self, req: falcon.Request) -> ApiKey:
        presented = require_credential(req, USER_REALM, "user API")
        key = verify_api_key(self._keys, presented)
        if key is None:
            raise unauthorized("the API key is unknown or wrong", USER_REALM)
        return key

    def admin_or_none(self, req: falcon.Request) -> ApiKey | None:
        """The admin key of the request, or None (no key, a wrong one, or not an admin's)."""
        presented = bearer(req.get_header("Authorization"))
        key = verify_api_key(self._keys, presented) if presented else None
        return key if key is not None and key.admin else None

    def require_tenant(self, req: falcon.Request, tenant: str) -> ApiKey:
        key = self.key(req)
        if not key.may_see(tenant):
            raise falcon.HTTPForbidden(description=f"API key {key.key_id!r} has no access to tenant {tenant!r}")
        return key

    def require_admin(self, req: falcon.Request) -> ApiKey:
        key = self.key(req)
        if not key.admin:
            raise falcon.HTTPForbidden(description=f"API key {key.key_id!r} is not an admin key")
        return key


def read_json_object(req: falcon.Request, limit: int) -> dict[str, Any]:
    """The request body as a JSON object: 413 over `limit` bytes, 415 when it is not sent as JSON."""
    if req.content_length is not None and req.content_length > limit:
        raise _too_large(limit)
    # The API speaks JSON only: a form or a text body is refused before it is read.
    media_type = (req.content_type or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise falcon.HTTPUnsupportedMediaType(
            description="the request body must be JSON, sent with Content-Type: application/json (got %s)"
            % (repr(req.content_type[:60]) if req.content_type else "no Content-Type"))
    # A chunked body has no Content-Length; falcon's bounded_stream would then
    # read nothing, so read the WSGI input itself, which gunicorn de-chunks
    # and ends (and ends at once when there is no body at all).
    stream = req.bounded_stream if req.content_length is not None else req.stream
    raw = stream.read(limit + 1)
    if len(raw) > limit:
        raise _too_large(limit)
    return decode_json_object(raw)


def _too_large(limit: int) -> falcon.HTTPPayloadTooLarge:
    return falcon.HTTPPayloadTooLarge(description=f"the request body is larger than {limit} bytes")


class CheckinResource:
    """POST /agent/checkin: answered 200 only after the transaction committed."""

    def __init__(self, config: Config, store: Any, shards: Shards):
        self._config = config
        self._store = store
        self._shards = shards
        # key id -> secret per tenant, built once: a check-in only looks up its tenant's.
        self._agent_keys = {tenant: dict(pairs) for tenant, pairs in config.agent_keys.items()}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        # Refused before the body is read: no credential, no work.
        token = require_credential(req, AGENT_REALM, "agent check-in")
        checkin = parse_checkin(read_json_object(req, self._config.max_body_bytes))
        # A tenant this node does not route has no key: the same 403 as a forged token, so that
        # an unauthenticated caller learns nothing about which tenants exist.
        keys = self._agent_keys.get(checkin.tenant, {})
        if not verify_agent_token(keys, token, checkin.tenant, checkin.agent_id):
            raise falcon.HTTPForbidden(
                description=f"the credential is not the one of agent {checkin.agent_id!r} of tenant {checkin.tenant!r}")
        shard = self._shards.for_tenant(checkin.tenant)
        result = self._store.checkin(shard, checkin, self._config.node)
        resp.media = {
            "ok": True,
            "seq": checkin.seq,
            "duplicate": result.duplicate,
            "commands": result.commands,
            "node": self._config.node,
            "version": self._config.version,
        }


class AgentsResource:
    """GET /api/tenants/{tenant}/agents?state=online|offline&limit=&after= (keyset pages)."""

    def __init__(self, config: Config, store: Any, shards: Shards, users: Users):
        self._config = config
        self._store = store
        self._shards = shards
        self._users = users

    def on_get(self, req: falcon.Request, resp: falcon.Response, tenant: str) -> None:
        self._users.require_tenant(req, tenant)
        shard = self._shards.for_tenant(tenant)
        query = parse_agent_query(req.params, self._config.page_limit_default, self._config.page_limit_max)
        agents, next_after = self._store.list_agents(shard, tenant, query)
        resp.media = {
            "ok": True,
            "tenant": tenant,
            "state": query.state,
            "limit": query.limit,
            "agents": agents,
            "next_after": next_after,
        }


class CommandsResource:
    """POST /api/tenants/{tenant}/agents/{agent_id}/commands: queue a command (201)."""

    def __init__(self, config: Config, store: Any, shards: Shards, users: Users):
        self._config = config
        self._store = store
        self._shards = shards
        self._users = users

    def on_post(self, req: falcon.Request, resp: falcon.Response, tenant: str, agent_id: str) -> None:
        self._users.require_tenant(req, tenant)
        shard = self._shards.for_tenant(tenant)
        check_agent_id(agent_id)
        command = parse_command(read_json_object(req, self._config.max_body_bytes))
        created = self._store.add_command(shard, tenant, agent_id, command)
        if created is None:
            raise falcon.HTTPNotFound(description=f"agent {agent_id!r} of tenant {tenant!r} has never checked in")
        resp.status = falcon.HTTP_201
        resp.media = {"ok": True, **created}


class StatsResource:
    """GET /api/stats (admin keys only): counts per shard; 503 (with what is known) when a shard does not answer."""

    def __init__(self, config: Config, store: Any, users: Users):
        self._config = config
        self._store = store
        self._users = users

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._users.require_admin(req)
        shards = []
        for shard_id, shard in sorted(self._config.shards.items()):
            entry: dict[str, Any] = {
                "shard": shard_id,
                "database": shard.database,
                "tenants": sorted(t for t, s in self._config.tenants.items() if s == shard_id),
            }
            try:
                entry.update(self._store.shard_stats(shard_id), available=True)
            except StoreUnavailable as exc:
                # Which shard, never why: the driver's reason names addresses (it is in the log).
                entry.update(available=False, error=unavailable_message(exc))
            shards.append(entry)
        ok = all(entry["available"] for entry in shards)
        if not ok:
            resp.status = falcon.HTTP_503
            resp.set_header("Retry-After", RETRY_AFTER_SECONDS)
        resp.media = {"ok": ok, "node": self._config.node, "shards": shards}


class HealthResource:
    """GET /healthz: the process is alive and answering; no dependency is checked."""

    def __init__(self, config: Config, clock: Callable[[], float], started_at: float):
        self._config = config
        self._clock = clock
        self._started_at = started_at

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {
            "ok": True,
            "node": self._config.node,
            "version": self._config.version,
            "uptime_seconds": round(self._clock() - self._started_at, 3),
        }

    on_head = on_get


class ReadyResource:
    """GET /readyz: 200 only when warmed up, not draining and every routed shard answers.

    The proxies' checks need only the status; the reasons are for an admin key.
    """

    def __init__(
        self,
        config: Config,
        store: Any,
        clock: Callable[[], float],
        started_at: float,
        path_exists: Callable[[str], bool],
        users: Users,
    ):
        self._users = users
        self._config = config
        self._store = store
        self._clock = clock
        self._started_at = started_at
        self._path_exists = path_exists

    def not_ready_reasons(self) -> list[str]:
        reasons = []
        remaining = self._config.startup_delay_seconds - (self._clock() - self._started_at)
        if remaining > 0:
            reasons.append(f"starting: ready in {remaining:.1f}s")
        if self._path_exists(self._config.drain_file):
            reasons.append(f"draining: {self._config.drain_file} exists")
        for shard_id in self._config.routed_shards:
            try:
                self._store.ping(shard_id)
            except StoreUnavailable as exc:
                reasons.append(unavailable_message(exc))
        return reasons

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        reasons = self.not_ready_reasons()
        if reasons:
            resp.status = falcon.HTTP_503
            resp.set_header("Retry-After", RETRY_AFTER_SECONDS)
            resp.media = {"ok": False, "ready": False, "error": "not ready"}
            if self._users.admin_or_none(req) is not None:
                resp.media.update(error="; ".join(reasons), reasons=reasons)
        else:
            resp.media = {"ok": True, "ready": True, "node": self._config.node, "version": self._config.version}

    on_head = on_get


class FieldInvalid(falcon.HTTPBadRequest):
    """400 naming the offending field in the JSON body as well as in the message."""

    def __init__(self, message: str, field: str | None):
        super().__init__(description=message)
        self.field = field


def serialize_error(req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError) -> None:
    """Every falcon error (ours, 404 of unknown routes, 405...) as the same JSON shape."""
    body: dict[str, Any] = {"ok": False, "error": exc.description or exc.title}
    field = getattr(exc, "field", None)
    if field:
        body["field"] = field
    resp.media = body


def handle_invalid(req: falcon.Request, resp: falcon.Response, exc: RequestInvalid, params: dict) -> None:
    raise FieldInvalid(str(exc), exc.field)


def unavailable_message(exc: StoreUnavailable) -> str:
    """What a client learns of an outage: which shard. The reason (driver error, address) is the log's."""
    return f"shard {exc.shard_id} unavailable; try again later"


def handle_unavailable(req: falcon.Request, resp: falcon.Response, exc: StoreUnavailable, params: dict) -> None:
    raise falcon.HTTPServiceUnavailable(description=unavailable_message(exc), retry_after=int(RETRY_AFTER_SECONDS))


def handle_unexpected(req: falcon.Request, resp: falcon.Response, exc: Exception, params: dict) -> None:
    # The traceback goes to the log (journald), never to the client.
    log.exception("unhandled error on %s %s", req.method, req.path)
    raise falcon.HTTPInternalServerError(description="internal error; see the service log")


def create_app(
    config: Config,
    store: Any,
    clock: Callable[[], float] = time.monotonic,
    started_at: float | None = None,
    path_exists: Callable[[str], bool] = os.path.exists,
) -> falcon.App:
    """Wire the resources; `started_at` (default: now) starts the startup delay."""
    started_at = clock() if started_at is None else started_at
    shards = Shards(config)
    users = Users(config)
    app = falcon.App(middleware=[FleetHeaders(config.node, config.version)])
    app.req_options.keep_blank_qs_values = False
    app.add_route("/agent/checkin", CheckinResource(config, store, shards))
    app.add_route("/api/tenants/{tenant}/agents", AgentsResource(config, store, shards, users))
    app.add_route("/api/tenants/{tenant}/agents/{agent_id}/commands", CommandsResource(config, store, shards, users))
    app.add_route("/api/stats", StatsResource(config, store, users))
    app.add_route("/healthz", HealthResource(config, clock, started_at))
    app.add_route("/readyz", ReadyResource(config, store, clock, started_at, path_exists, users))
    # Falcon picks the most specific handler for an exception's class, so the
    # catch-all below never shadows HTTPError (404, 413...) or the two above.
    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(RequestInvalid, handle_invalid)
    app.add_error_handler(StoreUnavailable, handle_unavailable)
    app.set_error_serializer(serialize_error)
    return app
