"""Bad input to every foundation tool: an isError result whose message names the field (or the
unknown id), never a crash; afterwards the server still answers and no data was lost."""

from __future__ import annotations

from typing import Any

import pytest
from foundation_helpers import say
from mcp import Client

from mcp_server_conversations.app import open_app
from mcp_server_conversations.config import Settings
from mcp_server_conversations.mcp.server import build_server

MAX = 300  # max_message_chars for these tests, so oversize values stay small
NOPE_AGENT = "agent-00000000-0000-0000-0000-000000000000"
NOPE_CONV = "conv-00000000-0000-0000-0000-000000000000"
NOPE_MSG = "message-00000000-0000-0000-0000-000000000000"


def cases(w: dict[str, str]) -> dict[str, list[tuple[dict[str, Any], str]]]:
    """tool -> [(arguments, text the error must contain)], given the ids of a small world `w`."""
    agent, conv = w["agent"], w["conv"]
    big = "x" * (MAX + 1)
    return {
        "create_agent": [
            ({}, "name"),
            ({"name": ""}, "name"),
            ({"name": "   "}, "name"),
            ({"name": "n" * 201}, "name"),
            ({"name": 42}, "name"),
            ({"name": "a", "model": "gpt-5-mini"}, "model"),
            ({"name": "a", "model": "openai/"}, "model"),
            ({"name": "a", "system": big}, "system"),
            ({"name": "a", "context_window_limit": 12}, "context_window_limit"),
            ({"name": "a", "context_window_limit": "lots"}, "context_window_limit"),
            ({"name": "a", "memory_blocks": "persona"}, "memory_blocks"),
            ({"name": "a", "memory_blocks": [{"value": "no label"}]}, "label"),
            ({"name": "a", "memory_blocks": [{"label": "p", "value": "long", "limit": 2}]}, "memory_blocks[0].value"),
            ({"name": "a", "memory_blocks": [{"label": "p", "value": big, "limit": 10**6}]}, "memory_blocks[0].value"),
            ({"name": "a", "memory_blocks": [{"label": "p"}, {"label": "p"}]}, "memory_blocks[1].label"),
            ({"name": "a", "memory_blocks": [{"label": "p", "limit": 0}]}, "limit"),
            ({"name": "\ud800"}, "name"),
        ],
        "list_agents": [
            ({"limit": 0}, "limit"),
            ({"limit": 1001}, "limit"),
            ({"limit": "ten"}, "limit"),
            ({"after": "not-a-cursor"}, "after"),
            ({"after": w["conv_cursor"]}, "after"),
        ],
        "get_agent": [
            ({}, "agent_id"),
            ({"agent_id": ""}, "agent_id"),
            ({"agent_id": NOPE_AGENT}, f"agent {NOPE_AGENT} not found"),
        ],
        "update_agent": [
            ({"name": "x"}, "agent_id"),
            ({"agent_id": NOPE_AGENT, "name": "x"}, f"agent {NOPE_AGENT} not found"),
            ({"agent_id": agent, "name": ""}, "name"),
            ({"agent_id": agent, "name": None}, "name"),
            ({"agent_id": agent, "model": "claude"}, "model"),
            ({"agent_id": agent, "system": big}, "system"),
            ({"agent_id": agent, "context_window_limit": 1}, "context_window_limit"),
        ],
        "delete_agent": [
            ({}, "agent_id"),
            ({"agent_id": NOPE_AGENT}, f"agent {NOPE_AGENT} not found"),
        ],
        "update_memory_block": [
            ({}, "label"),
            ({"label": ""}, "label"),
            ({"label": "two\nlines"}, "label"),
            ({"label": "<persona>"}, "label"),
            ({"label": "persona", "value": big}, "value"),
            ({"label": "persona", "value": "v" * 50, "limit": 10}, "value"),
            ({"label": "persona", "limit": 0}, "limit"),
            ({"label": "persona", "description": big}, "description"),
            ({"label": "persona", "read_only": "maybe"}, "read_only"),
            ({"label": "persona", "agent_id": NOPE_AGENT}, f"agent {NOPE_AGENT} not found"),
            ({"label": "persona", "agent_id": ""}, "agent_id"),
            ({"label": "persona", "value": "\udfff"}, "value"),
        ],
        "create_conversation": [
            ({"agent_id": NOPE_AGENT}, f"agent {NOPE_AGENT} not found"),
            ({"model": "nohandle"}, "model"),
            ({"summary": big}, "summary"),
            ({"summary": "\ud83d"}, "summary"),
        ],
        "get_conversation": [
            ({}, "conversation_id"),
            ({"conversation_id": ""}, "conversation_id"),
            ({"conversation_id": NOPE_CONV}, f"conversation {NOPE_CONV} not found"),
            ({"conversation_id": ["conv-1"]}, "conversation_id"),
        ],
        "update_conversation": [
            ({"conversation_id": NOPE_CONV, "summary": "x"}, f"conversation {NOPE_CONV} not found"),
            ({"conversation_id": conv, "model": "x"}, "model"),
            ({"conversation_id": conv, "summary": big}, "summary"),
        ],
        "list_conversations": [
            ({"agent_id": NOPE_AGENT}, f"agent {NOPE_AGENT} not found"),
            ({"order_by": "name"}, "order_by"),
            ({"order": "up"}, "order"),
            ({"limit": 0}, "limit"),
            ({"limit": 5000}, "limit"),
            ({"after": "%%%"}, "after"),
            ({"after": w["conv_cursor"], "order": "asc"}, "after"),
            ({"after": w["conv_cursor"], "order_by": "last_run_completion"}, "after"),
            ({"after": w["msg_cursor"]}, "after"),
        ],
        "list_messages": [
            ({}, "conversation_id"),
            ({"conversation_id": NOPE_CONV}, f"conversation {NOPE_CONV} not found"),
            ({"conversation_id": conv, "limit": 0}, "limit"),
            ({"conversation_id": conv, "limit": 1001}, "limit"),
            ({"conversation_id": conv, "order": "sideways"}, "order"),
            ({"conversation_id": conv, "message_types": ["bogus_message"]}, "message_types"),
            ({"conversation_id": conv, "message_types": "user_message"}, "message_types"),
            ({"conversation_id": conv, "after": "zzz"}, "after"),
            ({"conversation_id": conv, "after": w["msg_cursor"], "order": "desc"}, "after"),
            ({"conversation_id": w["other_conv"], "after": w["msg_cursor"]}, "after"),
            ({"conversation_id": conv, "after": w["conv_cursor"]}, "after"),
        ],
        "fork_conversation": [
            ({}, "conversation_id"),
            ({"conversation_id": NOPE_CONV}, f"conversation {NOPE_CONV} not found"),
            ({"conversation_id": conv, "message_id": NOPE_MSG}, "message_id"),
            ({"conversation_id": conv, "message_id": w["other_msg"]}, "message_id"),
            ({"conversation_id": conv, "message_id": w["system_msg"]}, "message_id"),
            ({"conversation_id": conv, "message_id": ""}, "message_id"),
        ],
        "delete_conversation": [
            ({}, "conversation_id"),
            ({"conversation_id": NOPE_CONV}, f"conversation {NOPE_CONV} not found"),
        ],
        "conversation_search": [
            ({}, "query"),
            ({"query": ""}, "query"),
            ({"query": "  \n "}, "query"),
            ({"query": big}, "query"),
            ({"query": "x", "limit": 0}, "limit"),
            ({"query": "x", "limit": 101}, "limit"),
            ({"query": "x", "roles": ["system"]}, "roles"),
            ({"query": "x", "roles": "user"}, "roles"),
            ({"query": "x", "start_date": "last tuesday"}, "start_date"),
            ({"query": "x", "end_date": "2026-02-30"}, "end_date"),
            ({"query": "x", "start_date": "2026-03-02", "end_date": "2026-03-01"}, "start_date"),
            ({"query": "x", "conversation_id": NOPE_CONV}, f"conversation {NOPE_CONV} not found"),
            ({"query": "x", "conversation_id": ""}, "conversation_id"),
            ({"query": "x", "agent_id": NOPE_AGENT}, f"agent {NOPE_AGENT} not found"),
            ({"query": "x", "agent_id": w["other_agent"], "conversation_id": conv}, "agent_id"),
        ],
    }


