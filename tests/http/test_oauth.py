"""The server as an OAuth 2.1 resource server, against a real local issuer (tests/oauth_issuer.py):
the MCP SDK's client and Letta's SDK with JWT access tokens; every kind of bad token refused;
key rotation picked up without letting junk kids hammer the issuer; required scopes; the RFC 9728
metadata; an unreachable issuer answered with 503, never a hang or a 500; configuration errors."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from http_helpers import CONSOLE_SCRIPT, Served, console_env, mcp_client, serving
from letta_client import Letta
from mcp.shared.auth import ProtectedResourceMetadata
from oauth_issuer import LocalIssuer, ec_key
from test_http_mcp import ACCEPT, INIT

from mcp_server_conversations import principals
from mcp_server_conversations.config import Settings
from mcp_server_conversations.http import oauth
from mcp_server_conversations.http.auth import Authenticator, Refused
from mcp_server_conversations.http.oauth import JwtVerifier
from mcp_server_conversations.storage import Store

PUBLIC = "https://conversations.example.com"
METADATA_URL = f"{PUBLIC}/.well-known/oauth-protected-resource"


@asynccontextmanager
async def oauth_server(settings: Settings, issuer: LocalIssuer, **more: Any) -> AsyncIterator[Served]:
    update = {"oauth_issuer": issuer.url, "public_url": PUBLIC, **more}
    async with serving(settings.model_copy(update=update)) as served:
        yield served


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def b64(data: bytes | dict[str, Any]) -> str:
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def forged(issuer: LocalIssuer) -> dict[str, str]:
    """Tokens an attacker can make without the issuer's private key."""
    good = issuer.mint("alice", aud=PUBLIC)
    claims = claims_of(good)
    header_none = {"alg": "none", "typ": "JWT", "kid": issuer.key.kid}
    pem = issuer.key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header_hs = {"alg": "HS256", "typ": "JWT", "kid": issuer.key.kid}
    signing_input = f"{b64(header_hs)}.{b64(claims)}"
    hs_signature = b64(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())
    head, _, signature = good.split(".")
    tampered_claims = {**claims, "sub": "admin"}
    return {
        "alg none": f"{b64(header_none)}.{b64(claims)}.",
        "HS256 signed with the public key": f"{signing_input}.{hs_signature}",
        "tampered claims": f"{head}.{b64(tampered_claims)}.{signature}",
        "tampered signature": good[:-6] + ("AAAAAA" if not good.endswith("AAAAAA") else "BBBBBB"),
        "key of another issuer": issuer.mint("alice", aud=PUBLIC, key=ec_key("ec-1")),
        "not a JWT": "a.b.c",
    }


def refused_tokens(issuer: LocalIssuer) -> dict[str, str]:
    now = time.time()
    return {
        "expired": issuer.mint("alice", aud=PUBLIC, exp=now - 120),
        "wrong audience": issuer.mint("alice", aud="https://other.example.com"),
        "wrong issuer": issuer.mint("alice", aud=PUBLIC, iss=issuer.url + "/other"),
        "not valid yet": issuer.mint("alice", aud=PUBLIC, nbf=now + 300),
        "no sub": issuer.mint(None, aud=PUBLIC),
        "no exp": issuer.mint("alice", aud=PUBLIC, extra={"exp": None}),
        "no aud": issuer.mint("alice", aud=None),
        "unknown kid": issuer.mint("alice", aud=PUBLIC, kid="no-such-key"),
        **forged(issuer),
    }


async def test_mcp_and_letta_clients_work_with_access_tokens(settings: Settings, oauth_issuer: LocalIssuer) -> None:
    token = oauth_issuer.mint("alice@example.com", aud=PUBLIC, scopes=["conversations"])
    async with oauth_server(settings, oauth_issuer) as served:
        for mode in ("auto", "legacy"):
            async with mcp_client(served.mcp_url, token=token, mode=mode) as client:
                made = await client.call_tool("create_agent", {"name": f"by-{mode}"})
                assert not made.is_error
        letta = Letta(base_url=served.base_url, api_key=token, max_retries=0)
        assert {"by-auto", "by-legacy"} <= {a.name for a in (await asyncio.to_thread(letta.agents.list)).items}
        ec = oauth_issuer.mint("bob", aud=[PUBLIC, "another-api"], key=oauth_issuer.keys[1])  # ES256, aud list
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{served.base_url}/v1/agents/", headers=bearer(ec))).status_code == 200
            # within the 60 s skew: just expired is still accepted
            late = oauth_issuer.mint("carol", aud=PUBLIC, exp=time.time() - 30)
            assert (await http.get(f"{served.base_url}/v1/agents/", headers=bearer(late))).status_code == 200


