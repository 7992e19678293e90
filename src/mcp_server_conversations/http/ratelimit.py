"""--rate-limit N: at most N HTTP requests by one principal in any 60 s, on MCP and REST alike; past
that, 429 with `Retry-After` (whole seconds until a request is allowed), in the path's dialect.

It sits behind the authentication guard, so it counts only requests that acted for a principal (a
401 never reaches it) and reads the principal the guard resolved. The count is kept in the database
(storage `take_request`: the times of the principal's latest accepted requests, one statement a
request on PostgreSQL, under the principal's row lock), so every replica on the database enforces one
limit; a refused request is not counted. The health probe and /.well-known documents are exempt.

A counter per process would be cheaper but lets each replica accept N; a fixed window (one counter
per minute) would be one small update too but accepts 2N across a window's edge, where "any 60 s"
allows N.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

from .. import principals
from ..errors import StorageUnavailableError
from ..storage import Store
from .auth import OPEN_PREFIXES
from .security import reply

log = logging.getLogger("mcp_server_conversations.http.ratelimit")

WINDOW = 60.0  # seconds


def retry_after(wait: float) -> int:
    """Whole seconds to wait, never 0: a client retrying after `Retry-After: 0` would only be refused again."""
    return max(1, math.ceil(wait))


class RateLimit:
    """At most `limit` requests per principal in any WINDOW seconds (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        store: Store,
        limit: int,
        open_paths: frozenset[str] = frozenset({"/healthz"}),
        open_prefixes: Sequence[str] = OPEN_PREFIXES,
    ) -> None:
        self.app, self.store, self.limit = app, store, limit
        self.open_paths, self.open_prefixes = open_paths, tuple(open_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or path in self.open_paths or path.startswith(self.open_prefixes):
            return await self.app(scope, receive, send)
        principal = scope.get("state", {}).get("principal") or principals.current()
        try:
            wait = await self.store.take_request(principal, self.limit, WINDOW)
        except StorageUnavailableError:  # the request itself will meet the database's state; don't add to it
            log.warning("could not count a request against --rate-limit: the database is unavailable")
            wait = 0.0
        if wait > 0:
            seconds = retry_after(wait)
            message = (
                f"rate limit exceeded: more than {self.limit} requests in {WINDOW:g} s by "
                f"{principals.display(principal)}; retry after {seconds} s"
            )
            return await reply(scope, send, 429, message, {"Retry-After": str(seconds)})
        await self.app(scope, receive, send)
