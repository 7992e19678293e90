"""The authentication guard over a real store, in front of a small app that reports what it was
handed: the principal in `scope["state"]["principal"]` and in `principals.current()` (the
interface the MCP tools and REST routes read), for each kind of credential; open paths; the
open loopback server closing once a named token exists; last use written at most once a minute."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from mcp_server_conversations import principals
from mcp_server_conversations.http import auth as auth_module
from mcp_server_conversations.http.auth import Authenticate, Authenticator
from mcp_server_conversations.named_tokens import new_token, token_hash
from mcp_server_conversations.storage import Store

TOKEN = "the-single-token"


async def report(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers with the principal as the app sees it, both ways."""
    body = json.dumps({"state": scope.get("state", {}).get("principal"), "current": principals.current()}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def client(authenticator: Authenticator) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=Authenticate(report, authenticator))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def acting(http: httpx.AsyncClient, headers: dict[str, str] | None = None, path: str = "/mcp") -> Any:
    r = await http.post(path, headers=headers or {})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["state"] == got["current"], got
    return got["current"]


async def test_each_credential_acts_for_its_principal(store: Store) -> None:
    alice = new_token()
    await store.create_token("alice", token_hash(alice))
    guard = Authenticator(store, auth_token=TOKEN, open_without_credential=True)
    async with client(guard) as http:
        assert await acting(http, bearer(TOKEN)) == principals.LOCAL
        assert await acting(http, bearer(alice)) == "token:alice"
        assert await acting(http, bearer(alice), "/v1/agents") == "token:alice"
        assert await acting(http, {"Authorization": f"bEaReR   {alice}"}) == "token:alice"
        for headers in ({}, bearer("nope"), bearer(alice + "x"), {"Authorization": f"Basic {alice}"}):
            r = await http.post("/mcp", headers=headers)
            assert r.status_code == 401, headers
            assert r.headers["www-authenticate"].startswith("Bearer ")
            assert r.json()["error"]["message"].startswith("unauthorized")  # JSON-RPC shape under /mcp
        r = await http.get("/v1/agents", headers=bearer("nope"))
        assert r.status_code == 401 and r.json()["detail"].startswith("unauthorized: wrong bearer token")
        assert 'error="invalid_token"' in r.headers["www-authenticate"]
        for path in ("/healthz", "/.well-known/oauth-protected-resource"):  # open: no principal needed
            r = await http.get(path)
            assert r.status_code == 200 and r.json()["state"] is None
        await store.revoke_token("alice")
        assert (await http.post("/mcp", headers=bearer(alice))).status_code == 401  # at once


async def test_an_open_loopback_server_closes_once_a_named_token_exists(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    guard = Authenticator(store, auth_token=None, open_without_credential=True)
    async with client(guard) as http:
        assert await acting(http) == principals.LOCAL
        assert await acting(http, bearer("any-api-key")) == principals.LOCAL  # Letta's SDK sends one
        bob = new_token()
        await store.create_token("bob", token_hash(bob))  # as `tokens create` in another process
        assert await acting(http, bearer(bob)) == "token:bob"  # known at once: looked up per request
        monkeypatch.setattr(auth_module, "TOKENS_CHECK_TTL", 0.0)  # the cached look expires (1 s in service)
        assert (await http.post("/mcp")).status_code == 401
        assert (await http.post("/mcp", headers=bearer("any-api-key"))).status_code == 401
        await store.revoke_token("bob")
        assert await acting(http) == principals.LOCAL  # no named token left: open again
        assert (await http.post("/mcp", headers=bearer(bob))).status_code == 401  # but never for a revoked one


async def test_a_server_others_can_reach_never_serves_without_a_credential(store: Store) -> None:
    guard = Authenticator(store, auth_token=None, open_without_credential=False)
    async with client(guard) as http:
        assert (await http.post("/mcp")).status_code == 401
        assert (await http.post("/mcp", headers=bearer("any"))).status_code == 401
        carol = new_token()
        await store.create_token("carol", token_hash(carol))
        assert await acting(http, bearer(carol)) == "token:carol"


async def test_last_use_is_written_in_the_background_at_most_once_a_minute(store: Store) -> None:
    dave = new_token()
    await store.create_token("dave", token_hash(dave))
    guard = Authenticator(store, auth_token=None, open_without_credential=False)
    async with client(guard) as http:
        await acting(http, bearer(dave))
        await guard.close()  # waits for the background write
        [first] = await store.list_tokens()
        assert first.last_used_at is not None
        writes = store.database.writes  # type: ignore[attr-defined]
        for _ in range(20):
            await acting(http, bearer(dave))
        await guard.close()
        assert store.database.writes == writes  # type: ignore[attr-defined]
        [again] = await store.list_tokens()
        assert again.last_used_at == first.last_used_at
