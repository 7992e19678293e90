"""Pure-ASGI guards for the HTTP server: Host/Origin checks, limits on a request's
headers, body size, body arrival time and (on /mcp) JSON nesting.

Pure ASGI rather than Starlette's BaseHTTPMiddleware, which buffers and breaks streamed (SSE)
responses. Each guard passes `lifespan` scopes through untouched so the app's lifespan (the MCP
session manager) still runs. Errors answer in the dialect of the path: a JSON-RPC error body
under /mcp, Letta's `{"detail": ...}` elsewhere.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..inputs import MAX_DEPTH, too_deep

log = logging.getLogger("mcp_server_conversations.http.app")

LOOPBACK_HOSTS = ("127.0.0.1:*", "localhost:*", "[::1]:*", "127.0.0.1", "localhost", "[::1]")
LOOPBACK_ORIGINS = ("http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*")
WILDCARD_BINDS = ("0.0.0.0", "::", "")

# JSON-RPC error codes (the SDK uses the same ones for its own transport errors).
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
# Request headers larger than this, all names and values together, get 431. Proxies' defaults
# are 8-64 KiB; a large JWT fits many times.
MAX_HEADER_BYTES = 32 * 1024


def is_loopback(host: str) -> bool:
    """Whether binding to `host` keeps the server reachable from this machine only."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


async def reply(
    scope: Scope,
    send: Send,
    status: int,
    message: str,
    headers: dict[str, str] | None = None,
    code: int = INVALID_REQUEST,
) -> None:
    """Answer a request with an error, shaped for MCP (JSON-RPC) or REST (`detail`) by path."""
    path: str = scope.get("path", "")
    if path == "/mcp" or path.startswith("/mcp/"):
        body = {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}
    else:
        body = {"detail": message}
    data = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def _matches(value: str, patterns: Iterable[str]) -> bool:
    """Exact match, `*` for anything, or `base:*` for `base` on any port (the SDK's syntax)."""
    for pattern in patterns:
        if pattern == "*" or value == pattern:
            return True
        if pattern.endswith(":*") and value.startswith(pattern[:-1]) and value[len(pattern) - 1 :].isdigit():
            return True
    return False


@dataclass(frozen=True)
class HostPolicy:
    """Which Host and Origin headers are accepted. `hosts=None` means any Host."""

    hosts: tuple[str, ...] | None
    origins: tuple[str, ...]

    @classmethod
    def for_bind(cls, bind_host: str, allowed_hosts: list[str], allowed_origins: list[str]) -> HostPolicy:
        """Loopback names always; plus the bound address when it is a specific one; plus what the
        operator listed. Bound to a wildcard address with no list, any Host is accepted (the server
        cannot know its public names) and a warning says how to pin them."""
        hosts = list(LOOPBACK_HOSTS) + list(allowed_hosts)
        if bind_host not in WILDCARD_BINDS and not is_loopback(bind_host):
            bare = f"[{bind_host}]" if ":" in bind_host and not bind_host.startswith("[") else bind_host
            hosts += [bare, f"{bare}:*"]
        elif bind_host in WILDCARD_BINDS and not allowed_hosts:
            log.warning("bound to %r with no --allowed-hosts: Host headers are not checked", bind_host)
            return cls(hosts=None, origins=LOOPBACK_ORIGINS + tuple(allowed_origins))
        return cls(hosts=tuple(hosts), origins=LOOPBACK_ORIGINS + tuple(allowed_origins))

    def host_ok(self, host: str | None) -> bool:
        return self.hosts is None or (host is not None and _matches(host.lower(), self.hosts))

    def origin_ok(self, origin: str | None) -> bool:
        return origin is None or _matches(origin.lower(), self.origins)  # no Origin: not a browser


class CheckHostOrigin:
    """DNS-rebinding protection for the whole app: 421 for an unknown Host, 403 for a foreign Origin."""

    def __init__(self, app: ASGIApp, policy: HostPolicy) -> None:
        self.app, self.policy = app, policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A health probe (a load balancer's, often HTTP/1.0 without Host) reads no data: no check.
        if scope["type"] == "http" and scope.get("path") != "/healthz":
            host, origin = _header(scope, b"host"), _header(scope, b"origin")
            if not self.policy.host_ok(host):
                log.warning("refused Host header %r", host)
                return await reply(scope, send, 421, f"Host {host!r} is not allowed; add it with --allowed-hosts")
            if not self.policy.origin_ok(origin):
                log.warning("refused Origin header %r", origin)
                return await reply(scope, send, 403, f"Origin {origin!r} is not allowed; add it with --allowed-origins")
        await self.app(scope, receive, send)


def bearer_token(header: bytes) -> bytes | None:
    """The token of an `Authorization: Bearer <token>` value; the scheme is case-insensitive (RFC 7235)."""
    scheme, _, token = header.strip().partition(b" ")
    token = token.strip(b" ")
    return token if scheme.lower() == b"bearer" and token else None


class LimitBody:
    """Limits on what a request sends before the app runs: 431 for headers over MAX_HEADER_BYTES,
    413 for a body over `max_bytes` (by Content-Length up front, else by counting what arrives),
    408 for a body that has not arrived within `timeout` seconds, and a JSON-RPC parse error for
    an /mcp body nested deeper than inputs.MAX_DEPTH (REST bodies are checked as they are parsed).

    The body is read before the app runs (bounded by the limit) and replayed to it, so an
    oversize chunked upload is refused before anything acts on it; later `receive` calls (the
    disconnect that ends an SSE stream) go straight through.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, timeout: float | None = None) -> None:
        self.app, self.max_bytes, self.timeout = app, max_bytes, timeout

    def _too_large(self) -> str:
        return f"request body too large: the limit is {self.max_bytes} bytes (--max-body-bytes)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if sum(len(k) + len(v) for k, v in scope.get("headers", ())) > MAX_HEADER_BYTES:
            return await reply(scope, send, 431, f"request headers too large: the limit is {MAX_HEADER_BYTES} bytes")
        declared = _header(scope, b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self.max_bytes:
            return await reply(scope, send, 413, self._too_large())
        body = bytearray()
        try:
            async with asyncio.timeout(self.timeout):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":
                        return  # the client left before its body arrived: nothing to answer
                    body += message.get("body", b"")
                    if len(body) > self.max_bytes:
                        return await reply(scope, send, 413, self._too_large())
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            problem = f"request body not received within {self.timeout:g} s (--request-timeout)"
            return await reply(scope, send, 408, problem, {"Connection": "close"})
        path = scope.get("path", "")
        if scope["method"] == "POST" and (path == "/mcp" or path.startswith("/mcp/")) and too_deep(bytes(body)):
            return await reply(
                scope, send, 400, f"Parse error: JSON nested deeper than {MAX_DEPTH} levels", code=PARSE_ERROR
            )
        pending: list[Message] = [{"type": "http.request", "body": bytes(body), "more_body": False}]

        async def replay() -> Message:
            return pending.pop(0) if pending else await receive()

        await self.app(scope, replay, send)


class EndStreams:
    """Finish a streamed response the app left open. On shutdown sse-starlette stops the SSE
    streams by returning without the final body message; closing the chunked body properly
    gives clients a clean end of stream instead of a reset, and uvicorn no error to log."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        state = {"started": False, "complete": False}

        async def tracking(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["started"] = True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                state["complete"] = True
            await send(message)

        await self.app(scope, receive, tracking)
        if state["started"] and not state["complete"]:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
