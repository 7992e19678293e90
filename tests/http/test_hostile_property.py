"""Property: whatever JSON a client throws — deep nesting, integers past 64 bits, lone surrogates,
NULs, wrong types, wrong content types, bytes that are not JSON — at any REST route or any MCP tool
of a real server process (models answered by the fake provider), the answer is never a 5xx nor an
internal error, and the server answers the next request.

Bounded (a fixed number of examples, derandomized) so the file runs in seconds; REST bodies are
posted as JSON text, MCP calls go through the SDK's client where it can encode the arguments and
as raw JSON-RPC (both protocol generations) where it cannot (lone surrogates, deep nesting)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fake_provider import FakeProvider
from hostile_helpers import McpRaw, all_routes, body_routes, make_world, verdict
from http_helpers import Spawned, console_env, mcp_client, spawned_http_server
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp.shared.exceptions import MCPError

from mcp_server_conversations.inputs import INT64_MAX, INT64_MIN, MAX_DEPTH

pytestmark = [pytest.mark.slow, pytest.mark.processes]

BOUNDED = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
FIELDS = [
    "name",
    "model",
    "system",
    "memory_blocks",
    "context_window_limit",
    "label",
    "value",
    "limit",
    "read_only",
    "description",
    "summary",
    "messages",
    "input",
    "otid",
    "override_model",
    "max_steps",
    "streaming",
    "query",
    "agent_id",
    "conversation_id",
    "run_id",
    "message_id",
    "start_date",
    "end_date",
    "content",
    "role",
    "after",
    "order",
    "order_by",
    "roles",
    "message_types",
    "idempotency_key",
    "background",
    "include_pings",
]
INTERNAL = -32603


# -- strategies ------------------------------------------------------------------------------------------------

any_char = st.characters(exclude_categories=())  # surrogates (Cs) included
texts = st.one_of(
    st.text(any_char, max_size=20),
    st.sampled_from(["", "\x00", "a\x00b", "\ud800", "openai/x\udfff", "openai/fake-model", "persona", "hi"]),
)
ints = st.one_of(
    st.integers(min_value=-5, max_value=300),
    st.integers(),
    st.sampled_from([INT64_MAX, INT64_MAX + 1, INT64_MIN, INT64_MIN - 1, 2**64, 10**40, -(10**40)]),
)
leaves = st.one_of(st.none(), st.booleans(), ints, st.floats(allow_nan=False), texts)
hostile = st.sampled_from(
    [
        INT64_MAX + 1,
        INT64_MIN - 1,
        10**40,
        "\ud800",
        "openai/x\udfff",
        "a\x00b",
        "\x00",
        "",
        -1,
        0,
        1.5,
        True,
        None,
        [[["deep"]]],
        {"a": {"b": {}}},
    ]
)
values = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.one_of(st.sampled_from(FIELDS), texts), inner, max_size=3)
    ),
    max_leaves=8,
)


def objects(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Dicts keyed mostly by names the route or tool reads, with values of any shape."""
    return st.dictionaries(st.one_of(st.sampled_from(keys), texts), values, max_size=4)


def deep(n: int, kind: str) -> str:
    return "[" * n + "]" * n if kind == "list" else '{"a":' * n + "1" + "}" * n


deep_texts = st.builds(
    deep,
    st.one_of(st.sampled_from([MAX_DEPTH + 1, 2_000, 20_000]), st.integers(60, 30_000)),
    st.sampled_from(["list", "dict"]),
)


