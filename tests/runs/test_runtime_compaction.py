"""Compaction: automatic near the window, on a provider context-window error, on demand (chunked for an
already overflowed context), per model window after an override, and forks of compacted conversations."""

from __future__ import annotations

import json

import pytest
from fake_provider import FakeProvider
from mcp import Client
from runtime_helpers import call, call_error, history, new_conversation, run_ids

from mcp_server_conversations.config import Settings
from mcp_server_conversations.gateway import ModelGateway
from mcp_server_conversations.mcp.server import build_server
from mcp_server_conversations.runs.agent_tools import TOOL_SCHEMAS
from mcp_server_conversations.runs.compaction import TRIGGER
from mcp_server_conversations.runs.prompt import SUMMARY_PREFIX, estimate_tokens


@pytest.fixture
def mode() -> str:
    """Compaction does not depend on the MCP protocol era: one in-memory mode (JSON-RPC) is enough."""
    return "legacy"


SUMMARY = "SUMMARY: the user counted zebras across several turns."
FILLER = "lorem ipsum dolor " * 33  # about 600 characters


def summarizer_calls(fake: FakeProvider) -> list:
    return [r for r in fake.requests if r.tools is None and "condense a conversation" in (r.system or "")]


def agent_calls(fake: FakeProvider) -> list:
    return [r for r in fake.requests if r.tools]


async def small_agent_conversation(c: Client, window: int | None) -> tuple[str, str]:
    agent = await call(
        c, "create_agent", {"name": "small", "system": "Be brief.", "memory_blocks": [], "context_window_limit": window}
    )
    return agent["id"], await new_conversation(c, agent_id=agent["id"])


async def talk(c: Client, fake: FakeProvider, conv: str, turns: range, filler: str = FILLER, **extra) -> None:
    """Turns with long user messages and short answers (long streamed answers would only cost time)."""
    for i in turns:
        fake.enqueue(f"Noted turn {i}.", when=f"turn {i} zebra{i} ")
        await call(c, "send_message", {"conversation_id": conv, "content": f"turn {i} zebra{i} {filler}", **extra})


async def test_automatic_compaction_keeps_history_searchable(connect, fake_provider: FakeProvider) -> None:
    window = 2000  # room for about two turns besides the system message and the tools
    for _ in range(9):
        fake_provider.enqueue(SUMMARY, when="Write the")
    async with connect() as c:
        _, conv = await small_agent_conversation(c, window)
        await talk(c, fake_provider, conv, range(9))
        summarizer = summarizer_calls(fake_provider)
        assert len(summarizer) >= 2
        assert "zebra0" in summarizer[0].messages[-1]["content"]
        assert "summary of earlier messages: " + SUMMARY in summarizer[1].messages[-1]["content"]  # rolling
        for request in agent_calls(fake_provider):  # every agent call fit under the trigger
            assert estimate_tokens(request.messages, len(json.dumps(TOOL_SCHEMAS))) <= TRIGGER * window
        last = agent_calls(fake_provider)[-1].messages
        assert last[1] == {"role": "user", "content": SUMMARY_PREFIX + SUMMARY}
        assert not any("zebra0" in (m["content"] or "") for m in last)
        assert "zebra8" in last[-1]["content"]

        listed = await history(c, conv)
        summaries = [m for m in listed if m["message_type"] == "summary_message"]
        assert len(summaries) == len(summarizer) and {m["content"] for m in summaries} == {SUMMARY}
        assert [m["in_context"] for m in summaries] == [False] * (len(summaries) - 1) + [True]
        assert summaries[0]["role"] == "system"
        first = next(m for m in listed if "zebra0" in (m["content"] or ""))
        assert not first["in_context"] and not first["is_err"]
        hits = (await call(c, "conversation_search", {"conversation_id": conv, "query": "zebra0"}))["results"]
        assert [h["message_id"] for h in hits][:1] == [first["id"]]
        hits = await call(c, "conversation_search", {"conversation_id": conv, "query": "counted zebras"})
        assert summaries[0]["id"] in [h["message_id"] for h in hits["results"]]