async def test_bad_tokens_are_refused_with_the_resource_metadata(settings: Settings, oauth_issuer: LocalIssuer) -> None:
    async with oauth_server(settings, oauth_issuer) as served, httpx.AsyncClient() as http:
        missing = await http.post(served.mcp_url, json=INIT, headers=ACCEPT)
        assert missing.status_code == 401
        assert f'resource_metadata="{METADATA_URL}"' in missing.headers["www-authenticate"]
        for why, token in refused_tokens(oauth_issuer).items():
            for path in ("/mcp", "/v1/agents/"):
                r = await http.post(f"{served.base_url}{path}", json=INIT, headers={**ACCEPT, **bearer(token)})
                assert r.status_code == 401, (why, path, r.text)
                challenge = r.headers["www-authenticate"]
                assert challenge.startswith("Bearer ") and 'error="invalid_token"' in challenge, why
                assert f'resource_metadata="{METADATA_URL}"' in challenge, why
        good = oauth_issuer.mint("alice", aud=PUBLIC)
        r = await http.post(served.mcp_url, json=INIT, headers={**ACCEPT, **bearer(good)})
        assert r.status_code == 200, r.text  # still serving, and the good token works
    assert oauth_issuer.jwks_requests <= 2  # one fetch, maybe one for the unknown kid


async def test_reasons_reach_the_client(store: Store, oauth_issuer: LocalIssuer) -> None:
    guard = Authenticator(
        store, auth_token=None, open_without_credential=True, oauth=JwtVerifier(oauth_issuer.url, PUBLIC)
    )
    tokens = refused_tokens(oauth_issuer)
    expected = {
        "expired": "expired",
        "wrong audience": "not meant for this server",
        "wrong issuer": "not issued by",
        "not valid yet": "not valid yet",
        "no sub": "'sub'",
        "no exp": "'exp'",
        "alg none": "'none'",
        "HS256 signed with the public key": "'HS256'",
        "unknown kid": "kid",
        "tampered claims": "signature",
    }
    for why, needle in expected.items():
        with pytest.raises(Refused) as refused:
            await guard.identify(f"Bearer {tokens[why]}".encode())
        assert refused.value.status == 401 and needle in str(refused.value), (why, str(refused.value))


async def test_the_principal_is_the_subject_kept_apart_from_local_and_token_names(
    store: Store, oauth_issuer: LocalIssuer
) -> None:
    verifier = JwtVerifier(oauth_issuer.url, PUBLIC)
    guard = Authenticator(store, auth_token="t", open_without_credential=True, oauth=verifier)
    for sub in ("alice", "local", "token:alice"):
        identity = await guard.identify(f"Bearer {oauth_issuer.mint(sub, aud=PUBLIC)}".encode())
        assert identity.principal == principals.for_oauth(sub) == f"oauth:{sub}"
    assert (await guard.identify(b"Bearer t")).principal == principals.LOCAL