def paths(value: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON value (key or index paths), the whole value first."""
    found = [at]
    if isinstance(value, dict):
        for k, v in value.items():
            found += paths(v, (*at, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += paths(v, (*at, i))
    return found


def replaced(value: Any, at: tuple[Any, ...], new: Any) -> Any:
    if not at:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[at[0]] = replaced(copy[at[0]], at[1:], new)
    return copy


def mutated(valid: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A valid body or argument set with one place (or a new key) holding something hostile."""
    spots = [p for p in paths(valid) if p]
    bad = st.one_of(hostile, values)
    one_place = st.builds(lambda at, new: replaced(valid, at, new), st.sampled_from(spots), bad)
    extra_key = st.builds(lambda k, new: {**valid, k: new}, texts, bad)
    return st.one_of(one_place, one_place, extra_key)


def as_json(value: Any) -> str:
    """JSON text; lone surrogates become \\u escapes (as any client would send them)."""
    return json.dumps(value, ensure_ascii=True)


def has_surrogate(value: Any) -> bool:
    text = json.dumps(value, ensure_ascii=False)
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


# -- the server -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Spawned, dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("hostile")
    with FakeProvider() as fake:
        env = console_env(**fake.env(), CONVERSATIONS_DEFAULT_MODEL="openai/fake-model")
        with spawned_http_server(Path(tmp) / "hostile.db", env=env) as spawned:
            world = asyncio.run(_world(spawned.base_url))
            yield spawned, world
            assert spawned.stop() == 0, spawned.stderr()[-3000:]
            assert "Traceback" not in spawned.stderr(), spawned.stderr()[-3000:]


async def _world(base_url: str) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        return await make_world(http)


def serves(base_url: str) -> None:
    """The next request is answered."""
    r = httpx.get(f"{base_url}/v1/agents", params={"limit": 1}, timeout=30)
    assert r.status_code == 200, r.text


# -- REST ------------------------------------------------------------------------------------------------------


def valid_body(method: str, path: str) -> dict[str, Any]:
    """A body the route accepts (empty for routes that read none)."""
    if path == "/v1/agents":
        return {
            "name": "a",
            "memory_blocks": [{"label": "l", "value": "v", "limit": 100}],
            "context_window_limit": 1000,
        }
    if path.endswith("/messages") and method == "POST":
        return {
            "messages": [{"role": "user", "content": "hi", "otid": "o-1"}],
            "streaming": False,
            "override_model": "openai/fake-model",
            "max_steps": 2,
        }
    if path.endswith("/stream"):
        return {"run_id": "run-x", "include_pings": False}
    if path.endswith("/search"):
        return {"query": "hi", "limit": 5, "start_date": "2020-01-01"}
    if "/blocks/" in path:
        return {"value": "v", "limit": 100, "description": "d"}
    if path.startswith("/v1/agents/"):
        return {"name": "b", "model": "openai/fake-model", "context_window_limit": 2000}
    if path.startswith("/v1/conversations"):
        return {"summary": "s", "model": "openai/fake-model"}
    return {}


ROUTES = len(all_routes({"agent": "", "conv": "", "block": ""}))
BODY_ROUTES = len(body_routes({"agent": "", "conv": "", "block": ""}))  # listed first by all_routes
CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json",
        "application/json",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        None,
    ]
)


def rest_bodies(method: str, path: str) -> st.SearchStrategy[str]:
    valid = valid_body(method, path)
    return st.one_of(
        *([mutated(valid).map(as_json)] * 3 if valid else []),
        objects(FIELDS).map(as_json),
        values.map(as_json),
        deep_texts,
        st.binary(max_size=64).map(lambda b: b.decode("latin-1")),
    )


query_values = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)


@BOUNDED
@given(
    data=st.data(),
    index=st.one_of(st.integers(0, BODY_ROUTES - 1), st.integers(0, ROUTES - 1)),
    ctype=CONTENT_TYPES,
    query=st.dictionaries(
        st.sampled_from(["limit", "after", "before", "order", "agent_id", "message_id"]), query_values, max_size=2
    ),
)
def test_rest_routes_never_answer_5xx(
    server: tuple[Spawned, dict[str, str]], data: st.DataObject, index: int, ctype: str | None, query: dict[str, str]
) -> None:
    spawned, world = server
    method, path = all_routes(world)[index]
    body = data.draw(rest_bodies(method, path.split("?")[0]), label="body")
    headers = {"content-type": ctype} if ctype else {}
    content = body.encode("utf-8", "surrogatepass") if method in ("POST", "PATCH") else None
    r = httpx.request(method, f"{spawned.base_url}{path}", content=content, headers=headers, params=query, timeout=60)
    assert r.status_code < 500, (method, path, body[:200], r.status_code, r.text[:500])
    assert "Traceback" not in r.text
    serves(spawned.base_url)


# -- MCP -------------------------------------------------------------------------------------------------------

TOOLS = {
    "create_agent": ["name", "model", "system", "memory_blocks", "context_window_limit"],
    "list_agents": ["limit", "after"],
    "get_agent": ["agent_id"],
    "update_agent": ["agent_id", "name", "model", "system", "context_window_limit"],
    "delete_agent": ["agent_id"],
    "update_memory_block": ["label", "agent_id", "value", "description", "limit", "read_only", "expected_version"],
    "get_memory_block_history": ["label", "agent_id", "limit", "after"],
    "restore_memory_block": ["label", "version", "agent_id"],
    "create_conversation": ["agent_id", "model", "summary"],
    "get_conversation": ["conversation_id"],
    "update_conversation": ["conversation_id", "model", "summary"],
    "list_conversations": ["agent_id", "order_by", "order", "limit", "after"],
    "list_messages": ["conversation_id", "limit", "after", "order", "message_types", "include_system"],
    "fork_conversation": ["conversation_id", "message_id"],
    "delete_conversation": ["conversation_id"],
    "conversation_search": ["query", "agent_id", "conversation_id", "roles", "start_date", "end_date", "limit"],
    "send_message": [
        "conversation_id",
        "content",
        "messages",
        "override_model",
        "max_steps",
        "idempotency_key",
        "background",
    ],
    "get_run": ["run_id"],
    "cancel_run": ["run_id"],
    "compact_conversation": ["conversation_id"],
    "export_conversation": ["conversation_id", "format"],
    "import_conversation": ["data", "agent_id"],
    "import_agent": ["data", "name"],
    "export_agent": ["agent_id", "conversation_id"],
}


