"""MCP resources through the real MCP client (both eras, both backends): templates, paginated lists,
reads, unknown URIs, and subscriptions that hear of memory edits and ended turns made elsewhere."""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fake_provider import FakeProvider
from mcp import Client, MCPError
from mcp.client.subscriptions import ResourcesListChanged, ResourceUpdated
from runtime_helpers import call, new_conversation

from mcp_server_conversations.config import Settings
from mcp_server_conversations.mcp.resources import PAGE, block_uri, transcript_uri
from mcp_server_conversations.mcp.server import build_server

NOTICE_WITHIN = 2.0  # seconds a change may take to reach a subscriber


class Notices:
    """What a subscribed client heard: updated URIs and list changes, in either era."""

    def __init__(self) -> None:
        self.updated: list[str] = []
        self.list_changed = 0
        self.changed = asyncio.Event()

    async def handler(self, message: Any) -> None:  # 2025 revisions: the client's message handler
        method = getattr(message, "method", None)
        if method == "notifications/resources/updated":
            self.updated.append(str(message.params.uri))
        elif method == "notifications/resources/list_changed":
            self.list_changed += 1
        self.changed.set()

    def event(self, event: Any) -> None:  # 2026-07-28: listen-stream events
        if isinstance(event, ResourceUpdated):
            self.updated.append(event.uri)
        elif isinstance(event, ResourcesListChanged):
            self.list_changed += 1
        self.changed.set()

    async def wait_for(self, uri: str, within: float = NOTICE_WITHIN) -> None:
        async with asyncio.timeout(within):
            while uri not in self.updated:
                self.changed.clear()
                await self.changed.wait()

    async def wait_listed(self, within: float = NOTICE_WITHIN) -> None:
        async with asyncio.timeout(within):
            while not self.list_changed:
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def subscribed(client: Client, notices: Notices, uris: list[str]) -> AsyncIterator[None]:
    """Subscribe to `uris` (and list changes) the way the client's era does."""
    if client.protocol_version == "2026-07-28":
        async with client.listen(resources_list_changed=True, resource_subscriptions=uris) as sub:

            async def pump() -> None:
                async for event in sub:
                    notices.event(event)

            task = asyncio.ensure_future(pump())
            try:
                yield
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # resources/subscribe is deprecated in the SDK for 2026-07-28 clients
        for uri in uris:
            await client.subscribe_resource(uri)
    await client.list_resources()  # a client that lists resources hears of list changes
    yield


async def all_resources(client: Client) -> tuple[list[str], int]:
    uris, cursor, pages = [], None, 0
    while True:
        page = await client.list_resources(cursor=cursor, cache_mode="bypass")
        pages += 1
        assert len(page.resources) <= PAGE
        uris += [r.uri for r in page.resources]
        cursor = page.next_cursor
        if cursor is None:
            return uris, pages


async def test_templates_list_and_read(connect) -> None:
    async with connect() as client:
        caps = client.server_capabilities.resources
        assert caps is not None and caps.subscribe and caps.list_changed
        templates = (await client.list_resource_templates()).resource_templates
        assert {t.uri_template for t in templates} == {
            "conversations://agents/{agent_id}/blocks/{label}",
            "conversations://conversations/{conversation_id}/transcript",
        }
        agent = await call(
            client,
            "create_agent",
            {"name": "r", "memory_blocks": [{"label": "my notes", "value": "tea, not coffee", "description": "d"}]},
        )
        conv = await new_conversation(client, agent_id=agent["id"], summary="Drinks")
        await call(client, "send_message", {"conversation_id": conv, "content": "hello there"})

        uri = block_uri(agent["id"], "my notes")
        assert uri == f"conversations://agents/{agent['id']}/blocks/my%20notes"
        got = await client.read_resource(uri)
        assert got.contents[0].text == "tea, not coffee" and got.contents[0].mime_type == "text/plain"
        text = (await client.read_resource(transcript_uri(conv))).contents[0]
        assert text.mime_type == "text/markdown"
        assert text.text.startswith("# Drinks") and "hello there" in text.text and "Fake reply to" in text.text

        listed = await client.list_resources(cache_mode="bypass")
        mine = {r.uri: r for r in listed.resources}
        assert mine[uri].mime_type == "text/plain" and mine[uri].name == "my notes"
        assert mine[transcript_uri(conv)].mime_type == "text/markdown"

        for bad in [
            block_uri(agent["id"], "nope"),
            block_uri("agent-missing", "human"),
            transcript_uri("conv-missing"),
            "conversations://elsewhere",
            "file:///etc/passwd",
        ]:
            with pytest.raises(MCPError) as err:
                await client.read_resource(bad, cache_mode="bypass")
            assert err.value.error.code == -32602 and "Unknown resource" in err.value.error.message