async def test_fork_of_a_compacted_conversation_inherits_the_summary(connect, fake_provider: FakeProvider) -> None:
    for _ in range(6):
        fake_provider.enqueue(SUMMARY, when="Write the")
    async with connect() as c:
        _, conv = await small_agent_conversation(c, 2000)
        await talk(c, fake_provider, conv, range(6))
        source_before = await history(c, conv)
        fork = (await call(c, "fork_conversation", {"conversation_id": conv}))["id"]
        inherited = await history(c, fork)
        assert inherited[0]["message_type"] == "summary_message" and inherited[0]["content"] == SUMMARY
        assert not any("zebra0" in (m["content"] or "") for m in inherited)
        await call(c, "send_message", {"conversation_id": fork, "content": "in the fork"})
        sent = agent_calls(fake_provider)[-1].messages
        assert sent[1]["content"] == SUMMARY_PREFIX + SUMMARY and sent[-1]["content"] == "in the fork"
        assert await history(c, conv) == source_before  # the source is unchanged


async def test_context_window_error_compacts_once_and_retries(
    connect, fake_provider: FakeProvider, model_settings: Settings
) -> None:
    async with connect() as c:
        _, conv = await small_agent_conversation(c, None)
        await talk(c, fake_provider, conv, range(3))
        fake_provider.enqueue(error_status=400, error_code="context_length_exceeded")
        fake_provider.enqueue(SUMMARY, when="Write the")
        before = len(fake_provider.requests)
        run = await call(c, "send_message", {"conversation_id": conv, "content": "one more"})
        assert run["status"] == "completed" and run["messages"][-1]["content"] == "Fake reply to: one more"
        failed, summarize, retry = fake_provider.requests[before:]
        assert failed.status == 400 and summarize in summarizer_calls(fake_provider)
        assert retry.messages[1]["content"] == SUMMARY_PREFIX + SUMMARY

        # A second overflow in the same step fails the run, with a clean context.
        fake_provider.enqueue(error_status=400, error_code="context_length_exceeded")
        fake_provider.enqueue(SUMMARY, when="Write the")
        fake_provider.enqueue(error_status=400, error_code="context_length_exceeded")
        text = await call_error(c, "send_message", {"conversation_id": conv, "content": "too much"})
        assert "ContextWindowExceededError" in text
        run = await call(c, "get_run", {"run_id": run_ids(model_settings, conv)[-1]})
        assert run["status"] == "failed" and run["stop_reason"] == "context_window_exceeded"
        too_much = next(m for m in await history(c, conv) if m["content"] == "too much")
        assert too_much["is_err"] and not too_much["in_context"]


async def test_compact_conversation_on_demand_and_nothing_to_compact(connect, fake_provider: FakeProvider) -> None:
    fake_provider.enqueue(SUMMARY, when="Write the")
    async with connect() as c:
        empty = await new_conversation(c)
        nothing = await call(c, "compact_conversation", {"conversation_id": empty})
        assert nothing == {"summary": None, "messages_before": 0, "messages_after": 0}
        conv = await new_conversation(c)
        await talk(c, fake_provider, conv, range(4), filler="short")
        requests = len(fake_provider.requests)
        result = await call(c, "compact_conversation", {"conversation_id": conv})
        assert result["summary"] == SUMMARY and result["messages_before"] == 8
        assert 1 < result["messages_after"] < 8
        assert len(fake_provider.requests) == requests + 1
        listed = await history(c, conv)
        assert len([m for m in listed if m["in_context"]]) == result["messages_after"]
        assert listed[-1]["message_type"] == "summary_message"  # listed where it was made
        await call(c, "send_message", {"conversation_id": conv, "content": "go on"})
        assert fake_provider.requests[-1].messages[1]["content"] == SUMMARY_PREFIX + SUMMARY  # first in context
        assert "not found" in await call_error(c, "compact_conversation", {"conversation_id": "conv-missing"})


