"""Published output schemas: inlined and folded (schemas.lean), yet accepting and rejecting exactly
what pydantic's own schema does, for real results of every tool shape."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import pytest
from foundation_helpers import turn
from mcp import Client
from pydantic import TypeAdapter

from mcp_server_conversations import models
from mcp_server_conversations.app import open_app
from mcp_server_conversations.config import Settings
from mcp_server_conversations.mcp.output_schemas import lean
from mcp_server_conversations.mcp.server import build_server

MODELS = [
    models.Agent,
    models.AgentList,
    models.Block,
    models.Conversation,
    models.ConversationList,
    models.Deleted,
    models.MessageList,
    models.SearchResults,
    models.Run,
]


def verdict(schema: dict[str, Any], instance: Any) -> bool:
    return jsonschema.Draft202012Validator(schema).is_valid(instance)


def mutations(instance: Any) -> list[Any]:
    """Instances a schema should reject or accept for a reason: every field set to null, to a
    number, to a list, and removed, at every depth."""
    out: list[Any] = []

    def walk(node: Any, path: list[Any]) -> None:
        if isinstance(node, dict):
            for key in node:
                for value in (None, 7, [], "x", {"unexpected": 1}, "__drop__"):
                    doc = copy.deepcopy(instance)
                    target = doc
                    for p in path:
                        target = target[p]
                    if value == "__drop__":
                        del target[key]
                    else:
                        target[key] = value
                    out.append(doc)
                walk(node[key], [*path, key])
        elif isinstance(node, list) and node:
            walk(node[0], [*path, 0])

    walk(instance, [])
    return out


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_lean_has_no_refs_and_keeps_meaning(model: type) -> None:
    original = TypeAdapter(model).json_schema()
    published = lean(original)
    assert "$ref" not in json.dumps(published) and "$defs" not in published
    jsonschema.Draft202012Validator.check_schema(published)


async def test_published_schemas_judge_real_results_like_pydantics(settings: Settings) -> None:
    async with open_app(settings) as app, Client(build_server(settings, shared=app)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert all("$ref" not in json.dumps(t.output_schema) for t in tools.values() if t.output_schema)
        agent = (await client.call_tool("create_agent", {"name": "Ada"})).structured_content
        conv = await client.call_tool("create_conversation", {"agent_id": agent["id"], "summary": "s"})
        conv_id = conv.structured_content["id"]
        await turn(app.store, conv_id, "When does the pottery class start?", "Next Tuesday at six.")
        fork = await client.call_tool("fork_conversation", {"conversation_id": conv_id})
        calls = {
            "get_agent": {"agent_id": agent["id"]},
            "list_agents": {},
            "get_conversation": {"conversation_id": fork.structured_content["id"]},  # forked_from set
            "list_conversations": {"agent_id": agent["id"]},
            "list_messages": {"conversation_id": conv_id, "include_system": True},
            "conversation_search": {"query": "pottery class"},
            "update_memory_block": {"agent_id": agent["id"], "label": "human", "value": "Ada"},
        }
        checked = 0
        for name, args in calls.items():
            result = await client.call_tool(name, args)  # the client itself validates against the lean schema
            assert not result.is_error, result.content
            original = _original_schema(name)
            published = tools[name].output_schema
            for instance in [result.structured_content, *mutations(result.structured_content)]:
                assert verdict(published, instance) == verdict(original, instance), (name, instance)
                checked += 1
        assert checked > 200


def _original_schema(tool: str) -> dict[str, Any]:
    server = build_server(Settings())
    meta = server._tool_manager.get_tool(tool).fn_metadata
    return TypeAdapter(meta.output_model).json_schema()
