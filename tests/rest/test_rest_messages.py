"""Every call on Letta's Conversations page, run with letta-client (strict validation) against the
real server, whose model calls go through litellm to the fake OpenAI-compatible provider."""

from __future__ import annotations

import io
from contextlib import redirect_stdout

import letta_client
import pytest
from fake_provider import FakeProvider
from letta_client import AsyncLetta, Letta
from letta_client.types import ToolReturnMessage
from letta_client.types.agents import (
    AssistantMessage,
    ReasoningMessage,
    SystemMessage,
    ToolCallMessage,
    UserMessage,
)
from letta_client.types.agents.letta_streaming_response import LettaStopReason, LettaUsageStatistics
from rest_helpers import TOKEN, letta, rest_server, sdk

from mcp_server_conversations.config import Settings


def docs_page(base_url: str, fake: FakeProvider) -> None:
    client = letta(base_url)
    agent = client.agents.create(
        name="docs", model="openai/agent-model", memory_blocks=[{"label": "human", "value": "Name: unknown"}]
    )

    # Creating a conversation
    conversation = client.conversations.create(agent_id=agent.id)
    print(f"Created conversation: {conversation.id}")

    # Sending messages: the response is always a stream; with stream_tokens the deltas share an id
    fake.enqueue("Hello Ada, nice to meet you.", reasoning="The user says her name is Ada.")
    stream = client.conversations.messages.create(
        conversation.id, messages=[{"role": "user", "content": "Hi, I am Ada"}], stream_tokens=True
    )
    chunks = list(stream)
    for chunk in chunks:
        if chunk.message_type == "assistant_message":
            print(chunk.content, end="")
    assistant = [c for c in chunks if c.message_type == "assistant_message"]
    reasoning = [c for c in chunks if c.message_type == "reasoning_message"]
    assert all(isinstance(c, AssistantMessage) for c in assistant) and len(assistant) > 1
    assert len({c.id for c in assistant}) == 1
    assert "".join(c.content for c in assistant) == "Hello Ada, nice to meet you."
    assert all(isinstance(c, ReasoningMessage) for c in reasoning) and len({c.id for c in reasoning}) == 1
    assert "".join(c.reasoning for c in reasoning) == "The user says her name is Ada."
    assert isinstance(chunks[-2], LettaStopReason) and chunks[-2].stop_reason == "end_turn"
    assert isinstance(chunks[-1], LettaUsageStatistics) and chunks[-1].total_tokens > 0
    assert fake.requests[-1].model == "agent-model"

    # A conversation with its own model; a send with override_model (never persisted)
    fast = client.conversations.create(agent_id=agent.id, model="openai/gpt-5-mini")
    list(client.conversations.messages.create(fast.id, messages=[{"role": "user", "content": "Quick question"}]))
    assert fake.requests[-1].model == "gpt-5-mini"
    stream = client.conversations.messages.create(
        fast.id, messages=[{"role": "user", "content": "Think harder"}], override_model="openai/claude-haiku-4-5"
    )
    whole = [c for c in stream if c.message_type == "assistant_message"]
    assert len(whole) == 1 and whole[0].content == "Fake reply to: Think harder"  # no stream_tokens: one chunk
    assert fake.requests[-1].model == "claude-haiku-4-5"
    assert client.conversations.retrieve(fast.id).model == "openai/gpt-5-mini"

    # Listing conversations, most recently active first; never-run ones last
    idle = client.conversations.create(agent_id=agent.id)
    conversations = client.conversations.list(agent_id=agent.id, order_by="last_run_completion", order="desc")
    for conv in conversations:
        print(f"{conv.id}: {conv.summary}")
    assert [c.id for c in conversations] == [fast.id, conversation.id, idle.id]

    # A turn with a tool call, so the history holds every message type
    append = {"label": "human", "content": "Likes pottery"}
    fake.enqueue(tool_calls=[{"name": "core_memory_append", "arguments": append}])
    fake.enqueue("Noted: you like pottery.")
    said = [{"role": "user", "content": "I like pottery"}]
    list(client.conversations.messages.create(conversation.id, messages=said))
    assert "Likes pottery" in client.agents.blocks.retrieve("human", agent_id=agent.id).value

    # Listing messages and printing them, as on the page
    messages = client.conversations.messages.list(conversation.id)
    out = io.StringIO()
    with redirect_stdout(out):
        for msg in messages:
            print(f"[{msg.message_type}] {msg.content or msg.reasoning or ''}")
    lines = out.getvalue().splitlines()
    assert lines[0] == "[assistant_message] Noted: you like pottery."  # newest first by default
    assert lines[-1] == "[user_message] Hi, I am Ada"
    kinds = {type(m) for m in messages}
    assert {UserMessage, ReasoningMessage, AssistantMessage, ToolCallMessage, ToolReturnMessage} <= kinds
    assert SystemMessage not in kinds
    call = next(m for m in messages if isinstance(m, ToolCallMessage))
    assert call.tool_call.name == "core_memory_append" and "pottery" in call.tool_call.arguments
    ret = next(m for m in messages if isinstance(m, ToolReturnMessage))
    assert ret.status == "success" and ret.tool_call_id == call.tool_call.tool_call_id
    oldest_first = [m.id for m in client.conversations.messages.list(conversation.id, order="asc")]
    assert oldest_first == list(reversed([m.id for m in messages]))

    # Forking: the whole conversation, then through one message
    fork = client.conversations.fork(conversation.id)
    assert [m.id for m in client.conversations.messages.list(fork.id, order="asc")] == oldest_first
    first_user = oldest_first[0]
    early = client.conversations.fork(conversation.id, message_id=first_user)
    assert [m.id for m in client.conversations.messages.list(early.id, order="asc")] == [first_user]
    list(client.conversations.messages.create(early.id, messages=[{"role": "user", "content": "Other path"}]))
    assert len(list(client.conversations.messages.list(early.id))) == 3
    assert [m.id for m in client.conversations.messages.list(conversation.id, order="asc")] == oldest_first

    # Deleting
    client.conversations.delete(early.id)
    with pytest.raises(letta_client.NotFoundError):
        client.conversations.retrieve(early.id)


