"""The HTTP side: one check-in POST over a pool of keep-alive connections, classified into an Outcome.

aiohttp is used for its C HTTP parser and connection pool. The client is locked down for this
workplace: it connects only to the addresses check_target approved (PinnedResolver), never
follows redirects (a redirect could point anywhere) and ignores proxy settings of the environment.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import ssl
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from agentsim import __version__
from agentsim.outcome import Outcome
from agentsim.target import CHECKIN_PATH, Target

# HAProxy closes idle client connections after 10 s (proxy_timeout_http_keep_alive); the pool
# drops them first so that a request never goes out on a connection the proxy is closing.
KEEPALIVE_SECONDS = 5.0
MESSAGE_CHARS = 160
# Refusals of the credential get kinds of their own: a run without (or with the wrong) --agent-keys
# must read as such in the summary, not as one more 4xx among bad requests.
AUTH_ERRORS = {401: "unauthorized", 403: "forbidden"}


class PinnedResolver(AbstractResolver):
    """Answers only the addresses check_target approved, whatever DNS would say now."""

    def __init__(self, target: Target):
        self._target = target

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[ResolveResult]:
        if host != self._target.host:
            raise OSError(f"agentsim connects only to the checked target {self._target.host}, not to {host}")
        results: list[ResolveResult] = []
        for text in self._target.addresses:
            address_family = socket.AF_INET6 if ipaddress.ip_address(text).version == 6 else socket.AF_INET
            if family not in (socket.AF_UNSPEC, address_family):
                continue
            results.append(ResolveResult(
                hostname=host, host=text, port=port, family=address_family, proto=0, flags=socket.AI_NUMERICHOST,
            ))
        if not results:
            raise OSError(f"no checked address of {host} in address family {family}")
        return results

    async def close(self) -> None:
        return None


def ssl_setting(insecure: bool, ca_file: str | None) -> bool | ssl.SSLContext:
    if insecure:
        return False
    if ca_file:
        return ssl.create_default_context(cafile=ca_file)
    return True


def checkin_body(agent_id: str, tenant: str, seq: int) -> bytes:
    return json.dumps({"agent_id": agent_id, "tenant": tenant, "seq": seq, "status": "ok"}).encode()


class CheckinClient:
    """A session bound to one checked target; use `async with`."""

    def __init__(
        self,
        target: Target,
        timeout: float,
        connections: int,
        new_connections: bool = False,
        tls: bool | ssl.SSLContext = True,
        path: str = CHECKIN_PATH,
    ):
        self._url = target.endpoint(path)
        self._target = target
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._connections = connections
        self._new_connections = new_connections
        self._tls = tls
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> CheckinClient:
        connector = aiohttp.TCPConnector(
            resolver=PinnedResolver(self._target),
            limit=self._connections,
            force_close=self._new_connections,
            keepalive_timeout=None if self._new_connections else KEEPALIVE_SECONDS,
            ssl=self._tls,
            # aiohttp rounds timeouts above this up to whole seconds; latency limits must stay exact.
            timeout_ceil_threshold=86400,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            trust_env=False,
            headers={"User-Agent": f"fleet-agentsim/{__version__}", "Content-Type": "application/json"},
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def checkin(self, body: bytes, authorization: str | None = None) -> Outcome:
        """POST one check-in, with the agent's `Authorization` header when it has one.

        Never raises for anything the network or the server does.
        """
        if self._session is None:
            raise RuntimeError("CheckinClient is used outside `async with`")
        headers = {"Authorization": authorization} if authorization else None
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with self._session.post(self._url, data=body, headers=headers, allow_redirects=False) as response:
                payload = await response.read()
                latency = loop.time() - started
                return classify_answer(response.status, response.headers, payload, latency)
        except TimeoutError:
            # Checked first: aiohttp's own timeouts also derive from connection errors.
            return Outcome(latency=None, error="timeout", message=f"no complete answer within {self._timeout.total} s")
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, OSError) as exc:
            return Outcome(latency=None, error="connect", message=_describe(exc))
        except aiohttp.ClientError as exc:
            return Outcome(latency=None, error="other", message=_describe(exc))


def classify_answer(status: int, headers: Any, payload: bytes, latency: float) -> Outcome:
    """An answered request: acknowledged only for a 2xx whose JSON says ok: true."""
    node = headers.get("X-Fleet-Node")
    version = headers.get("X-Fleet-Version")
    document = _json_object(payload)
    node = node or _string(document.get("node"))
    version = version or _string(document.get("version"))
    outcome = Outcome(latency=latency, status=status, node=node, version=version)
    if 200 <= status < 300 and document.get("ok") is True:
        outcome.duplicate = document.get("duplicate") is True
        return outcome
    if status in AUTH_ERRORS:
        outcome.error = AUTH_ERRORS[status]
    elif 400 <= status < 500:
        outcome.error = "4xx"
    elif 500 <= status < 600:
        outcome.error = "5xx"
    else:
        outcome.error = "other"
    what = "without ok: true" if 200 <= status < 300 else "answered"
    detail = document.get("error") if isinstance(document.get("error"), str) else _text(payload)
    outcome.message = f"HTTP {status} {what} by {node or 'no X-Fleet-Node'}: {detail}"[:MESSAGE_CHARS]
    return outcome


def _json_object(payload: bytes) -> dict[str, Any]:
    try:
        document = json.loads(payload)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _text(payload: bytes) -> str:
    return " ".join(payload.decode("utf-8", "replace").split())[:MESSAGE_CHARS] or "(empty body)"


def _describe(exc: BaseException) -> str:
    text = str(exc) or repr(exc)
    return f"{type(exc).__name__}: {text}"[:MESSAGE_CHARS]
