"""Streamable HTTP: one Starlette app that serves MCP at /mcp, Letta's REST API under /v1 and
an unauthenticated /healthz, behind the guards of `http_security`.

The App (store, services, runtime) is opened once, before uvicorn starts, and shared by MCP and
REST; it is closed after uvicorn has drained its connections, including on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.types import ASGIApp

from .. import __version__, rest
from ..app import App, open_app
from ..config import Settings, redacted
from ..mcp.server import build_server
from .auth import Authenticate, Authenticator
from .cancel import CancelOnDisconnect
from .oauth import JwtVerifier, protected_resource_metadata
from .ratelimit import RateLimit
from .security import MAX_HEADER_BYTES, CheckHostOrigin, EndStreams, HostPolicy, LimitBody, is_loopback
from .timeout import with_header_timeout

log = logging.getLogger("mcp_server_conversations.http.app")

# Seconds uvicorn waits for open responses after SIGTERM before cancelling them. SSE streams
# end at once on shutdown (sse-starlette watches uvicorn), so this only bounds stragglers.
SHUTDOWN_GRACE = 10


def auth_token(settings: Settings) -> str | None:
    """The configured token; a blank value (an empty env var) counts as none."""
    token = (settings.auth_token or "").strip()
    return token or None


def bind_problem(settings: Settings) -> str | None:
    """Why this configuration must not start unless the database holds a named token, or None.
    Non-loopback without --auth-token or --oauth-issuer would otherwise answer nobody."""
    if is_loopback(settings.host) or auth_token(settings) or settings.oauth_issuer or settings.allow_unauthenticated:
        return None
    return (
        f"refusing to serve on {settings.host!r} without authentication: no --auth-token, no --oauth-issuer "
        "and no named token in the database. Set --auth-token (or CONVERSATIONS_AUTH_TOKEN), create a named "
        "token (mcp-server-conversations tokens create NAME), set --oauth-issuer, bind 127.0.0.1, or pass "
        "--allow-unauthenticated if something in front of the server checks access."
    )


class BindRefused(Exception):
    """bind_problem holds and the database has no named token either."""


def resource_metadata_url(settings: Settings) -> str | None:
    """Where clients find the RFC 9728 metadata (under --public-url); None without OAuth."""
    if not settings.oauth_issuer or not settings.public_url:
        return None
    return settings.public_url.rstrip("/") + "/.well-known/oauth-protected-resource"


def authenticator(settings: Settings, app: App) -> Authenticator:
    oauth = None
    if settings.oauth_issuer:
        assert settings.public_url  # Settings refuses an issuer without it
        audience = settings.oauth_audience or settings.public_url
        if not audience.startswith(("https://", "http://")):
            log.warning(
                "--oauth-audience %r is not a URL: MCP clients read the protected resource metadata's resource "
                "(this audience) as a URL and may refuse it; prefer an https:// audience",
                audience,
            )
        oauth = JwtVerifier(settings.oauth_issuer, audience, settings.oauth_required_scopes)
    return Authenticator(
        app.store,
        auth_token=auth_token(settings),
        open_without_credential=is_loopback(settings.host) or settings.allow_unauthenticated,
        oauth=oauth,
        resource_metadata_url=resource_metadata_url(settings),
    )


def well_known_routes(settings: Settings) -> list[Route]:
    """RFC 9728 protected resource metadata, at the root and under /mcp (where MCP clients look first)."""
    if not settings.oauth_issuer or not settings.public_url:
        return []
    document = protected_resource_metadata(
        settings.oauth_audience or settings.public_url, settings.oauth_issuer, settings.oauth_required_scopes
    )

    async def metadata(_: Request) -> JSONResponse:
        return JSONResponse(document, headers={"Cache-Control": "public, max-age=3600"})

    base = "/.well-known/oauth-protected-resource"
    return [Route(base, metadata, methods=["GET"]), Route(f"{base}/mcp", metadata, methods=["GET"])]


def build_http_app(settings: Settings, app: App) -> ASGIApp:
    """The whole HTTP surface over an already-open App. Its lifespan runs the MCP session manager."""
    mcp = build_server(settings, shared=app)
    # Called once: each call makes a new session manager. Host/Origin are checked for the whole
    # app by CheckHostOrigin, so the SDK's own check (which covers /mcp only) is switched off.
    inner = mcp.streamable_http_app(
        streamable_http_path="/mcp",
        json_response=settings.json_response,
        stateless_http=settings.stateless,
        max_request_body_size=settings.max_body_bytes,
        session_idle_timeout=settings.session_idle_timeout,
        max_sessions=settings.max_sessions,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    session_manager = mcp.session_manager
    auth = authenticator(settings, app)

    async def healthz(_: Request) -> JSONResponse:
        try:
            await app.store.ping()
        except Exception as e:  # report, don't crash: a load balancer reads the status code
            log.error("health check failed: %s", e)  # details in the log, not to unauthenticated callers
            body = {"status": "error", "version": __version__, "detail": "database unreachable"}
            return JSONResponse(body, status_code=503)
        return JSONResponse({"status": "ok", "version": __version__})

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with session_manager.run():
            try:
                yield
            finally:
                # Before the session manager cancels the sessions' tasks: runs still in flight end
                # `interrupted` (what a shutdown means), not `cancelled` by the teardown. open_app's own
                # stop later finds nothing left to do.
                if app.runtime is not None:
                    await app.runtime.stop()
                await auth.close()

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        *well_known_routes(settings),
        *inner.routes,
        Mount("/v1", routes=rest.routes(app)),
    ]
    starlette = Starlette(routes=routes, lifespan=lifespan)
    guarded: ASGIApp = LimitBody(CancelOnDisconnect(starlette), settings.max_body_bytes, settings.request_timeout)
    if settings.rate_limit is not None:  # behind authentication: it counts requests by their principal
        guarded = RateLimit(guarded, app.store, settings.rate_limit)
    guarded = Authenticate(guarded, auth)
    policy = HostPolicy.for_bind(settings.host, settings.allowed_hosts, settings.allowed_origins)
    return EndStreams(CheckHostOrigin(guarded, policy))


def auth_summary(settings: Settings) -> str:
    """What the banner says about authentication."""
    accepted = (["--auth-token"] if auth_token(settings) else []) + ["named tokens"]
    if settings.oauth_issuer:
        accepted.append(f"OAuth tokens of {settings.oauth_issuer}")
    return f"; accepts {', '.join(accepted)}"


def uvicorn_server(settings: Settings, asgi: ASGIApp) -> uvicorn.Server:
    """The uvicorn server for `asgi`; logs go through our stderr logging, not uvicorn's stdout access log."""
    config = uvicorn.Config(
        asgi,
        host=settings.host,
        port=settings.port,
        lifespan="on",
        log_config=None,
        log_level=settings.log_level.lower(),
        access_log=settings.log_level.upper() == "DEBUG",
        ws="none",
        timeout_graceful_shutdown=SHUTDOWN_GRACE,
        server_header=False,
        http=with_header_timeout(settings.request_timeout),
        # Headers arriving in pieces are refused by h11 beyond this; whole ones by LimitBody (431).
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
    )
    return uvicorn.Server(config)


