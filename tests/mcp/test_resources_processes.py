"""Resource subscriptions across server processes on one database (a SQLite file, and PostgreSQL): a
client subscribed over stdio or streamable HTTP, in both protocol eras, hears within 2 s of a memory edit
made by a run in another server process, of that turn's end, and of a conversation coming."""

from __future__ import annotations

import asyncio

import pytest
from fake_provider import FakeProvider
from http_helpers import mcp_client, serving
from mcp import Client
from test_resources import Notices, subscribed
from test_stdio_e2e import ok
from test_stdio_two_processes import server

from mcp_server_conversations.config import Settings
from mcp_server_conversations.mcp.resources import block_uri, transcript_uri

pytestmark = [pytest.mark.slow, pytest.mark.processes]

HANG_GUARD = 90  # seconds: only so a broken server fails the test instead of hanging it


async def edit_elsewhere(
    worker: Client, watcher: Client, notices: Notices, fake_provider: FakeProvider, mode: str
) -> None:
    assert watcher.protocol_version == ("2026-07-28" if mode == "auto" else "2025-11-25")
    agent = await ok(worker, "create_agent", {"name": "w", "memory_blocks": [{"label": "human", "value": "-"}]})
    conv = (await ok(worker, "create_conversation", {"agent_id": agent["id"]}))["id"]
    uri, turn = block_uri(agent["id"], "human"), transcript_uri(conv)
    assert (await watcher.read_resource(uri, cache_mode="bypass")).contents[0].text == "-"
    async with subscribed(watcher, notices, [uri, turn]):
        fake_provider.enqueue(
            tool_calls=[{"name": "memory_rethink", "arguments": {"label": "human", "new_memory": "likes jasmine tea"}}]
        )
        fake_provider.enqueue("Noted.")
        await ok(worker, "send_message", {"conversation_id": conv, "content": "I like jasmine tea"})
        await notices.wait_for(uri)  # each within 2 s of the send's end (the edit came before it)
        await notices.wait_for(turn)
        assert (await watcher.read_resource(uri, cache_mode="bypass")).contents[0].text == "likes jasmine tea"
        transcript = (await watcher.read_resource(turn, cache_mode="bypass")).contents[0].text
        assert "I like jasmine tea" in transcript and "memory_rethink" in transcript
        await ok(worker, "update_memory_block", {"agent_id": agent["id"], "label": "human", "value": "by a tool"})
        notices.updated.clear()
        await ok(worker, "update_memory_block", {"agent_id": agent["id"], "label": "human", "value": "again"})
        await notices.wait_for(uri)
        await ok(worker, "create_conversation", {"agent_id": agent["id"]})
        await notices.wait_listed()


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_stdio_subscriber_hears_of_another_process(
    settings: Settings, fake_provider: FakeProvider, mode: str
) -> None:
    db = settings.resolved_db()
    notices = Notices()
    watcher = Client(server(db, fake_provider), mode=mode, message_handler=notices.handler)
    async with watcher, Client(server(db, fake_provider)) as worker:
        await asyncio.wait_for(edit_elsewhere(worker, watcher, notices, fake_provider, mode), HANG_GUARD)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_an_http_subscriber_hears_of_another_process(
    settings: Settings, fake_provider: FakeProvider, mode: str
) -> None:
    notices = Notices()
    async with serving(settings) as served:
        async with mcp_client(served.mcp_url, mode=mode, message_handler=notices.handler) as watcher:
            async with Client(server(settings.resolved_db(), fake_provider)) as worker:
                await asyncio.wait_for(edit_elsewhere(worker, watcher, notices, fake_provider, mode), HANG_GUARD)
