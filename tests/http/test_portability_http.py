"""Export/import and resources over MCP's streamable HTTP with named tokens, in both protocol eras: a
conversation round trip whose next turn sends the same prompt, and another principal's resources and
exports answering as unknown ones."""

from __future__ import annotations

import pytest
from fake_provider import FakeProvider
from http_helpers import mcp_client, serving
from isolation_helpers import UNKNOWN, as_unknown
from mcp import MCPError
from runtime_helpers import call, call_error, new_conversation
from test_named_tokens import create as create_token
from test_portability import everything, shape

from mcp_server_conversations.config import Settings
from mcp_server_conversations.mcp.resources import block_uri, transcript_uri


@pytest.mark.parametrize("mode", ["legacy", "auto"])  # a stateful 2025-11-25 session, and 2026-07-28
async def test_round_trip_and_isolation_over_http(settings: Settings, fake_provider: FakeProvider, mode: str) -> None:
    tokens = {name: create_token(str(settings.resolved_db()), name) for name in ("alice", "bob")}
    async with serving(settings.model_copy(update={"default_model": "openai/fake-model"})) as served:
        async with mcp_client(served.mcp_url, tokens["alice"], mode=mode) as a:
            agent = await call(a, "create_agent", {"name": "a", "memory_blocks": [{"label": "human", "value": "A"}]})
            conv = await new_conversation(a, agent_id=agent["id"])
            fake_provider.enqueue(
                "Noting it.",
                tool_calls=[{"name": "core_memory_append", "arguments": {"label": "human", "content": "tea"}}],
            )
            fake_provider.enqueue("Done.")
            await call(a, "send_message", {"conversation_id": conv, "content": "I drink tea."})
            data = (await call(a, "export_conversation", {"conversation_id": conv}))["data"]
            new = (await call(a, "import_conversation", {"data": data}))["conversation"]["id"]
            assert shape(await everything(a, new)) == shape(await everything(a, conv))
            fake_provider.enqueue("Same.")
            fake_provider.enqueue("Same.")
            await call(a, "send_message", {"conversation_id": conv, "content": "More?"})
            await call(a, "send_message", {"conversation_id": new, "content": "More?"})
            first, second = fake_provider.requests[-2:]
            assert first.messages == second.messages
            own_uri = block_uri(agent["id"], "human")
            assert "tea" in (await a.read_resource(own_uri)).contents[0].text

        async with mcp_client(served.mcp_url, tokens["bob"], mode=mode) as b:
            listed = {r.uri for r in (await b.list_resources(cache_mode="bypass")).resources}
            assert not any(agent["id"] in u or conv in u or new in u for u in listed)
            for theirs, unknown in (
                (own_uri, block_uri(UNKNOWN["agent"], "human")),
                (transcript_uri(conv), transcript_uri(UNKNOWN["conversation"])),
            ):
                with pytest.raises(MCPError) as got:
                    await b.read_resource(theirs, cache_mode="bypass")
                with pytest.raises(MCPError) as want:
                    await b.read_resource(unknown, cache_mode="bypass")
                assert got.value.error.code == want.value.error.code == -32602
                assert got.value.error.message == want.value.error.message.replace(unknown, theirs)
            refused = await call_error(b, "export_conversation", {"conversation_id": conv})
            unknown_msg = await call_error(b, "export_conversation", {"conversation_id": UNKNOWN["conversation"]})
            assert refused == as_unknown(unknown_msg, conv, UNKNOWN["conversation"])
            refused = await call_error(b, "get_memory_block_history", {"agent_id": agent["id"], "label": "human"})
            assert "not found" in refused
