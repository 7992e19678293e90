"""MCP over the real streamable-HTTP server (uvicorn on a loopback port): tool calls in both
client modes, health, sessions (cap, idle expiry), stateless replicas on one database, JSON mode."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from http_helpers import mcp_client, running_http_server, serving

from mcp_server_conversations import __version__
from mcp_server_conversations.config import Settings

MODES = ["auto", "legacy"]
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}},
}


def rpc_body(response: httpx.Response) -> dict:
    """The JSON-RPC message of a response, whether sent as JSON or as one SSE event."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        data = [line[5:].strip() for line in response.text.splitlines() if line.startswith("data:")]
        return json.loads(next(d for d in data if d))
    return response.json()


@pytest.mark.parametrize("mode", MODES)
async def test_tool_calls_over_http(settings: Settings, mode: str) -> None:
    async with serving(settings) as served, mcp_client(served.mcp_url, mode=mode) as client:
        assert client.protocol_version == ("2025-11-25" if mode == "legacy" else "2026-07-28")
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"create_agent", "create_conversation", "list_conversations", "conversation_search"} <= names
        agent = await client.call_tool("create_agent", {"name": "http-agent"})
        assert not agent.is_error, agent.content
        agent_id = agent.structured_content["id"]
        conv = await client.call_tool("create_conversation", {"agent_id": agent_id, "summary": "over http"})
        assert not conv.is_error, conv.content
        listed = await client.call_tool("list_conversations", {"agent_id": agent_id})
        assert [c["id"] for c in listed.structured_content["conversations"]] == [conv.structured_content["id"]]
        # A tool error travels as isError, and the session goes on.
        missing = await client.call_tool("get_conversation", {"conversation_id": "conv-nope"})
        assert missing.is_error and "not found" in missing.content[0].text
        again = await client.call_tool("get_agent", {"agent_id": agent_id})
        assert again.structured_content["name"] == "http-agent"
        # The data went to the database the server opened.
        assert (await served.app.service.get_agent(agent_id)).name == "http-agent"


async def test_healthz_reports_version_and_database(settings: Settings) -> None:
    async with serving(settings) as served, httpx.AsyncClient() as http:
        ok = await http.get(f"{served.base_url}/healthz")
        assert ok.status_code == 200
        assert ok.json() == {"status": "ok", "version": __version__}
        # The check really reads the database: with the connection closed it answers 503.
        await served.app.store.database.close()
        down = await http.get(f"{served.base_url}/healthz")
        assert down.status_code == 503
        assert down.json() == {"status": "error", "version": __version__, "detail": "database unreachable"}


@pytest.mark.above_storage("MCP sessions live in the HTTP layer")
async def test_session_ids_by_default_and_none_when_stateless(settings: Settings) -> None:
    for stateless in (False, True):
        s = settings.model_copy(update={"stateless": stateless})
        async with running_http_server(s) as base, httpx.AsyncClient() as http:
            r = await http.post(f"{base}/mcp", json=INIT, headers=ACCEPT)
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            assert rpc_body(r)["result"]["serverInfo"]["name"] == "mcp-server-conversations"
            assert ("mcp-session-id" in r.headers) is (not stateless)


@pytest.mark.above_storage("the response format is chosen in the HTTP layer")
async def test_json_response_mode_answers_plain_json(settings: Settings) -> None:
    s = settings.model_copy(update={"json_response": True})
    async with running_http_server(s) as base, httpx.AsyncClient() as http:
        r = await http.post(f"{base}/mcp", json=INIT, headers=ACCEPT)
        assert r.headers["content-type"].startswith("application/json")
        assert r.json()["result"]["protocolVersion"] == "2025-11-25"
        async with mcp_client(f"{base}/mcp", mode="legacy") as client:
            assert not (await client.call_tool("create_agent", {"name": "json"})).is_error


async def test_stateless_replicas_share_one_database(settings: Settings) -> None:
    """Two stateless servers on one SQLite file, as behind a load balancer: clients of either (one
    per protocol era) see what the other wrote, and clients at once on one replica stay independent."""
    s = settings.model_copy(update={"stateless": True})
    async with serving(s) as a, serving(s) as b:
        async with mcp_client(a.mcp_url, mode="legacy") as ca, mcp_client(b.mcp_url, mode="auto") as cb:
            agent = (await ca.call_tool("create_agent", {"name": "shared"})).structured_content
            conv = (await ca.call_tool("create_conversation", {"agent_id": agent["id"]})).structured_content
            seen = await cb.call_tool("get_conversation", {"conversation_id": conv["id"]})
            assert seen.structured_content["agent_id"] == agent["id"]

            async def make(client, name: str) -> str:
                r = await client.call_tool("create_agent", {"name": name})
                return r.structured_content["id"]

            async with mcp_client(a.mcp_url, mode="auto") as c2:
                ids = await asyncio.gather(make(ca, "one"), make(c2, "two"), make(cb, "three"))
            assert len(set(ids)) == 3
            names = {x["name"] for x in (await cb.call_tool("list_agents", {})).structured_content["agents"]}
            assert {"shared", "one", "two", "three"} <= names


@pytest.mark.above_storage("MCP sessions live in the HTTP layer")
async def test_session_cap_holds_and_idle_sessions_expire(settings: Settings) -> None:
    s = settings.model_copy(update={"max_sessions": 1, "session_idle_timeout": 0.5})
    async with running_http_server(s) as base, httpx.AsyncClient() as http:
        first = await http.post(f"{base}/mcp", json=INIT, headers=ACCEPT)
        session = first.headers["mcp-session-id"]
        full = await http.post(f"{base}/mcp", json=INIT, headers=ACCEPT)
        assert full.status_code == 503, "a second session over the cap must be refused"
        assert "Too many" in full.json()["error"]["message"]
        # Refused attempts do not touch the first session, so it idles out and frees the slot.
        async with asyncio.timeout(30):
            while True:
                r = await http.post(f"{base}/mcp", json=INIT, headers=ACCEPT)
                if r.status_code != 503:
                    break
                await asyncio.sleep(0.1)
        assert r.status_code == 200 and r.headers["mcp-session-id"] != session
        gone = await http.post(
            f"{base}/mcp",
            json={"jsonrpc": "2.0", "id": 2, "method": "ping"},
            headers={**ACCEPT, "mcp-session-id": session, "mcp-protocol-version": "2025-11-25"},
        )
        assert gone.status_code == 404