async def test_summarizer_input_is_chunked_to_its_window(connect, fake_provider: FakeProvider) -> None:
    async with connect() as c:
        agent, conv = await small_agent_conversation(c, None)
        long = " ".join(f"w{j}" for j in range(400))  # ~2000 characters
        await talk(c, fake_provider, conv, range(4), filler=long)
        window = 1000
        await call(c, "update_agent", {"agent_id": agent, "context_window_limit": window})  # now overflowed
        result = await call(c, "compact_conversation", {"conversation_id": conv})
        calls = summarizer_calls(fake_provider)
        assert len(calls) >= 3 and result["summary"]
        for request in calls:
            assert estimate_tokens(request.messages) <= window
        assert "Summary so far" in calls[-1].messages[-1]["content"]  # chunks are folded into one summary
        await call(c, "send_message", {"conversation_id": conv, "content": "after compaction"})
        assert estimate_tokens(agent_calls(fake_provider)[-1].messages) <= window


async def test_window_follows_the_model_of_the_call_after_override(
    settings: Settings, fake_provider: FakeProvider
) -> None:
    small_default = settings.model_copy(update={"default_model": "openai/fake-model", "default_context_window": 2000})
    async with Client(build_server(small_default)) as c:
        conv = await new_conversation(c)
        await talk(c, fake_provider, conv, range(5), override_model="openai/gpt-4o")  # litellm knows: 128k
        assert summarizer_calls(fake_provider) == []
        assert {r.model for r in fake_provider.requests} == {"gpt-4o"}
        prompt = fake_provider.requests[-1].messages + [{"role": "user", "content": "now the small one"}]
        assert estimate_tokens(prompt, len(json.dumps(TOOL_SCHEMAS))) > TRIGGER * 2000
        await call(c, "send_message", {"conversation_id": conv, "content": "now the small one"})
        # fake-model is unknown to litellm: the configured default window applies, and the call compacts first.
        assert summarizer_calls(fake_provider) and {r.model for r in summarizer_calls(fake_provider)} == {"fake-model"}
        assert fake_provider.requests[-1].messages[1]["content"].startswith(SUMMARY_PREFIX)


async def test_gateway_window_known_model_else_configured_default(settings: Settings) -> None:
    gateway = ModelGateway(settings.model_copy(update={"default_context_window": 5000}))
    await gateway.load()
    assert gateway.max_input_tokens("openai/gpt-4o") == 128000
    assert gateway.max_input_tokens("openai/some-local-model") == 5000


async def test_a_run_that_compacted_and_did_not_complete_leaves_the_context_as_before_it(
    connect, fake_provider: FakeProvider
) -> None:
    async with connect() as c:
        agent, conv = await small_agent_conversation(c, None)
        await talk(c, fake_provider, conv, range(4))
        before = await history(c, conv)
        await call(c, "update_agent", {"agent_id": agent, "context_window_limit": 1000})  # now over the trigger
        for _ in range(3):
            fake_provider.enqueue(SUMMARY, when="Write the")
        fake_provider.enqueue(error_status=400, error_message="refused", when="go on")
        assert "refused" in await call_error(c, "send_message", {"conversation_id": conv, "content": "go on"})
        listed = {m["id"]: m for m in await history(c, conv)}
        assert any(m["message_type"] == "summary_message" for m in listed.values())  # it did compact
        assert [m["id"] for m in listed.values() if m["in_context"]] == [m["id"] for m in before]
        await call(c, "update_agent", {"agent_id": agent, "context_window_limit": 100000})
        await call(c, "send_message", {"conversation_id": conv, "content": "next"})
        sent = agent_calls(fake_provider)[-1].messages[1:]
        assert [m["content"] for m in sent] == [m["content"] for m in before] + ["next"]