async def test_the_conversations_page_runs_unmodified(settings: Settings, fake_provider: FakeProvider) -> None:
    async with rest_server(settings) as served:
        await sdk(docs_page, served.base_url, fake_provider)


def search_and_compact(base_url: str, fake: FakeProvider) -> None:
    client = letta(base_url)
    agent = client.agents.create(name="search")
    pottery = client.conversations.create(agent_id=agent.id)
    other = client.conversations.create(agent_id=agent.id)
    fake.enqueue("Pottery class starts on Tuesday.", reasoning="Recall the pottery schedule.")
    list(client.conversations.messages.create(pottery.id, messages=[{"role": "user", "content": "When is pottery?"}]))
    fake.enqueue("Painting is on Friday.")
    list(client.conversations.messages.create(other.id, messages=[{"role": "user", "content": "And painting?"}]))

    results = client.messages.search(query="when did the pottery class start?", agent_id=agent.id, limit=10)
    assert isinstance(results, list) and results
    assert {r.conversation_id for r in results} == {pottery.id}  # pooled search, ranked; only pottery matches
    kinds = {r.message_type for r in results}
    assert kinds <= {"user_message", "assistant_message", "reasoning_message", "system_message"}
    assert "user_message" in kinds and "assistant_message" in kinds
    scoped = client.messages.search(query="painting", conversation_id=other.id)
    assert {r.content for r in scoped} == {"And painting?", "Painting is on Friday."}
    assert client.messages.search(query="zebra", agent_id=agent.id) == []
    with pytest.raises(letta_client.UnprocessableEntityError):
        client.messages.search(query="x", start_date="not a date")

    fresh = client.conversations.create(agent_id=agent.id)
    nothing = client.conversations.messages.compact(fresh.id)  # nothing to compact: no model call
    assert (nothing.summary, nothing.num_messages_before, nothing.num_messages_after) == ("", 0, 0)
    for i in range(3):
        list(client.conversations.messages.create(pottery.id, messages=[{"role": "user", "content": f"More {i}"}]))
    fake.enqueue("Summary: Ada asked about pottery and more.")
    compacted = client.conversations.messages.compact(pottery.id)
    assert compacted.summary == "Summary: Ada asked about pottery and more."
    assert compacted.num_messages_after < compacted.num_messages_before
    summary = [m for m in client.conversations.messages.list(pottery.id) if m.message_type == "summary_message"]
    assert len(summary) == 1 and summary[0].summary == compacted.summary


async def test_message_search_and_compact(settings: Settings, fake_provider: FakeProvider) -> None:
    async with rest_server(settings) as served:
        await sdk(search_and_compact, served.base_url, fake_provider)


