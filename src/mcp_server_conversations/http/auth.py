"""Who an HTTP request acts for: one guard resolves its bearer credential to a principal.

- the single --auth-token: `local`;
- a named token (`tokens create NAME`): `token:NAME`, looked up by its hash in the database on every
  request, so a token created after this process started works at once and a revoke made by any
  process is refused at once;
- with --oauth-issuer, a JWT access token from that issuer: `oauth:SUB`;
- no credential: `local`, but only on a server nobody else can reach (loopback, or
  --allow-unauthenticated behind something that checks access) with no --auth-token, no
  --oauth-issuer and no named token in the database.

The guard puts the principal in `scope["state"]["principal"]` and runs the app inside
`principals.acting_as`, and sets `scope["user"]` to the SDK's AuthenticatedUser for it: the MCP
SDK's session manager binds a session to the user that opened it and answers another one as it
answers an unknown session.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from starlette.authentication import AuthCredentials
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import principals
from ..errors import StorageUnavailableError
from ..named_tokens import PREFIX, token_hash
from ..storage import Store
from ..util import now_iso
from .oauth import InsufficientScope, InvalidToken, IssuerUnavailable, JwtVerifier
from .security import bearer_token, reply

log = logging.getLogger("mcp_server_conversations.http.auth")

TOKENS_CHECK_TTL = 1.0  # seconds an open server trusts its last look for named tokens
TOUCH_INTERVAL = 60.0  # a token's last use is written at most this often per process
OPEN_PREFIXES = ("/.well-known/",)


class Refused(Exception):
    """An answer instead of the app: status, message and the WWW-Authenticate challenge."""

    def __init__(self, status: int, message: str, challenge: str | None = None) -> None:
        super().__init__(message)
        self.status, self.challenge = status, challenge


@dataclass(frozen=True, slots=True)
class Identity:
    principal: str
    scopes: list[str]


class Authenticator:
    """Resolves credentials; keeps the cached look for named tokens and the pending last-use times."""

    def __init__(
        self,
        store: Store,
        *,
        auth_token: str | None,
        open_without_credential: bool,
        oauth: JwtVerifier | None = None,
        resource_metadata_url: str | None = None,
    ) -> None:
        self.store = store
        self.auth_token = auth_token.encode() if auth_token else None
        # Whether, absent named tokens, a request without a credential may act for `local`.
        self.open = open_without_credential and not auth_token and oauth is None
        self.oauth = oauth
        self.resource_metadata_url = resource_metadata_url
        self._tokens_exist = False
        self._tokens_checked = -float("inf")
        self._tokens_lock = asyncio.Lock()
        self._touched: dict[str, float] = {}  # token hash -> monotonic time its use was last recorded
        self._pending: dict[str, str] = {}  # token hash -> ISO time of a use not yet written
        self._flush: asyncio.Task[None] | None = None

    def challenge(self, error: str | None = None, description: str | None = None, scope: str | None = None) -> str:
        parts = ['realm="mcp-server-conversations"']
        if error:
            parts.append(f'error="{error}"')
        if description:
            parts.append(f'error_description="{_quotable(description)}"')
        if scope:
            parts.append(f'scope="{scope}"')
        if self.resource_metadata_url:
            parts.append(f'resource_metadata="{self.resource_metadata_url}"')
        return "Bearer " + ", ".join(parts)

    async def identify(self, header: bytes | None) -> Identity:
        """The principal of a request's Authorization header value; Refused otherwise."""
        credential = bearer_token(header) if header else None
        if credential is None:
            if self.open and not await self._any_tokens():
                return Identity(principals.LOCAL, [])
            if header:
                problem = "wrong bearer token (use Authorization: Bearer <token>)"
                raise Refused(401, f"unauthorized: {problem}", self.challenge("invalid_request", problem))
            problem = "missing Authorization: Bearer <token> header"
            raise Refused(401, f"unauthorized: {problem}", self.challenge())
        if self.auth_token is not None and hmac.compare_digest(credential, self.auth_token):
            return Identity(principals.LOCAL, [])
        if self.oauth is not None and credential.count(b".") == 2:  # a JWT; named tokens have no dots
            return await self._oauth(credential)
        hashed = token_hash(credential)
        name = await self._named(hashed)
        if name is not None:
            self._note_use(hashed)
            return Identity(principals.for_token(name), [])
        if self.open and not credential.startswith(PREFIX.encode()) and not await self._any_tokens():
            # e.g. Letta's SDK always sends some api_key; but a revoked named token stays refused
            return Identity(principals.LOCAL, [])
        raise Refused(
            401,
            "unauthorized: wrong bearer token (unknown or revoked)",
            self.challenge("invalid_token", "unknown or revoked token"),
        )

    async def _oauth(self, credential: bytes) -> Identity:
        assert self.oauth is not None
        try:
            verified = await self.oauth.verify(credential.decode("ascii"))
        except UnicodeDecodeError:
            raise Refused(401, "unauthorized: malformed token", self.challenge("invalid_token")) from None
        except InvalidToken as e:
            raise Refused(401, f"unauthorized: {e}", self.challenge("invalid_token", str(e))) from None
        except InsufficientScope as e:
            challenge = self.challenge("insufficient_scope", str(e), " ".join(self.oauth.required_scopes))
            raise Refused(403, f"forbidden: {e}", challenge) from None
        except IssuerUnavailable as e:
            log.error("cannot check an access token: %s", e)
            raise Refused(503, f"the authorization server cannot be reached to check the token: {e}") from None
        return Identity(principals.for_oauth(verified.subject), verified.scopes)

    async def _named(self, hashed: str) -> str | None:
        try:
            return await self.store.token_name(hashed)
        except StorageUnavailableError as e:
            raise Refused(503, f"the database is unavailable to check the token: {e}") from None

    async def _any_tokens(self) -> bool:
        """Whether the database holds a named token, looked up at most once per TOKENS_CHECK_TTL: another
        process may create the first one at any time, and an open server must close within a second."""
        if time.monotonic() - self._tokens_checked < TOKENS_CHECK_TTL:
            return self._tokens_exist
        async with self._tokens_lock:
            if time.monotonic() - self._tokens_checked >= TOKENS_CHECK_TTL:
                try:
                    self._tokens_exist = await self.store.any_tokens()
                except StorageUnavailableError as e:
                    raise Refused(503, f"the database is unavailable: {e}") from None
                self._tokens_checked = time.monotonic()
        return self._tokens_exist

    def _note_use(self, hashed: str) -> None:
        """Record the token's use later, in the background, at most once per TOUCH_INTERVAL."""
        now = time.monotonic()
        if now - self._touched.get(hashed, -float("inf")) < TOUCH_INTERVAL:
            return
        self._touched[hashed] = now
        self._pending[hashed] = now_iso()
        if self._flush is None or self._flush.done():
            self._flush = asyncio.create_task(self._write_uses())

    async def _write_uses(self) -> None:
        while self._pending:
            used, self._pending = self._pending, {}
            try:
                await self.store.touch_tokens(used)
            except Exception as e:  # last use is informational: never fail or retry a request for it
                log.warning("could not record the last use of %d token(s): %s", len(used), e)

    async def close(self) -> None:
        """Write the uses still pending (at shutdown)."""
        if self._flush is not None:
            await asyncio.gather(self._flush, return_exceptions=True)