async def test_resource_list_is_paginated(connect) -> None:
    async with connect() as client:
        agent = await call(
            client,
            "create_agent",
            {"name": "many", "memory_blocks": [{"label": f"b{i}", "value": str(i)} for i in range(30)]},
        )
        convs = [await new_conversation(client, agent_id=agent["id"]) for _ in range(2 * PAGE)]
        other = await call(client, "create_agent", {"name": "other", "memory_blocks": [{"label": "x", "value": "y"}]})
        uris, pages = await all_resources(client)
        expected = [block_uri(agent["id"], f"b{i}") for i in range(30)] + [transcript_uri(c) for c in convs]
        assert uris[: len(expected)] == expected  # an agent's blocks, then its transcripts, oldest first
        assert block_uri(other["id"], "x") in uris and len(uris) == len(set(uris))
        assert pages >= 3
        with pytest.raises(MCPError) as err:
            await client.list_resources(cursor="not-a-cursor", cache_mode="bypass")
        assert err.value.error.code == -32602


async def test_a_subscriber_hears_of_a_run_editing_memory_in_another_client(
    connect, model_settings: Settings, mode: str, fake_provider: FakeProvider
) -> None:
    """Two clients, each with its own server and store on one database: the watcher hears of the worker's
    run editing memory and ending its turn, and of a conversation coming."""
    notices = Notices()
    async with connect() as worker:
        agent = await call(worker, "create_agent", {"name": "s", "memory_blocks": [{"label": "human", "value": ""}]})
        conv = await new_conversation(worker, agent_id=agent["id"])
        uri, turn = block_uri(agent["id"], "human"), transcript_uri(conv)
        watcher = Client(build_server(model_settings), mode=mode, message_handler=notices.handler)
        async with watcher, subscribed(watcher, notices, [uri, turn]):
            fake_provider.enqueue(
                tool_calls=[{"name": "core_memory_append", "arguments": {"label": "human", "content": "likes tea"}}]
            )
            fake_provider.enqueue("Noted.")
            await call(worker, "send_message", {"conversation_id": conv, "content": "I like tea"})
            await notices.wait_for(uri)
            await notices.wait_for(turn)
            assert (await watcher.read_resource(uri, cache_mode="bypass")).contents[0].text == "likes tea"
            assert not notices.list_changed
            await call(worker, "create_conversation", {"agent_id": agent["id"]})
            await notices.wait_listed()


async def test_unsubscribe_and_things_going_away(connect, model_settings: Settings, mode: str) -> None:
    notices = Notices()
    async with connect() as worker:
        agent = await call(worker, "create_agent", {"name": "g", "memory_blocks": [{"label": "k", "value": "1"}]})
        conv = await new_conversation(worker, agent_id=agent["id"])
        uri = block_uri(agent["id"], "k")
        watcher = Client(build_server(model_settings), mode=mode, message_handler=notices.handler)
        async with watcher, subscribed(watcher, notices, [uri]):
            if mode == "legacy":  # 2025: unsubscribing stops the updates (listen streams end with their context)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    await watcher.unsubscribe_resource(uri)
                await call(worker, "update_memory_block", {"agent_id": agent["id"], "label": "k", "value": "2"})
                await call(worker, "delete_conversation", {"conversation_id": conv})
                await notices.wait_listed()  # the list change comes after the edit: the edit was not sent
                assert uri not in notices.updated
            else:
                await call(worker, "delete_conversation", {"conversation_id": conv})
                await notices.wait_listed()
            notices.list_changed = 0
            await call(worker, "delete_agent", {"agent_id": agent["id"]})
            await notices.wait_listed()
            with pytest.raises(MCPError):
                await watcher.read_resource(uri, cache_mode="bypass")
