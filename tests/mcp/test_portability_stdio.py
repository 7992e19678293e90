"""Export and import over stdio (a spawned server process, both protocol eras, both backends): a
conversation round trip whose next turn sends the same prompt, and a real Letta agent file."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_provider import FakeProvider
from mcp import Client
from runtime_helpers import call, new_conversation
from test_portability import everything, shape
from test_runtime_stdio import server_params

from mcp_server_conversations.config import Settings

pytestmark = [pytest.mark.slow, pytest.mark.processes]

FILES = Path(__file__).parent.parent / "data" / "agent-files"


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_round_trip_over_stdio(settings: Settings, fake_provider: FakeProvider, mode: str) -> None:
    async with Client(server_params(settings, fake_provider), mode=mode) as c:
        conv = await new_conversation(c)
        fake_provider.enqueue(
            "Noting it.", tool_calls=[{"name": "core_memory_append", "arguments": {"label": "human", "content": "tea"}}]
        )
        fake_provider.enqueue("Done.")
        await call(c, "send_message", {"conversation_id": conv, "content": "I drink tea."})
        data = (await call(c, "export_conversation", {"conversation_id": conv}))["data"]
        imported = await call(c, "import_conversation", {"data": data})
        new = imported["conversation"]["id"]
        assert shape(await everything(c, new)) == shape(await everything(c, conv))
        fake_provider.enqueue("Same.")
        fake_provider.enqueue("Same.")
        await call(c, "send_message", {"conversation_id": conv, "content": "More?"})
        await call(c, "send_message", {"conversation_id": new, "content": "More?"})
        first, second = fake_provider.requests[-2:]
        assert first.messages == second.messages

        af = await call(c, "import_agent", {"data": (FILES / "customer_service.af").read_text()})
        assert af["agent"]["name"] == "customer_service" and len(af["agent"]["memory_blocks"]) == 2
        exported = await call(c, "export_agent", {"agent_id": af["agent"]["id"]})
        assert exported["agents"][0]["id"] == "agent-0"
