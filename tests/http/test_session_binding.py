"""An MCP session belongs to the principal that opened it: its Mcp-Session-Id presented with another
principal's credential (a named token, the single --auth-token, an OAuth subject of the same name)
is answered exactly as an unknown session id is, for POST, GET and DELETE, and the session goes on
serving its owner."""

from __future__ import annotations

import uuid

import httpx
from http_helpers import mcp_client, serving
from oauth_issuer import LocalIssuer
from test_http_mcp import ACCEPT, INIT

from mcp_server_conversations.config import Settings
from mcp_server_conversations.named_tokens import new_token, token_hash
from mcp_server_conversations.storage import Store

PUBLIC = "https://conversations.example.com"
LIST = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def headers(token: str, session: str | None = None) -> dict[str, str]:
    out = {**ACCEPT, "Authorization": f"Bearer {token}", "MCP-Protocol-Version": "2025-11-25"}
    return {**out, "Mcp-Session-Id": session} if session else out


async def open_session(http: httpx.AsyncClient, url: str, token: str) -> str:
    opened = await http.post(url, json=INIT, headers={**ACCEPT, "Authorization": f"Bearer {token}"})
    assert opened.status_code == 200, opened.text
    session = opened.headers["mcp-session-id"]
    assert (await http.post(url, json=INITIALIZED, headers=headers(token, session))).status_code == 202
    return session


async def answers(
    http: httpx.AsyncClient, url: str, token: str, session: str, expected: list[tuple[int, bytes]] | None = None
) -> list[tuple[int, bytes]]:
    """What POST, GET and DELETE with this session id get (each compared with `expected` as it comes,
    so a GET that opens a stream is never reached when the POST already differs)."""
    got = []
    for method, body in (("POST", LIST), ("GET", None), ("DELETE", None)):
        r = await http.request(method, url, json=body, headers=headers(token, session))
        got.append((r.status_code, r.content))
        if expected is not None:
            assert got[-1] == expected[len(got) - 1], (method, got[-1])
    return got


async def test_a_session_answers_other_principals_as_an_unknown_one(
    settings: Settings, store: Store, oauth_issuer: LocalIssuer
) -> None:
    alice, bob = new_token(), new_token()
    await store.create_token("alice", token_hash(alice))
    await store.create_token("bob", token_hash(bob))
    update = {"auth_token": "operator", "oauth_issuer": oauth_issuer.url, "public_url": PUBLIC}
    async with serving(settings.model_copy(update=update)) as served, httpx.AsyncClient(timeout=30) as http:
        url = served.mcp_url
        session = await open_session(http, url, alice)
        others = {
            "token:bob": bob,
            "local": "operator",
            "oauth:alice": oauth_issuer.mint("alice", aud=PUBLIC),
        }
        for who, token in others.items():
            unknown = await answers(http, url, token, uuid.uuid4().hex)
            assert unknown[0][0] == 404, unknown
            assert await answers(http, url, token, session, unknown) == unknown, who
        # alice's session was neither used nor closed by the others
        mine = await http.post(url, json=LIST, headers=headers(alice, session))
        assert mine.status_code == 200 and b"create_agent" in mine.content
        assert (await http.delete(url, headers=headers(alice, session))).status_code == 200
        assert (await http.post(url, json=LIST, headers=headers(alice, session))).status_code == 404


async def test_the_sdk_client_keeps_its_session_across_calls(settings: Settings, store: Store) -> None:
    carol = new_token()
    await store.create_token("carol", token_hash(carol))
    async with serving(settings) as served:
        async with mcp_client(served.mcp_url, token=carol, mode="legacy") as client:
            for name in ("one", "two", "three"):
                assert not (await client.call_tool("create_agent", {"name": name})).is_error
