"""Helpers for the hostile-input tests: a small world on the real HTTP server, every REST route
that reads a body, and raw JSON-RPC tool calls on /mcp for what the SDK's client cannot send
(lone surrogates, nesting past its serializer).

- `await make_world(http)`: an agent with a block and a conversation, made through REST.
- `body_routes(w)` / `all_routes(w)`: (method, path) of every REST route, given a world `w`.
- `McpRaw(http, base)`: `await raw.call(tool, arguments_json_text, mode)` posts tools/call as a
  2026-07-28 request ("modern") or on a 2025-11-25 session ("legacy"); returns the httpx response.
- `verdict(response)`: "ok", "tool_error: …", "rpc_error: code message" or "http NNN" for a tools/call reply.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from test_http_mcp import ACCEPT, INIT, rpc_body

MODERN = "2026-07-28"
LEGACY = "2025-11-25"


async def make_world(http: httpx.AsyncClient) -> dict[str, str]:
    r = await http.post("/v1/agents", json={"name": "w", "memory_blocks": [{"label": "persona", "value": "p"}]})
    assert r.status_code == 200, r.text
    agent = r.json()
    block = (await http.get(f"/v1/agents/{agent['id']}/core-memory/blocks")).json()[0]["id"]
    r = await http.post("/v1/conversations/", params={"agent_id": agent["id"]}, json={"summary": "keep"})
    assert r.status_code == 200, r.text
    return {"agent": agent["id"], "block": block, "conv": r.json()["id"]}


def body_routes(w: dict[str, str]) -> list[tuple[str, str]]:
    """Every REST route that parses a JSON body."""
    conv, agent = w["conv"], w["agent"]
    return [
        ("POST", "/v1/agents"),
        ("PATCH", f"/v1/agents/{agent}"),
        ("PATCH", f"/v1/agents/{agent}/core-memory/blocks/persona"),
        ("PATCH", f"/v1/blocks/{w['block']}"),
        ("POST", f"/v1/conversations/?agent_id={agent}"),
        ("PATCH", f"/v1/conversations/{conv}"),
        ("POST", f"/v1/conversations/{conv}/messages"),
        ("POST", f"/v1/conversations/{conv}/stream"),
        ("POST", "/v1/messages/search"),
    ]


def all_routes(w: dict[str, str]) -> list[tuple[str, str]]:
    """Every REST route (deletes last, on ids that are not the world's)."""
    conv, agent = w["conv"], w["agent"]
    return body_routes(w) + [
        ("GET", "/v1/agents"),
        ("GET", f"/v1/agents/{agent}"),
        ("GET", f"/v1/agents/{agent}/core-memory/blocks"),
        ("GET", f"/v1/agents/{agent}/core-memory/blocks/persona"),
        ("GET", f"/v1/blocks/{w['block']}"),
        ("GET", f"/v1/conversations/?agent_id={agent}"),
        ("GET", f"/v1/conversations/{conv}"),
        ("GET", f"/v1/conversations/{conv}/messages"),
        ("POST", f"/v1/conversations/{conv}/fork"),
        ("POST", f"/v1/conversations/{conv}/cancel"),
        ("POST", f"/v1/conversations/{conv}/compact"),
        ("DELETE", "/v1/agents/agent-00000000-0000-0000-0000-000000000000"),
        ("DELETE", "/v1/conversations/conv-00000000-0000-0000-0000-000000000000"),
    ]


class McpRaw:
    """Raw JSON-RPC tools/call posts to /mcp, in either protocol generation."""

    def __init__(self, http: httpx.AsyncClient, base: str) -> None:
        self.http, self.url, self.session, self.next_id = http, f"{base}/mcp", "", 100

    async def open_session(self) -> str:
        r = await self.http.post(self.url, json=INIT, headers=ACCEPT)
        assert r.status_code == 200, r.text
        self.session = r.headers["mcp-session-id"]
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        r = await self.http.post(self.url, json=note, headers=self.headers("legacy"))
        assert r.status_code == 202, r.text
        return self.session

    def headers(self, mode: str, tool: str | None = None) -> dict[str, str]:
        if mode == "legacy":
            return {**ACCEPT, "mcp-session-id": self.session, "mcp-protocol-version": LEGACY}
        h = {**ACCEPT, "mcp-protocol-version": MODERN, "mcp-method": "tools/call"}
        return {**h, "mcp-name": tool} if tool else h

    def envelope(self, tool: str, arguments_json: str, mode: str) -> str:
        """The request's JSON text around `arguments_json` (spliced in as is)."""
        self.next_id += 1
        meta = (
            ""
            if mode == "legacy"
            else ',"_meta":'
            + json.dumps(
                {
                    "io.modelcontextprotocol/protocolVersion": MODERN,
                    "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "0"},
                    "io.modelcontextprotocol/clientCapabilities": {},
                }
            )
        )
        return (
            f'{{"jsonrpc":"2.0","id":{self.next_id},"method":"tools/call","params":'
            f'{{"name":{json.dumps(tool)},"arguments":{arguments_json}{meta}}}}}'
        )

    async def call(self, tool: str, arguments_json: str, mode: str = "modern") -> httpx.Response:
        if mode == "legacy" and not self.session:
            await self.open_session()
        body = self.envelope(tool, arguments_json, mode)
        return await self.http.post(self.url, content=body.encode(), headers=self.headers(mode, tool))


def verdict(r: httpx.Response) -> str:
    """What a tools/call post got, as one line."""
    if r.status_code >= 300 and not r.content:
        return f"http {r.status_code}"
    try:
        msg: dict[str, Any] = rpc_body(r)
    except (ValueError, StopIteration):
        return f"http {r.status_code}: {r.text[:200]}"
    if "error" in msg:
        return f"rpc_error: {msg['error']['code']} {msg['error']['message']}"
    result = msg["result"]
    if result.get("isError"):
        return "tool_error: " + " ".join(c.get("text", "") for c in result["content"])
    return "ok"
