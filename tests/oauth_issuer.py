"""A real local OAuth 2.1 / OpenID Connect issuer for tests: its own RSA and EC keys, metadata and a
JWKS served over HTTP on 127.0.0.1, and `mint(...)` for access tokens as an identity provider signs
them. It never runs a login: tests mint tokens directly, as if a client had finished the flow.

    with LocalIssuer() as issuer:             # or the `oauth_issuer` fixture
        token = issuer.mint("alice", aud="http://127.0.0.1:8283", scopes=["conversations"])
        issuer.rotate()                        # a new signing key; the old one leaves the JWKS
        issuer.jwks_requests                   # how often servers fetched the keys

`path` gives an issuer with a path (Keycloak's /realms/NAME shape); `discovery` picks which metadata
documents it serves ("oauth": RFC 8414 only, "oidc": OpenID Connect only, "both"). `down = True`
makes every endpoint answer 503.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: Any

    def public_jwk(self) -> dict[str, Any]:
        algorithm = RSAAlgorithm if self.alg.startswith(("RS", "PS")) else ECAlgorithm
        jwk = json.loads(algorithm.to_jwk(self.private.public_key()))
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}


def rsa_key(kid: str, alg: str = "RS256") -> SigningKey:
    return SigningKey(kid, alg, rsa.generate_private_key(public_exponent=65537, key_size=2048))


def ec_key(kid: str) -> SigningKey:
    return SigningKey(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))


class LocalIssuer:
    def __init__(self, *, path: str = "", discovery: str = "both") -> None:
        self.path = path.rstrip("/")
        self.discovery = discovery
        self.keys: list[SigningKey] = [rsa_key("rsa-1"), ec_key("ec-1")]
        self.jwks_requests = 0
        self.metadata_requests = 0
        self.down = False
        self._rotations = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}{self.path}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # -- lifecycle --

    def __enter__(self) -> LocalIssuer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- what tests use --

    @property
    def key(self) -> SigningKey:
        """The current signing key (RSA)."""
        return self.keys[0]

    def rotate(self, *, keep_old: bool = False) -> SigningKey:
        """A new RSA signing key; without `keep_old` the previous one leaves the JWKS."""
        self._rotations += 1
        new = rsa_key(f"rsa-rotated-{self._rotations}")
        self.keys = [new, *(self.keys if keep_old else self.keys[1:])]
        return new

    def mint(
        self,
        sub: str | None,
        *,
        aud: str | Sequence[str] | None,
        scopes: Sequence[str] | None = None,
        exp: float | None = None,
        ttl: float = 300,
        nbf: float | None = None,
        iss: str | None = None,
        key: SigningKey | None = None,
        kid: str | None | bool = True,
        alg: str | None = None,
        scope_claim: str = "scope",
        extra: dict[str, Any] | None = None,
    ) -> str:
        """A signed access token. `kid=True` names the signing key's kid, None/False leaves it out, a
        string names any kid. `exp=None` means now + ttl; pass extra={"exp": None} to drop a claim."""
        signer = key or self.key
        now = time.time()
        claims: dict[str, Any] = {"iss": iss or self.url, "iat": int(now), "exp": int(exp or now + ttl)}
        if sub is not None:
            claims["sub"] = sub
        if aud is not None:
            claims["aud"] = aud if isinstance(aud, str) else list(aud)
        if nbf is not None:
            claims["nbf"] = int(nbf)
        if scopes is not None:
            claims[scope_claim] = " ".join(scopes) if scope_claim == "scope" else list(scopes)
        for name, value in (extra or {}).items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        headers = {"kid": signer.kid if kid is True else kid} if kid not in (None, False) else {}
        return jwt.encode(claims, signer.private, algorithm=alg or signer.alg, headers=headers)

    def metadata(self) -> dict[str, Any]:
        return {
            "issuer": self.url,
            "authorization_endpoint": f"{self.url}/authorize",
            "token_endpoint": f"{self.url}/token",
            "jwks_uri": f"{self.url}/jwks",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["conversations", "openid"],
        }

    # -- the HTTP side --

    def _routes(self) -> dict[str, Any]:
        oauth = f"/.well-known/oauth-authorization-server{self.path}"
        oidc = [f"/.well-known/openid-configuration{self.path}", f"{self.path}/.well-known/openid-configuration"]
        routes: dict[str, Any] = {f"{self.path}/jwks": "jwks"}
        if self.discovery in ("oauth", "both"):
            routes[oauth] = "metadata"
        if self.discovery in ("oidc", "both"):
            routes[oidc[1] if self.path else oidc[0]] = "metadata"
        return routes

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                what = issuer._routes().get(self.path)
                if issuer.down:
                    return self._send(503, {"error": "down"})
                if what == "jwks":
                    issuer.jwks_requests += 1
                    return self._send(200, {"keys": [k.public_jwk() for k in issuer.keys]})
                if what == "metadata":
                    issuer.metadata_requests += 1
                    return self._send(200, issuer.metadata())
                self._send(404, {"error": "not_found"})

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


@pytest.fixture
def oauth_issuer() -> Iterator[LocalIssuer]:
    with LocalIssuer() as issuer:
        yield issuer
