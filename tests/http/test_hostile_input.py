"""Hostile input through the real HTTP app (REST and /mcp): deep JSON, integers beyond 64 bits,
lone surrogates, NUL characters, wrong content types and oversized headers each get a 4xx naming the
field (REST), a JSON-RPC error, or a tool error naming the field (MCP) — never a 500 — and the
server goes on serving. Each case here once answered 500 or a causeless tool error."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from hostile_helpers import McpRaw, body_routes, make_world, verdict
from http_helpers import Served, mcp_client, serving

from mcp_server_conversations.config import Settings
from mcp_server_conversations.inputs import MAX_DEPTH

DEEP = b"[" * 20_000 + b"]" * 20_000
HUGE = 2**64  # one past any 64-bit integer
# JSON texts (\u escapes as a client sends them): a lone surrogate, and a NUL.
SURROGATE = '"openai/gpt\\ud800"'
NUL = '"a\\u0000b"'


@pytest.fixture
async def served(settings: Settings):
    async with serving(settings.model_copy(update={"default_model": "openai/fake-model"})) as s:
        yield s


async def still_serving(http: httpx.AsyncClient, w: dict[str, str]) -> None:
    r = await http.get(f"/v1/conversations/{w['conv']}")
    assert r.status_code == 200 and r.json()["summary"] == "keep", r.text
    assert (await http.get("/healthz")).status_code == 200


def rest_error(r: httpx.Response, field: str) -> None:
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert field in r.json()["detail"], r.text
    assert "Traceback" not in r.text


async def test_deep_json_on_every_rest_body_route(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.base_url, timeout=30) as http:
        w = await make_world(http)
        for method, path in body_routes(w):
            r = await http.request(method, path, content=DEEP, headers={"content-type": "application/json"})
            rest_error(r, "nested deeper")
            # not as deep as the parser's recursion limit, still deeper than any body has reason to be
            mid = b'{"name": ' + b"[" * (MAX_DEPTH + 5) + b"]" * (MAX_DEPTH + 5) + b"}"
            r = await http.request(method, path, content=mid, headers={"content-type": "application/json"})
            rest_error(r, "nested deeper")
        await still_serving(http, w)


@pytest.mark.parametrize("mode", ["modern", "legacy"])
async def test_deep_json_on_mcp_is_a_parse_error(served: Served, mode: str) -> None:
    async with httpx.AsyncClient(base_url=served.base_url, timeout=30) as http:
        raw = McpRaw(http, served.base_url)
        if mode == "legacy":
            await raw.open_session()  # with a session id it once reached a JSON parser unguarded
        for body in (DEEP, raw.envelope("create_agent", "[" * 300 + "]" * 300, mode).encode()):
            r = await http.post("/mcp", content=body, headers=raw.headers(mode, "create_agent"))
            assert r.status_code == 400, r.text
            assert r.json()["error"]["code"] == -32700
        r = await raw.call("create_agent", '{"name": "after"}', mode)
        assert verdict(r) == "ok"


async def test_integers_beyond_64_bits(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.base_url, timeout=30) as http:
        w = await make_world(http)
        cases = [
            ("POST", "/v1/agents", {"name": "a", "context_window_limit": HUGE}, "context_window_limit"),
            ("POST", "/v1/agents", {"name": "a", "context_window_limit": -HUGE}, "context_window_limit"),
            (
                "POST",
                "/v1/agents",
                {"name": "a", "memory_blocks": [{"label": "x", "limit": HUGE}]},
                "memory_blocks[0].limit",
            ),
            ("PATCH", f"/v1/agents/{w['agent']}", {"context_window_limit": HUGE}, "context_window_limit"),
            ("PATCH", f"/v1/agents/{w['agent']}/core-memory/blocks/persona", {"limit": HUGE}, "limit"),
            ("PATCH", f"/v1/blocks/{w['block']}", {"limit": HUGE}, "limit"),
            (
                "POST",
                f"/v1/conversations/{w['conv']}/messages",
                {"messages": [{"role": "user", "content": "hi"}], "max_steps": HUGE},
                "max_steps",
            ),
            ("POST", "/v1/messages/search", {"query": "x", "limit": HUGE}, "limit"),
        ]
        for method, path, body, field in cases:
            rest_error(await http.request(method, path, json=body), field)
        r = await http.get(f"/v1/agents?limit={HUGE}")
        assert 400 <= r.status_code < 500, r.text
        await still_serving(http, w)
    async with mcp_client(served.mcp_url) as client:
        for tool, args, field in [
            ("create_agent", {"name": "a", "context_window_limit": HUGE}, "context_window_limit"),
            ("create_agent", {"name": "a", "memory_blocks": [{"label": "x", "limit": HUGE}]}, "memory_blocks[0].limit"),
            ("update_agent", {"agent_id": w["agent"], "context_window_limit": HUGE}, "context_window_limit"),
            ("update_memory_block", {"agent_id": w["agent"], "label": "persona", "limit": HUGE}, "limit"),
        ]:
            r = await client.call_tool(tool, args)
            assert r.is_error and field in r.content[0].text, (tool, r.content)
        assert not (await client.call_tool("get_agent", {"agent_id": w["agent"]})).is_error


async def test_lone_surrogates(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.base_url, timeout=30) as http:
        w = await make_world(http)
        conv = w["conv"]
        cases = [
            (
                "POST",
                f"/v1/conversations/{conv}/messages",
                '{"messages": [{"role": "user", "content": "hi", "otid": "\\udc00"}], "streaming": false}',
                "messages[0].otid",
            ),
            (
                "POST",
                f"/v1/conversations/{conv}/messages",
                '{"messages": [{"role": "user", "content": "hi"}], "override_model": @}'.replace("@", SURROGATE),
                "override_model",
            ),
            (
                "POST",
                f"/v1/conversations/{conv}/messages",
                '{"messages": [{"role": "user", "content": "hi"}], "override_model": @, "streaming": false}'.replace(
                    "@", SURROGATE
                ),
                "override_model",
            ),
            ("POST", f"/v1/conversations/?agent_id={w['agent']}", '{"model": @}'.replace("@", SURROGATE), "model"),
            ("PATCH", f"/v1/conversations/{conv}", '{"model": @}'.replace("@", SURROGATE), "model"),
            ("POST", "/v1/agents", '{"name": "a", "model": @}'.replace("@", SURROGATE), "model"),
            ("POST", "/v1/messages/search", '{"query": "\\ud83d"}', "query"),
            ("POST", "/v1/agents", '{"name": "a", "\\ud800": 1}', "key"),
        ]
        for method, path, body, field in cases:
            r = await http.request(method, path, content=body.encode(), headers={"content-type": "application/json"})
            rest_error(r, field)
        await still_serving(http, w)
        # MCP: the 2026 transport parses with the standard library, which keeps lone surrogates
        raw = McpRaw(http, served.base_url)
        for tool, args, field in [
            ("update_conversation", f'{{"conversation_id": "{conv}", "model": {SURROGATE}}}', "model"),
            ("create_conversation", f'{{"agent_id": "{w["agent"]}", "model": {SURROGATE}}}', "model"),
            (
                "send_message",
                f'{{"conversation_id": "{conv}", "content": "hi", "override_model": {SURROGATE}}}',
                "override_model",
            ),
            (
                "send_message",
                f'{{"conversation_id": "{conv}", "content": "hi", "idempotency_key": "\\udfff"}}',
                "idempotency_key",
            ),
            (
                "send_message",
                f'{{"conversation_id": "{conv}", "messages": [{{"role": "user", "content": "\\ud800"}}]}}',
                "messages[0].content",
            ),
        ]:
            for mode in ("modern", "legacy"):
                got = verdict(await raw.call(tool, args, mode))
                assert got.startswith(("tool_error", "rpc_error")), (tool, mode, got)
                assert "internal" not in got.lower(), got
                if got.startswith("tool_error"):
                    assert field in got, got
        await still_serving(http, w)
        r = await http.get(f"/v1/conversations/{conv}/messages")
        assert r.json() == []  # nothing was sent


async def test_nul_characters(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.base_url, timeout=30) as http:
        w = await make_world(http)
        conv = w["conv"]
        cases = [
            ("POST", "/v1/agents", '{"name": @}'.replace("@", NUL), "name"),
            (
                "POST",
                "/v1/agents",
                '{"name": "a", "memory_blocks": [{"label": "l", "value": @}]}'.replace("@", NUL),
                "memory_blocks[0].value",
            ),
            ("PATCH", f"/v1/agents/{w['agent']}/core-memory/blocks/persona", '{"value": @}'.replace("@", NUL), "value"),
            (
                "POST",
                f"/v1/conversations/{conv}/messages",
                '{"messages": [{"role": "user", "content": @}]}'.replace("@", NUL),
                "messages[0].content",
            ),
            ("PATCH", f"/v1/conversations/{conv}", '{"summary": @}'.replace("@", NUL), "summary"),
        ]
        for method, path, body, field in cases:
            r = await http.request(method, path, content=body.encode(), headers={"content-type": "application/json"})
            rest_error(r, field)
        rest_error(await http.get("/v1/agents?after=a%00b"), "after")
        await still_serving(http, w)
    async with mcp_client(served.mcp_url) as client:
        for tool, args, field in [
            ("create_agent", {"name": "a\x00b"}, "name"),
            ("update_memory_block", {"agent_id": w["agent"], "label": "persona", "value": "v\x00"}, "value"),
            ("send_message", {"conversation_id": conv, "content": "\x00"}, "content"),
            ("conversation_search", {"query": "a\x00"}, "query"),
        ]:
            r = await client.call_tool(tool, args)
            assert r.is_error and field in r.content[0].text, (tool, r.content)


async def test_wrong_content_types_and_bodies(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.base_url, timeout=30) as http:
        w = await make_world(http)
        for content, ctype in [
            (b"name=a", "application/x-www-form-urlencoded"),
            (
                b'--x\r\nContent-Disposition: form-data; name="name"\r\n\r\na\r\n--x--\r\n',
                "multipart/form-data; boundary=x",
            ),
            (b"\xff\xfe\x00garbage", "application/json"),
            (b'{"name": NaN}', "application/json"),
            (b'["a list"]', "application/json"),
            (b'"a string"', "text/plain"),
        ]:
            for method, path in body_routes(w):
                r = await http.request(method, path, content=content, headers={"content-type": ctype})
                assert 400 <= r.status_code < 500, (path, ctype, r.status_code, r.text)
        r = await http.post(
            "/mcp",
            content=b"name=a",
            headers={
                "content-type": "application/x-www-form-urlencoded",
                "accept": "application/json, text/event-stream",
            },
        )
        assert 400 <= r.status_code < 500
        await still_serving(http, w)


async def test_oversized_headers_get_431_or_400(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.base_url, timeout=30) as http:
        w = await make_world(http)
        for path in ("/v1/agents", "/mcp", "/healthz"):
            r = await http.get(path, headers={"x-pad": "a" * 40_000})
            assert r.status_code == 431, (path, r.status_code)
        await still_serving(http, w)
    # far larger headers trickling in: the HTTP parser refuses them with 400 and closes
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    writer.write(b"GET /v1/agents HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    try:
        for _ in range(65):  # just past h11's 64 KiB
            writer.write(b"x-pad: " + b"a" * 1000 + b"\r\n")
            await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=30)
        assert answer.startswith(b"HTTP/1.1 400"), answer[:100]
    except ConnectionResetError:
        pass  # the server closed it with bytes of ours unread: the kernel resets instead of a clean end
    writer.close()
    async with httpx.AsyncClient(base_url=served.base_url, timeout=30) as http:
        await still_serving(http, w)


def test_error_messages_never_echo_a_bad_value() -> None:
    """A lone surrogate echoed into an error message would break that message's own encoding."""
    from mcp_server_conversations.errors import ValidationError
    from mcp_server_conversations.inputs import loads

    for text in ('{"model": "\\ud800"}', '{"a": {"b": ["ok", "\\u0000"]}}', '{"n": ' + str(HUGE) + "}"):
        with pytest.raises(ValidationError) as e:
            loads(text)
        json.dumps(e.value.message).encode("utf-8")
        assert e.value.field in ("model", "a.b[1]", "n")