def message_pages(base_url: str) -> None:
    client = letta(base_url)
    conv = client.conversations.create(agent_id=client.agents.create(name="pages").id)
    for i in range(3):
        list(client.conversations.messages.create(conv.id, messages=[{"role": "user", "content": f"turn {i}"}]))
    newest_first = [m.id for m in client.conversations.messages.list(conv.id)]
    assert len(newest_first) == 6
    assert [m.id for m in client.conversations.messages.list(conv.id, limit=2)] == newest_first  # 3 pages + empty
    oldest_first = list(reversed(newest_first))
    assert [m.id for m in client.conversations.messages.list(conv.id, limit=4, order="asc")] == oldest_first
    page = client.conversations.messages.list(conv.id, order="asc", after=oldest_first[1], limit=2)
    assert [m.id for m in page.items] == oldest_first[2:4]
    pages = client.conversations.messages.list(conv.id, order="asc", before=oldest_first[5], limit=2)
    backwards = [m.id for m in pages]
    assert backwards == oldest_first[3:5] + oldest_first[1:3] + oldest_first[0:1]
    between = client.conversations.messages.list(conv.id, order="asc", after=oldest_first[0], before=oldest_first[3])
    assert [m.id for m in between.items] == oldest_first[1:3]
    with pytest.raises(letta_client.UnprocessableEntityError) as err:
        client.conversations.messages.list(conv.id, after="message-not-here")
    assert "after" in err.value.body["detail"]


async def test_message_pages_follow_after_and_before_ids_to_an_empty_page(
    settings: Settings, fake_provider: FakeProvider
) -> None:
    async with rest_server(settings) as served:
        await sdk(message_pages, served.base_url)


def local_names(port: int) -> None:
    assert str(Letta(environment="local", api_key="x").base_url) == "http://localhost:8283"
    client = letta(f"http://localhost:{port}")  # the Host header Letta(environment="local") sends
    assert client.conversations.create(agent_id=client.agents.create(name="local").id).id.startswith("conv-")


async def test_localhost_base_urls_are_accepted(settings: Settings) -> None:
    async with rest_server(settings) as served:
        await sdk(local_names, served.port)


async def test_the_async_client_streams_and_lists_the_same(settings: Settings, fake_provider: FakeProvider) -> None:
    async with rest_server(settings) as served:
        client = AsyncLetta(base_url=served.base_url, api_key=TOKEN, max_retries=0, _strict_response_validation=True)
        agent = await client.agents.create(name="async")
        conv = await client.conversations.create(agent_id=agent.id)
        fake_provider.enqueue("Async hello")
        stream = await client.conversations.messages.create(
            conv.id, messages=[{"role": "user", "content": "Hi from asyncio"}], stream_tokens=True
        )
        text = "".join([c.content async for c in stream if c.message_type == "assistant_message"])
        assert text == "Async hello"
        listed = [m.message_type async for m in client.conversations.messages.list(conv.id, limit=1)]
        assert listed == ["assistant_message", "user_message"]
        await client.close()


def agent_direct(base_url: str, fake: FakeProvider) -> None:
    client = letta(base_url)
    agent = client.agents.create(name="direct")
    fake.enqueue("A whole reply.")
    # Letta's agent route answers JSON unless the send asks for `streaming` (the SDKs parse it so)
    response = client.agents.messages.create(agent.id, messages=[{"role": "user", "content": "hello"}])
    assert [m.message_type for m in response.messages] == ["assistant_message"]
    assert response.messages[0].content == "A whole reply." and response.stop_reason.stop_reason == "end_turn"
    fake.enqueue("A streamed reply.")
    stream = client.agents.messages.create(agent.id, messages=[{"role": "user", "content": "again"}], streaming=True)
    assert [c.content for c in stream if c.message_type == "assistant_message"] == ["A streamed reply."]
    # Agent-direct compaction names the agent in the body, as sends do
    for i in range(3):
        list(
            client.conversations.messages.create(
                "default", agent_id=agent.id, messages=[{"role": "user", "content": f"more {i}"}]
            )
        )
    fake.enqueue("Summary: greetings.")
    compacted = client.conversations.messages.compact("default", agent_id=agent.id)
    assert compacted.summary == "Summary: greetings." and compacted.num_messages_after < compacted.num_messages_before


async def test_agent_direct_sends_and_compaction(settings: Settings, fake_provider: FakeProvider) -> None:
    async with rest_server(settings) as served:
        await sdk(agent_direct, served.base_url, fake_provider)
