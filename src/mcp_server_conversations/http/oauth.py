"""OAuth 2.1 resource server: JWT access tokens verified against an issuer's published keys.

The server never issues tokens. It finds the issuer's JWKS through its metadata (RFC 8414, else
OpenID Connect discovery), keeps the keys, and fetches them again when a token names a key it does
not know (how a rotated key is picked up), at most once per REFETCH_INTERVAL so tokens with junk
`kid`s cannot make it hammer the issuer. Only asymmetric algorithms are accepted: `none` would
accept anything, and an HS* token "signed" with the issuer's public key is a classic forgery.
PyJWT (a dependency of the MCP SDK) does the JOSE work.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt

from .security import is_loopback

log = logging.getLogger("mcp_server_conversations.http.oauth")

ASYMMETRIC = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "ES256K", "EdDSA"}
)
SKEW = 60  # seconds of clock difference tolerated on exp, nbf and iat
REFETCH_INTERVAL = 10.0  # seconds between fetches of the issuer's keys prompted by unknown kids or failures
MAX_KEYS_AGE = 3600.0  # keys are fetched again after this long even when every kid is known
FETCH_TIMEOUT = 5.0


class InvalidToken(Exception):
    """401: the token is not one this server accepts (the message says why, for the client)."""


class InsufficientScope(Exception):
    """403: a valid token without every required scope."""

    def __init__(self, missing: Sequence[str]) -> None:
        super().__init__(f"the token lacks the required scope(s): {' '.join(missing)}")
        self.missing = list(missing)


class IssuerUnavailable(Exception):
    """503: the issuer's metadata or keys cannot be fetched, so no token can be checked now."""


@dataclass(frozen=True, slots=True)
class Verified:
    subject: str
    scopes: list[str]
    claims: dict[str, Any]


def url_problem(url: str, what: str) -> str | None:
    """Why `url` cannot serve as `what` (an issuer or this server's public URL), or None. Plain http
    only to this machine: tokens and keys must not cross a network in the clear."""
    try:
        parts = urlsplit(url)
    except ValueError as e:
        return f"{what} {url!r} is not a URL: {e}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{what} {url!r} must be an https:// URL"
    if parts.query or parts.fragment:
        return f"{what} {url!r} must not have a query or fragment"
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        return f"{what} {url!r} must use https:// (plain http only for localhost)"
    return None


def metadata_urls(issuer: str) -> list[str]:
    """Where the issuer's metadata may be, in the order the MCP authorization spec tries them:
    RFC 8414 (path inserted after the host), then OpenID Connect (inserted, then appended)."""
    parts = urlsplit(issuer)
    base, path = f"{parts.scheme}://{parts.netloc}", parts.path.rstrip("/")
    if not path:
        return [f"{base}/.well-known/oauth-authorization-server", f"{base}/.well-known/openid-configuration"]
    return [
        f"{base}/.well-known/oauth-authorization-server{path}",
        f"{base}/.well-known/openid-configuration{path}",
        f"{base}{path}/.well-known/openid-configuration",
    ]


def token_scopes(claims: dict[str, Any]) -> list[str]:
    """`scope` (RFC 9068: space-separated) or `scp` (a list, or a string, as some providers send)."""
    raw = claims.get("scope", claims.get("scp"))
    if isinstance(raw, str):
        return raw.split()
    if isinstance(raw, list):
        return [s for s in raw if isinstance(s, str)]
    return []