async def test_a_rotated_key_is_picked_up_and_junk_kids_do_not_hammer_the_issuer(
    settings: Settings, oauth_issuer: LocalIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(oauth, "REFETCH_INTERVAL", 60.0)  # 10 s in service: the junk all falls in one interval
    async with oauth_server(settings, oauth_issuer) as served, httpx.AsyncClient() as http:
        url = f"{served.base_url}/v1/agents/"
        old = oauth_issuer.mint("alice", aud=PUBLIC)
        assert (await http.get(url, headers=bearer(old))).status_code == 200
        fetched = oauth_issuer.jwks_requests
        junk = [oauth_issuer.mint("alice", aud=PUBLIC, kid=f"junk-{uuid.uuid4()}") for _ in range(30)]
        answers = await asyncio.gather(*(http.get(url, headers=bearer(t)) for t in junk))
        assert {r.status_code for r in answers} == {401}
        assert oauth_issuer.jwks_requests - fetched <= 1

        monkeypatch.setattr(oauth, "REFETCH_INTERVAL", 0.5)  # and the rotation is not held up by it
        await asyncio.sleep(0.5)
        oauth_issuer.rotate()  # the old RSA key leaves the JWKS
        new = oauth_issuer.mint("alice", aud=PUBLIC)
        start = time.monotonic()
        while (await http.get(url, headers=bearer(new))).status_code != 200:
            assert time.monotonic() - start < 20, "the rotated key was not picked up"
            await asyncio.sleep(0.2)
        assert (await http.get(url, headers=bearer(old))).status_code == 401  # the retired key is gone


async def test_required_scopes(settings: Settings, oauth_issuer: LocalIssuer) -> None:
    async with (
        oauth_server(settings, oauth_issuer, oauth_required_scopes=["conversations", "write"]) as served,
        httpx.AsyncClient() as http,
    ):
        url = f"{served.base_url}/v1/agents/"
        for scopes, claim in ((None, "scope"), (["conversations"], "scope"), (["write", "other"], "scp")):
            token = oauth_issuer.mint("alice", aud=PUBLIC, scopes=scopes, scope_claim=claim)
            r = await http.get(url, headers=bearer(token))
            assert r.status_code == 403, (scopes, r.text)
            challenge = r.headers["www-authenticate"]
            assert 'error="insufficient_scope"' in challenge and 'scope="conversations write"' in challenge
            assert f'resource_metadata="{METADATA_URL}"' in challenge
            assert "scope" in r.json()["detail"]
        for scopes, claim in ((["conversations", "write", "openid"], "scope"), (["write", "conversations"], "scp")):
            token = oauth_issuer.mint("alice", aud=PUBLIC, scopes=scopes, scope_claim=claim)
            assert (await http.get(url, headers=bearer(token))).status_code == 200, scopes
        r = await http.get(f"{served.base_url}/.well-known/oauth-protected-resource")
        assert r.json()["scopes_supported"] == ["conversations", "write"]


async def test_protected_resource_metadata(settings: Settings, oauth_issuer: LocalIssuer) -> None:
    audience = "https://api.example.com/conversations"
    async with oauth_server(settings, oauth_issuer, oauth_audience=audience) as served, httpx.AsyncClient() as http:
        for path in ("/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"):
            r = await http.get(f"{served.base_url}{path}")  # no credential needed
            assert r.status_code == 200, path
            body = r.json()
            assert body["resource"] == audience
            assert body["authorization_servers"] == [oauth_issuer.url]  # exactly as given
            assert body["bearer_methods_supported"] == ["header"] and body["scopes_supported"] == []
            ProtectedResourceMetadata.model_validate(body)  # what the MCP SDK's client parses
        # the audience is --oauth-audience now, not --public-url
        assert (
            await http.get(f"{served.base_url}/v1/agents/", headers=bearer(oauth_issuer.mint("a", aud=PUBLIC)))
        ).status_code == 401
        ok = await http.get(f"{served.base_url}/v1/agents/", headers=bearer(oauth_issuer.mint("a", aud=audience)))
        assert ok.status_code == 200
    async with running_without_oauth(settings) as base, httpx.AsyncClient() as http:
        assert (await http.get(f"{base}/.well-known/oauth-protected-resource")).status_code == 404


@asynccontextmanager
async def running_without_oauth(settings: Settings) -> AsyncIterator[str]:
    async with serving(settings) as served:
        yield served.base_url


@pytest.mark.parametrize(("path", "discovery"), [("/realms/team", "oidc"), ("/tenant", "oauth"), ("", "oidc")])
async def test_metadata_discovery_shapes(settings: Settings, path: str, discovery: str) -> None:
    """Keycloak's /realms/NAME with OpenID discovery, RFC 8414 with a path, OpenID at the root."""
    with LocalIssuer(path=path, discovery=discovery) as issuer:
        async with oauth_server(settings, issuer) as served, httpx.AsyncClient() as http:
            r = await http.get(f"{served.base_url}/v1/agents/", headers=bearer(issuer.mint("a", aud=PUBLIC)))
            assert r.status_code == 200, r.text


async def test_an_unreachable_issuer_gets_503_not_a_hang(settings: Settings, oauth_issuer: LocalIssuer) -> None:
    token = oauth_issuer.mint("alice", aud=PUBLIC)
    oauth_issuer.down = True
    async with oauth_server(settings, oauth_issuer) as served, httpx.AsyncClient(timeout=30) as http:
        for _ in range(3):
            r = await http.get(f"{served.base_url}/v1/agents/", headers=bearer(token))
            assert r.status_code == 503 and "authorization server" in r.json()["detail"], r.text
            assert r.headers["retry-after"]
        assert oauth_issuer.metadata_requests <= 2  # not once per request
    with LocalIssuer() as gone:
        pass  # started and stopped: its port is closed now
    async with oauth_server(settings, gone) as served:  # nothing listens at its address any more
        async with httpx.AsyncClient(timeout=30) as http:
            start = time.monotonic()
            r = await http.post(served.mcp_url, json=INIT, headers={**ACCEPT, **bearer(token)})
            assert r.status_code == 503 and time.monotonic() - start < 15
            assert r.json()["error"]["message"].startswith("the authorization server cannot be reached")


async def test_named_tokens_and_the_auth_token_still_work_beside_oauth(
    settings: Settings, oauth_issuer: LocalIssuer, store: Store
) -> None:
    from mcp_server_conversations.named_tokens import new_token, token_hash

    named = new_token()
    await store.create_token("ci", token_hash(named))
    async with oauth_server(settings, oauth_issuer, auth_token="operator") as served, httpx.AsyncClient() as http:
        for token in ("operator", named, oauth_issuer.mint("alice", aud=PUBLIC)):
            assert (await http.get(f"{served.base_url}/v1/agents/", headers=bearer(token))).status_code == 200


@pytest.mark.sqlite_only("configuration, before any database")
@pytest.mark.parametrize(
    ("flags", "problem"),
    [
        (["--oauth-issuer", "https://id.example.com"], "requires public_url"),
        (["--oauth-issuer", "http://id.example.com", "--public-url", PUBLIC], "must use https://"),
        (["--oauth-issuer", "id.example.com", "--public-url", PUBLIC], "must be an https:// URL"),
        (["--oauth-audience", "x"], "need oauth_issuer"),
        (["--oauth-issuer", "https://id.example.com", "--public-url", "https://x/?a=b"], "query"),
    ],
)
def test_oauth_configuration_errors_are_clear(settings: Settings, flags: list[str], problem: str) -> None:
    argv = [CONSOLE_SCRIPT, "--transport", "streamable-http", "--db", str(settings.db), *flags]
    done = subprocess.run(argv, env=console_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and problem in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.sqlite_only("configuration")
def test_oauth_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVERSATIONS_OAUTH_ISSUER", "https://id.example.com/realms/team")
    monkeypatch.setenv("CONVERSATIONS_PUBLIC_URL", PUBLIC)
    monkeypatch.setenv("CONVERSATIONS_OAUTH_AUDIENCE", "api://conversations")
    monkeypatch.setenv("CONVERSATIONS_OAUTH_REQUIRED_SCOPES", "conversations, write")
    s = Settings()
    assert s.oauth_issuer == "https://id.example.com/realms/team" and s.public_url == PUBLIC
    assert s.oauth_audience == "api://conversations" and s.oauth_required_scopes == ["conversations", "write"]


async def test_an_issuer_that_never_answers_costs_a_bounded_wait(
    settings: Settings, oauth_issuer: LocalIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(oauth, "FETCH_DEADLINE", 1.0)  # 10 s in service
    with socket.socket() as silent:  # accepts connections (the kernel's backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        token = oauth_issuer.mint("alice", aud=PUBLIC, iss=url)
        async with oauth_server(settings, oauth_issuer, oauth_issuer=url) as served:
            async with httpx.AsyncClient(timeout=30) as http:
                start = time.monotonic()
                r = await http.get(f"{served.base_url}/v1/agents/", headers=bearer(token))
                assert r.status_code == 503 and "did not answer within 1 s" in r.json()["detail"], r.text
                assert time.monotonic() - start < 8  # the deadline, not the 5 s per fetch times three