def _quotable(text: str) -> str:
    return text.replace("\\", "").replace('"', "'")


class Authenticate:
    """The guard: every request but the open paths acts for the principal its credential names, or
    gets 401 (403 for missing scopes, 503 when the credential cannot be checked now)."""

    def __init__(
        self,
        app: ASGIApp,
        authenticator: Authenticator,
        open_paths: frozenset[str] = frozenset({"/healthz"}),
        open_prefixes: Sequence[str] = OPEN_PREFIXES,
    ) -> None:
        self.app, self.auth = app, authenticator
        self.open_paths, self.open_prefixes = open_paths, tuple(open_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or path in self.open_paths or path.startswith(self.open_prefixes):
            return await self.app(scope, receive, send)
        header = next((v for k, v in scope.get("headers", ()) if k == b"authorization"), None)
        try:
            identity = await self.auth.identify(header)
        except Refused as r:
            headers = {"WWW-Authenticate": r.challenge} if r.challenge else {}
            if r.status == 503:
                headers["Retry-After"] = "10"
            return await reply(scope, send, r.status, str(r), headers)
        principal = identity.principal
        scope.setdefault("state", {})["principal"] = principal
        # The SDK's session manager binds each MCP session to this user (client_id and subject).
        token = AccessToken(token="", client_id=principal, scopes=identity.scopes, subject=principal)
        scope["user"] = AuthenticatedUser(token)
        scope["auth"] = AuthCredentials(identity.scopes)
        with principals.acting_as(principal):
            await self.app(scope, receive, send)