class JwtVerifier:
    """Verifies access tokens of one issuer for one audience; keys fetched lazily and cached."""

    def __init__(self, issuer: str, audience: str, required_scopes: Sequence[str] = ()) -> None:
        self.issuer = issuer
        # A trailing slash is spelling, not another resource: accept both forms of the audience.
        bare = audience.rstrip("/")
        self.audiences = list(dict.fromkeys([audience, bare, bare + "/"]))
        self.required_scopes = list(required_scopes)
        self._jwks_uri: str | None = None
        self._keys: dict[str | None, dict[str, Any]] = {}  # kid -> JWK (None: a key without a kid)
        self._parsed: dict[tuple[str | None, str], jwt.PyJWK] = {}
        self._fetched_at: float | None = None  # monotonic time of the last successful fetch
        self._tried_at: float | None = None  # of the last attempt, successful or not
        self._lock = asyncio.Lock()
        self.fetches = 0  # key fetches made (tests read it)

    async def verify(self, token: str) -> Verified:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            raise InvalidToken(f"malformed token: {e}") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ASYMMETRIC:
            raise InvalidToken(f"tokens signed with {alg!r} are not accepted")
        if kid is not None and not isinstance(kid, str):
            raise InvalidToken("malformed token: kid is not a string")
        key = await self._key(kid, alg)
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=self.audiences,
                issuer=self.issuer,
                leeway=SKEW,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise InvalidToken("the token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken(f"the token is not meant for this server (aud must be {self.audiences[0]})") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken(f"the token was not issued by {self.issuer}") from None
        except jwt.MissingRequiredClaimError as e:
            raise InvalidToken(f"the token lacks the {e.claim!r} claim") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("the token's signature does not verify") from None
        except (jwt.PyJWTError, ValueError, TypeError) as e:
            raise InvalidToken(f"the token cannot be verified: {e}") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise InvalidToken("the token's sub claim must be a non-empty string")
        scopes = token_scopes(claims)
        missing = [s for s in self.required_scopes if s not in scopes]
        if missing:
            raise InsufficientScope(missing)
        return Verified(subject=subject, scopes=scopes, claims=claims)

    async def _key(self, kid: str | None, alg: str) -> jwt.PyJWK:
        now = time.monotonic()
        stale = self._fetched_at is None or now - self._fetched_at > MAX_KEYS_AGE
        if stale or kid not in self._keys:
            await self._refresh(unknown_kid=not stale)
        jwk = self._keys.get(kid)
        if jwk is None and kid is None and len(self._keys) == 1:
            jwk = next(iter(self._keys.values()))  # an issuer with one key may leave kid out
        if jwk is None:
            raise InvalidToken("the token's signing key (kid) is not one of the issuer's keys")
        if jwk.get("alg") not in (None, alg):
            raise InvalidToken(f"the key {kid!r} is for {jwk['alg']}, not {alg}")
        parsed = self._parsed.get((kid, alg))
        if parsed is None:
            try:
                parsed = jwt.PyJWK(jwk, algorithm=alg)
            except (jwt.PyJWTError, ValueError, TypeError) as e:
                raise InvalidToken(f"the key {kid!r} does not fit {alg}: {e}") from None
            self._parsed[(kid, alg)] = parsed
        return parsed

    async def _refresh(self, *, unknown_kid: bool) -> None:
        """Fetch the keys, unless another request just did or the last attempt was too recent."""
        before = self._tried_at
        async with self._lock:
            if self._tried_at != before:
                return  # fetched (or tried) while this request waited for the lock
            now = time.monotonic()
            if self._tried_at is not None and now - self._tried_at < REFETCH_INTERVAL:
                if not self._keys:
                    raise IssuerUnavailable(f"the authorization server {self.issuer} was unreachable moments ago")
                return  # an unknown kid within the interval: refused with the keys at hand
            self._tried_at = now
            try:
                keys = await self._fetch_keys()
            except IssuerUnavailable as e:
                log.error("%s", e)
                if not self._keys:
                    raise
                return  # keep serving with the keys we have
            self._keys, self._parsed, self._fetched_at = keys, {}, time.monotonic()
            if unknown_kid:
                log.info("fetched the keys of %s again for an unknown kid", self.issuer)

    async def _fetch_keys(self) -> dict[str | None, dict[str, Any]]:
        self.fetches += 1
        async with httpx.AsyncClient(timeout=FETCH_TIMEOUT, follow_redirects=False) as http:
            if self._jwks_uri is None:
                self._jwks_uri = await self._discover(http)
            document = await _get_json(http, self._jwks_uri, "JWKS")
        found = document.get("keys")
        if not isinstance(found, list):
            raise IssuerUnavailable(f"the JWKS at {self._jwks_uri} has no keys list")
        keys: dict[str | None, dict[str, Any]] = {}
        for jwk in found:
            # Symmetric keys (kty oct) are never used to check a token; nor keys meant for encryption.
            if isinstance(jwk, dict) and jwk.get("kty") in ("RSA", "EC", "OKP") and jwk.get("use") in (None, "sig"):
                keys[jwk.get("kid") if isinstance(jwk.get("kid"), str) else None] = jwk
        return keys

    async def _discover(self, http: httpx.AsyncClient) -> str:
        problems = []
        for url in metadata_urls(self.issuer):
            try:
                metadata = await _get_json(http, url, "metadata")
            except IssuerUnavailable as e:
                problems.append(str(e))
                continue
            if metadata.get("issuer") != self.issuer:
                raise IssuerUnavailable(
                    f"the metadata at {url} names the issuer {metadata.get('issuer')!r}, not {self.issuer!r} as "
                    "given to --oauth-issuer (give it exactly as the identity provider spells it)"
                )
            jwks_uri = metadata.get("jwks_uri")
            if not isinstance(jwks_uri, str) or url_problem(jwks_uri, "jwks_uri"):
                raise IssuerUnavailable(f"the metadata at {url} has no usable jwks_uri ({jwks_uri!r})")
            return jwks_uri
        raise IssuerUnavailable(f"no metadata found for the issuer {self.issuer}: {'; '.join(problems)}")


async def _get_json(http: httpx.AsyncClient, url: str, what: str) -> dict[str, Any]:
    try:
        r = await http.get(url, headers={"Accept": "application/json"})
    except httpx.HTTPError as e:
        raise IssuerUnavailable(f"the issuer's {what} at {url} cannot be fetched: {e!r}") from None
    if r.status_code != 200:
        raise IssuerUnavailable(f"the issuer's {what} at {url} answered {r.status_code}")
    try:
        document = r.json()
    except ValueError:
        raise IssuerUnavailable(f"the issuer's {what} at {url} is not JSON") from None
    if not isinstance(document, dict):
        raise IssuerUnavailable(f"the issuer's {what} at {url} is not a JSON object")
    return document


def protected_resource_metadata(
    resource: str, issuer: str, scopes: Sequence[str], name: str = "mcp-server-conversations"
) -> dict[str, Any]:
    """RFC 9728 metadata: which authorization server issues tokens for this resource."""
    return {
        "resource": resource,
        "authorization_servers": [issuer],
        "scopes_supported": list(scopes),
        "bearer_methods_supported": ["header"],
        "resource_name": name,
    }