def test_the_property_covers_every_tool(server: tuple[Spawned, dict[str, str]]) -> None:
    async def names() -> set[str]:
        async with mcp_client(server[0].mcp_url) as client:
            return {t.name for t in (await client.list_tools()).tools}

    assert set(TOOLS) == asyncio.run(names())


def valid_args(tool: str, world: dict[str, str]) -> dict[str, Any]:
    """Arguments the tool accepts (deletes aim at ids that are not the world's)."""
    samples = {
        "agent_id": world["agent"],
        "conversation_id": world["conv"],
        "name": "a",
        "model": "openai/fake-model",
        "system": "s",
        "memory_blocks": [{"label": "l", "value": "v", "limit": 100}],
        "context_window_limit": 1000,
        "limit": 5,
        "after": None,
        "label": "persona",
        "value": "v",
        "description": "d",
        "read_only": False,
        "summary": "s",
        "order_by": "created_at",
        "order": "asc",
        "message_types": ["user_message"],
        "include_system": False,
        "message_id": None,
        "query": "hi",
        "roles": ["user"],
        "start_date": "2020-01-01",
        "end_date": "2100-01-01",
        "content": "hi",
        "messages": [{"role": "user", "content": "hi"}],
        "override_model": "openai/fake-model",
        "max_steps": 2,
        "idempotency_key": "k",
        "background": False,
        "run_id": "run-x",
        "version": 1,
        "expected_version": None,
        "format": "json",
        "data": {"format_version": "x"},
    }
    args = {k: samples[k] for k in TOOLS[tool]}
    if tool == "send_message":
        del args["messages"]
    if tool.startswith("delete_"):
        args = {k: v.replace("-", "-0", 1) if isinstance(v, str) else v for k, v in args.items()}
    return args


def tool_args(world: dict[str, str]) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    def for_tool(tool: str) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
        ids = st.sampled_from([world["agent"], world["conv"], "conv-x", "agent-x", "run-x"])
        anything = st.dictionaries(st.one_of(st.sampled_from(TOOLS[tool]), texts), st.one_of(values, ids), max_size=4)
        return st.tuples(st.just(tool), st.one_of(mutated(valid_args(tool, world)), anything))

    return st.sampled_from(sorted(TOOLS)).flatmap(for_tool)


def acceptable_tool_error(text: str, tool: str) -> bool:
    """A tool error that says what was wrong, not the SDK's bare wrapper of an unexpected exception."""
    return text.strip() != f"Error executing tool {tool}" and "internal" not in text.lower()


async def call_with_client(url: str, tool: str, args: dict[str, Any], mode: str) -> str:
    async with mcp_client(url, mode=mode) as client:
        try:
            result = await client.call_tool(tool, args)
        except MCPError as e:  # a JSON-RPC error answer (e.g. invalid params)
            assert e.error.code != INTERNAL, (tool, args, e.error)
            return f"rpc_error: {e.error.code}"
        if result.is_error:
            text = " ".join(getattr(c, "text", "") for c in result.content)
            assert acceptable_tool_error(text, tool), (tool, args, text)
        return "done"


@BOUNDED
@given(
    data=st.data(),
    mode=st.sampled_from(["modern", "legacy"]),
    raw=st.booleans(),
    deep_args=st.one_of(st.none(), deep_texts),
)
def test_mcp_tools_never_fail_internally(
    server: tuple[Spawned, dict[str, str]], data: st.DataObject, mode: str, raw: bool, deep_args: str | None
) -> None:
    spawned, world = server
    tool, args = data.draw(tool_args(world))
    if raw or deep_args is not None or has_surrogate(args):  # what the SDK's client cannot encode
        got = asyncio.run(_raw_call(spawned.base_url, tool, deep_args or as_json(args), mode))
        assert not got.startswith(("http 5", f"rpc_error: {INTERNAL}")), (tool, args, got)
        if got.startswith("tool_error"):
            assert acceptable_tool_error(got.removeprefix("tool_error: "), tool), (tool, args, got)
    else:
        asyncio.run(call_with_client(spawned.mcp_url, tool, args, "auto" if mode == "modern" else "legacy"))
    serves(spawned.base_url)


async def _raw_call(base_url: str, tool: str, arguments_json: str, mode: str) -> str:
    async with httpx.AsyncClient(timeout=60) as http:
        r = await McpRaw(http, base_url).call(tool, arguments_json, mode)
        if r.status_code >= 500:
            return f"http {r.status_code}: {r.text[:300]}"
        return verdict(r)