def test_every_foundation_tool_has_bad_input_cases() -> None:
    from test_tools import FOUNDATION_TOOLS

    assert set(cases({k: "" for k in WORLD_KEYS})) == set(FOUNDATION_TOOLS)


NAMES_ITS_AGENT = ("update_memory_block", "create_conversation", "list_conversations", "conversation_search")
WORLD_KEYS = ("agent", "conv", "other_conv", "other_agent", "other_msg", "system_msg", "conv_cursor", "msg_cursor")


@pytest.mark.parametrize("mode", ["auto", "legacy"])
@pytest.mark.parametrize("tool", sorted(cases({k: "" for k in WORLD_KEYS})))
async def test_bad_input_is_a_tool_error_naming_the_field(tmp_path, mode: str, tool: str) -> None:
    settings = Settings(db=tmp_path / "bad.db", max_message_chars=MAX)
    async with open_app(settings) as app, Client(build_server(settings, shared=app), mode=mode) as c:
        agent = await app.service.create_agent("a")
        conv = await app.service.create_conversation(agent.id, summary="keep me")
        other = await app.service.create_conversation(agent.id)
        msgs = await say(app.store, conv.id, "one", "two", "three")
        other_msgs = await say(app.store, other.id, "elsewhere")
        await app.service.create_conversation(agent.id)
        w = {
            "agent": agent.id,
            "conv": conv.id,
            "other_conv": other.id,
            "other_agent": (await app.service.create_agent("b")).id,
            "other_msg": other_msgs[0].id,
            "system_msg": (await app.store.context_messages(conv.id))[0].id,
            "conv_cursor": (await app.service.list_conversations(agent.id, limit=1)).next_cursor,
            "msg_cursor": (await app.service.list_messages(conv.id, limit=1)).next_cursor,
        }
        assert w["conv_cursor"] and w["msg_cursor"]
        before = (await app.service.list_messages(conv.id, 1000, include_system=True)).messages
        for args, needle in cases(w)[tool]:
            if tool in NAMES_ITS_AGENT and "agent_id" not in args:
                args = {**args, "agent_id": agent.id}  # not the default agent, so its blocks can be checked
            result = await c.call_tool(tool, args)
            assert result.is_error, f"{tool}({args}) succeeded: {result.structured_content}"
            text = result.content[0].text
            assert needle in text, f"{tool}({args}): {needle!r} not in {text!r}"
            assert "Traceback" not in text
        # the server still answers and nothing was lost or changed
        again = await c.call_tool("get_conversation", {"conversation_id": conv.id})
        assert not again.is_error and again.structured_content["summary"] == "keep me"
        assert (await app.service.list_messages(conv.id, 1000, include_system=True)).messages == before
        assert [m.id for m in before[1:]] == [m.id for m in msgs]
        assert (await app.service.get_agent(agent.id)).memory_blocks == []