async def serve_app(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Open the App, serve until uvicorn is told to exit, then close the App."""
    async with open_app(settings) as app:
        if stop is not None and stop.is_set():  # signalled while the database was opening
            return
        problem = bind_problem(settings)
        if problem and not await app.store.any_tokens():
            raise BindRefused(problem)
        await uvicorn_server(settings, build_http_app(settings, app)).serve()
    log.info("database closed")


def serve_http(settings: Settings) -> None:
    """Entry point of `--transport streamable-http` (blocking). Exit code 2 for a refused bind."""
    location = settings.resolved_db()
    if bind_problem(settings) and isinstance(location, Path) and not location.exists():
        # A new database holds no named token: refuse before creating it.
        print(f"mcp-server-conversations: {bind_problem(settings)}", file=sys.stderr)
        raise SystemExit(2)
    checked = is_loopback(settings.host) or auth_token(settings) or settings.oauth_issuer
    if settings.allow_unauthenticated and not checked:
        log.warning("serving on %s WITHOUT authentication (--allow-unauthenticated)", settings.host)
    # uvicorn handles SIGTERM/SIGINT while it serves, then re-raises the signal to whatever
    # handler was there before. Ours only notes it, so the App still closes (runs marked,
    # database closed) and the process exits 0 instead of dying inside uvicorn.
    caught: list[int] = []
    stop = asyncio.Event()

    def note(signum: int, _: Any) -> None:
        caught.append(signum)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, note)
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    banner = (
        f"mcp-server-conversations {__version__}: MCP at http://{host}:{settings.port}/mcp, Letta REST under /v1, "
        f"database {redacted(settings.resolved_db())}{auth_summary(settings)}"
    )
    print(banner, file=sys.stderr)
    try:
        asyncio.run(serve_app(settings, stop))
    except BindRefused as e:
        print(f"mcp-server-conversations: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    if caught:
        log.info("stopped by %s", signal.Signals(caught[0]).name)
