"""Every foundation tool through a real MCP client (in-memory), in both client modes:
"auto" (2026-07-28, no JSON-RPC framing) and "legacy" (JSON-RPC, initialize at 2025-11-25)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from foundation_helpers import say, turn
from mcp import Client

from mcp_server_conversations.app import App, open_app
from mcp_server_conversations.config import Settings
from mcp_server_conversations.mcp.server import build_server

MODES = ["auto", "legacy"]

# tool -> (readOnlyHint, destructiveHint, idempotentHint)
FOUNDATION_TOOLS = {
    "create_agent": (False, False, False),
    "list_agents": (True, False, True),
    "get_agent": (True, False, True),
    "update_agent": (False, False, True),
    "delete_agent": (False, True, True),
    "update_memory_block": (False, False, True),
    "create_conversation": (False, False, False),
    "get_conversation": (True, False, True),
    "update_conversation": (False, False, True),
    "list_conversations": (True, False, True),
    "list_messages": (True, False, True),
    "fork_conversation": (False, False, False),
    "delete_conversation": (False, True, True),
    "conversation_search": (True, False, True),
}


@asynccontextmanager
async def connected(settings: Settings, mode: str) -> AsyncIterator[tuple[Client, App]]:
    """A client on a server sharing an app the test can also use for storage-level setup."""
    async with open_app(settings) as app, Client(build_server(settings, shared=app), mode=mode) as client:
        yield client, app


async def ok(client: Client, tool: str, args: dict[str, Any] | None = None) -> Any:
    result = await client.call_tool(tool, args or {})
    assert not result.is_error, result.content
    text = result.content[0].text  # the same data as JSON text, for clients that ignore structuredContent
    assert json.loads(text) == result.structured_content
    return result.structured_content


async def err(client: Client, tool: str, args: dict[str, Any]) -> str:
    result = await client.call_tool(tool, args)
    assert result.is_error, f"{tool} {args} did not fail: {result.structured_content}"
    return result.content[0].text


@pytest.mark.parametrize("mode", MODES)
async def test_every_tool_declares_schemas_descriptions_and_annotations(settings: Settings, mode: str) -> None:
    async with Client(build_server(settings), mode=mode) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(FOUNDATION_TOOLS) <= set(tools)
    for name, hints in FOUNDATION_TOOLS.items():
        tool = tools[name]
        assert tool.description and len(tool.description) > 20, name
        props = tool.input_schema["properties"]
        assert "ctx" not in props
        assert all(p.get("description") for p in props.values()), (name, props)
        assert tool.output_schema and tool.output_schema.get("properties"), name
        assert tool.output_schema.get("description"), name
        a = tool.annotations
        assert (a.read_only_hint, a.destructive_hint, a.idempotent_hint) == hints, name
        assert a.open_world_hint is False, name
    assert tools["create_agent"].input_schema["required"] == ["name"]
    assert tools["list_conversations"].input_schema["properties"]["order_by"]["enum"] == [
        "created_at",
        "last_run_completion",
    ]


@pytest.mark.parametrize("mode", MODES)
async def test_agent_tools(settings: Settings, mode: str) -> None:
    async with connected(settings, mode) as (c, _):
        agent = await ok(
            c,
            "create_agent",
            {
                "name": "Ada",
                "model": "openai/gpt-5-mini",
                "system": "be kind",
                "context_window_limit": 8000,
                "memory_blocks": [{"label": "human", "value": "Ada likes pottery", "limit": 100}],
            },
        )
        assert agent["id"].startswith("agent-") and agent["created_at"].endswith("Z")
        assert (agent["name"], agent["model"], agent["system"]) == ("Ada", "openai/gpt-5-mini", "be kind")
        (block,) = agent["memory_blocks"]
        assert (block["label"], block["value"], block["limit"], block["read_only"]) == (
            "human",
            "Ada likes pottery",
            100,
            False,
        )
        assert await ok(c, "get_agent", {"agent_id": agent["id"]}) == agent
        second = await ok(c, "create_agent", {"name": "Bo"})
        page1 = await ok(c, "list_agents", {"limit": 1})
        assert [a["id"] for a in page1["agents"]] == [agent["id"]] and page1["next_cursor"]
        page2 = await ok(c, "list_agents", {"limit": 1, "after": page1["next_cursor"]})
        assert [a["id"] for a in page2["agents"]] == [second["id"]] and page2["next_cursor"] is None
        assert await ok(c, "delete_agent", {"agent_id": second["id"]}) == {"deleted": True, "id": second["id"]}
        assert "not found" in await err(c, "get_agent", {"agent_id": second["id"]})
        assert [a["id"] for a in (await ok(c, "list_agents"))["agents"]] == [agent["id"]]


@pytest.mark.parametrize("mode", MODES)
async def test_update_tools_leave_omitted_fields_and_clear_explicit_nulls(settings: Settings, mode: str) -> None:
    async with connected(settings, mode) as (c, _):
        agent = await ok(
            c,
            "create_agent",
            {
                "name": "a",
                "model": "openai/m",
                "system": "custom",
                "context_window_limit": 4096,
            },
        )
        aid = agent["id"]
        renamed = await ok(c, "update_agent", {"agent_id": aid, "name": "b"})
        assert (renamed["name"], renamed["model"], renamed["system"], renamed["context_window_limit"]) == (
            "b",
            "openai/m",
            "custom",
            4096,
        )
        untouched = await ok(c, "update_agent", {"agent_id": aid})
        assert untouched == renamed
        cleared = await ok(c, "update_agent", {"agent_id": aid, "model": None, "context_window_limit": None})
        assert (cleared["name"], cleared["model"], cleared["system"], cleared["context_window_limit"]) == (
            "b",
            None,
            "custom",
            None,
        )

        conv = await ok(c, "create_conversation", {"agent_id": aid, "model": "openai/x", "summary": "t"})
        only_summary = await ok(c, "update_conversation", {"conversation_id": conv["id"], "summary": "u"})
        assert (only_summary["model"], only_summary["summary"]) == ("openai/x", "u")
        no_model = await ok(c, "update_conversation", {"conversation_id": conv["id"], "model": None})
        assert (no_model["model"], no_model["summary"]) == (None, "u")
        no_summary = await ok(c, "update_conversation", {"conversation_id": conv["id"], "summary": None})
        assert (no_summary["model"], no_summary["summary"]) == (None, None)

        b = await ok(
            c,
            "update_memory_block",
            {
                "agent_id": aid,
                "label": "notes",
                "value": "v1",
                "description": "d",
                "limit": 50,
                "read_only": True,
            },
        )
        same = await ok(c, "update_memory_block", {"agent_id": aid, "label": "notes", "value": "v2"})
        assert (same["id"], same["value"], same["description"], same["limit"], same["read_only"]) == (
            b["id"],
            "v2",
            "d",
            50,
            True,
        )
        reset = await ok(
            c,
            "update_memory_block",
            {
                "agent_id": aid,
                "label": "notes",
                "description": None,
                "read_only": None,
                "limit": None,
            },
        )
        assert (reset["value"], reset["description"], reset["limit"], reset["read_only"]) == ("v2", None, 20000, False)


@pytest.mark.parametrize("mode", MODES)
async def test_default_agent_and_memory_block_tool(settings: Settings, mode: str) -> None:
    async with connected(settings, mode) as (c, _):
        block = await ok(c, "update_memory_block", {"label": "project", "value": "a kiln"})
        conv = await ok(c, "create_conversation")
        agent = await ok(c, "get_agent", {"agent_id": conv["agent_id"]})
        assert agent["model"] is None
        assert [b["label"] for b in agent["memory_blocks"]] == ["persona", "human", "project"]
        assert agent["memory_blocks"][2] == block
        await ok(c, "delete_agent", {"agent_id": agent["id"]})
        again = await ok(c, "create_conversation")
        assert again["agent_id"] != agent["id"]
        listed = await ok(c, "list_conversations")
        assert [x["id"] for x in listed["conversations"]] == [again["id"]]


@pytest.mark.parametrize("mode", MODES)
async def test_conversation_tools(settings: Settings, mode: str) -> None:
    async with connected(settings, mode) as (c, app):
        conv = await ok(c, "create_conversation", {"summary": "pottery"})
        assert conv["id"].startswith("conv-")
        assert (conv["forked_from"], conv["message_count"], conv["last_run_completion"]) == (None, 0, None)
        assert await ok(c, "get_conversation", {"conversation_id": conv["id"]}) == conv
        msgs = await turn(app.store, conv["id"], "when is the pottery class?", "Tuesdays at six")
        await say(app.store, conv["id"], "thanks")
        listed = await ok(c, "list_messages", {"conversation_id": conv["id"]})
        assert [m["content"] for m in listed["messages"]] == ["when is the pottery class?", "Tuesdays at six", "thanks"]
        assert [m["message_type"] for m in listed["messages"]] == ["user_message", "assistant_message", "user_message"]
        assert all(m["in_context"] and m["conversation_id"] == conv["id"] for m in listed["messages"])
        with_system = await ok(
            c,
            "list_messages",
            {
                "conversation_id": conv["id"],
                "include_system": True,
                "order": "desc",
                "limit": 2,
            },
        )
        assert [m["content"] for m in with_system["messages"]] == ["thanks", "Tuesdays at six"]
        rest = await ok(
            c,
            "list_messages",
            {
                "conversation_id": conv["id"],
                "include_system": True,
                "order": "desc",
                "limit": 2,
                "after": with_system["next_cursor"],
            },
        )
        assert [m["message_type"] for m in rest["messages"]] == ["user_message", "system_message"]
        assert rest["next_cursor"] is None
        only_user = await ok(c, "list_messages", {"conversation_id": conv["id"], "message_types": ["user_message"]})
        assert [m["content"] for m in only_user["messages"]] == ["when is the pottery class?", "thanks"]

        fork = await ok(c, "fork_conversation", {"conversation_id": conv["id"], "message_id": msgs[1].id})
        assert fork["forked_from"] == {"conversation_id": conv["id"], "message_id": msgs[1].id}
        assert fork["message_count"] == 2 and fork["agent_id"] == conv["agent_id"]
        whole = await ok(c, "fork_conversation", {"conversation_id": conv["id"]})
        assert whole["forked_from"] == {"conversation_id": conv["id"], "message_id": None}
        assert (await ok(c, "get_conversation", {"conversation_id": conv["id"]}))["message_count"] == 3

        found = await ok(c, "conversation_search", {"query": "When is my pottery class?"})
        assert found["results"][0]["message_id"] == msgs[0].id
        assert found["results"][0]["conversation_id"] == conv["id"]
        assert "pottery" in found["results"][0]["snippet"]
        assert len({r["message_id"] for r in found["results"]}) == len(found["results"])

        await ok(c, "update_conversation", {"conversation_id": conv["id"], "summary": "renamed"})
        by_created = await ok(c, "list_conversations", {"order": "asc"})
        assert [x["id"] for x in by_created["conversations"]] == [conv["id"], fork["id"], whole["id"]]
        assert by_created["conversations"][0]["summary"] == "renamed"

        assert await ok(c, "delete_conversation", {"conversation_id": conv["id"]}) == {
            "deleted": True,
            "id": conv["id"],
        }
        assert "not found" in await err(c, "get_conversation", {"conversation_id": conv["id"]})
        assert "not found" in await err(c, "delete_conversation", {"conversation_id": conv["id"]})
        kept = await ok(c, "list_messages", {"conversation_id": fork["id"]})
        assert [m["id"] for m in kept["messages"]] == [msgs[0].id, msgs[1].id]
        (held,) = (await ok(c, "conversation_search", {"query": "thanks"}))["results"]
        assert held["conversation_id"] == whole["id"]  # the writer is gone: reported under the fork holding it
        await ok(c, "delete_conversation", {"conversation_id": whole["id"]})
        assert (await ok(c, "conversation_search", {"query": "thanks"}))["results"] == []


@pytest.mark.parametrize("mode", MODES)
async def test_a_server_without_a_shared_app_keeps_data_in_its_file(settings: Settings, mode: str) -> None:
    async with Client(build_server(settings), mode=mode) as c:
        conv = await ok(c, "create_conversation", {"summary": "kept"})
    async with Client(build_server(settings), mode=mode) as c:
        assert (await ok(c, "get_conversation", {"conversation_id": conv["id"]}))["summary"] == "kept"
