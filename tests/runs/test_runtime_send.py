"""send_message through MCP clients (in-memory, both modes) against the fake OpenAI-compatible server:
model routing, the agent's context, its tool loop and streaming."""

from __future__ import annotations

import json

import pytest
from fake_provider import FakeProvider
from mcp import Client
from runtime_helpers import MODEL, call, call_error, call_text, history, new_conversation

from mcp_server_conversations.config import Settings
from mcp_server_conversations.mcp.server import build_server


@pytest.fixture
def mode() -> str:
    """Most of these behaviours do not depend on the MCP era; the tests marked otherwise run in both."""
    return "legacy"


@pytest.mark.parametrize("mode", ["auto", "legacy"])  # results and progress travel differently per era
async def test_model_priority_override_conversation_agent_default(
    settings: Settings, fake_provider: FakeProvider, mode: str
) -> None:
    server = build_server(settings.model_copy(update={"default_model": "openai/default-model"}))
    async with Client(server, mode=mode) as c:
        agent = await call(c, "create_agent", {"name": "a"})
        conv = await new_conversation(c, agent_id=agent["id"])
        send = {"conversation_id": conv, "content": "hi"}

        run = await call(c, "send_message", send)
        await call(c, "update_agent", {"agent_id": agent["id"], "model": "openai/agent-model"})
        run2 = await call(c, "send_message", send)
        await call(c, "update_conversation", {"conversation_id": conv, "model": "openai/conv-model"})
        run3 = await call(c, "send_message", send)
        run4 = await call(c, "send_message", {**send, "override_model": "openai/override-model"})
        run5 = await call(c, "send_message", send)

        assert [r.model for r in fake_provider.requests] == [
            "default-model",
            "agent-model",
            "conv-model",
            "override-model",
            "conv-model",
        ]
        assert [r["model"] for r in (run, run2, run3, run4, run5)] == [
            "openai/default-model",
            "openai/agent-model",
            "openai/conv-model",
            "openai/override-model",
            "openai/conv-model",
        ]
        assert run4["messages"][-1]["model"] == "openai/override-model"
        assert (await call(c, "get_conversation", {"conversation_id": conv}))["model"] == "openai/conv-model"


async def test_no_model_anywhere_says_the_three_ways(settings: Settings, fake_provider: FakeProvider) -> None:
    async with Client(build_server(settings)) as c:
        conv = await new_conversation(c)
        text = await call_error(c, "send_message", {"conversation_id": conv, "content": "hi"})
        assert "override_model" in text and "update_agent" in text and "CONVERSATIONS_DEFAULT_MODEL" in text
        assert await history(c, conv) == []  # nothing stored for a send that could not start
    assert fake_provider.requests == []


async def test_missing_provider_key_names_the_variable(
    connect, fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with connect() as client:
        monkeypatch.delenv("OPENAI_API_KEY")
        conv = await new_conversation(client)
        text = await call_error(client, "send_message", {"conversation_id": conv, "content": "hi"})
        assert "OPENAI_API_KEY" in text
        assert fake_provider.requests == []


async def test_bad_input_is_a_clear_tool_error(connect) -> None:
    async with connect() as client:
        conv = await new_conversation(client)
        assert "content" in await call_error(client, "send_message", {"conversation_id": conv})
        assert "content" in await call_error(client, "send_message", {"conversation_id": conv, "content": "  "})
        assert "override_model" in await call_error(
            client, "send_message", {"conversation_id": conv, "content": "x", "override_model": "gpt"}
        )
        assert "not found" in await call_error(client, "send_message", {"conversation_id": "conv-nope", "content": "x"})
        both = {"conversation_id": conv, "content": "x", "messages": [{"role": "user", "content": "y"}]}
        assert "either content or messages" in await call_error(client, "send_message", both)
        assert await call_error(client, "send_message", {"conversation_id": conv, "content": "x", "max_steps": 0})


@pytest.mark.parametrize("mode", ["auto", "legacy"])  # results and progress travel differently per era
async def test_context_is_system_then_history_then_new_messages(connect, fake_provider: FakeProvider) -> None:
    async with connect() as client:
        conv = await new_conversation(client)
        await call(client, "send_message", {"conversation_id": conv, "content": "first"})
        msgs = [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "second"}]
        text, run = await call_text(client, "send_message", {"conversation_id": conv, "messages": msgs})
        assert text == "Fake reply to: second"
        sent = fake_provider.requests[-1].messages
        assert [(m["role"], m["content"]) for m in sent[1:]] == [
            ("user", "first"),
            ("assistant", "Fake reply to: first"),
            ("system", "Answer in French."),
            ("user", "second"),
        ]
        assert sent[0]["role"] == "system" and "<memory_blocks>" in sent[0]["content"]
        assert fake_provider.requests[-1].tool_names == [
            "core_memory_append",
            "core_memory_replace",
            "memory_insert",
            "memory_replace",
            "memory_rethink",
            "conversation_search",
        ]
        assert [m["message_type"] for m in run["messages"]] == ["assistant_message"]  # input is not repeated
        assert run["usage"]["total_tokens"] > 0 and run["stop_reason"] == "end_turn"


async def test_memory_edit_in_one_conversation_is_in_the_next_call_of_another(
    connect, fake_provider: FakeProvider
) -> None:
    async with connect() as client:
        a, b = await new_conversation(client), await new_conversation(client)
        await call(client, "send_message", {"conversation_id": b, "content": "hello from B"})
        assert "likes green tea" not in fake_provider.requests[-1].system
        fake_provider.enqueue(
            tool_calls=[{"name": "core_memory_append", "arguments": {"label": "human", "content": "likes green tea"}}]
        )
        fake_provider.enqueue("Noted.")
        await call(client, "send_message", {"conversation_id": a, "content": "I like green tea"})
        assert "likes green tea" in fake_provider.requests[-1].system  # A's own next step already sees it
        await call(client, "send_message", {"conversation_id": b, "content": "what do I drink?"})
        assert "likes green tea" in fake_provider.requests[-1].system
        agent = await call(
            client,
            "get_agent",
            {"agent_id": (await call(client, "get_conversation", {"conversation_id": a}))["agent_id"]},
        )
        human = next(blk for blk in agent["memory_blocks"] if blk["label"] == "human")
        assert human["value"].endswith("likes green tea")


async def test_tool_loop_stores_calls_returns_reasoning_and_answer(connect, fake_provider: FakeProvider) -> None:
    async with connect() as client:
        conv = await new_conversation(client)
        fake_provider.enqueue(
            "Let me note that.",
            reasoning="The user shared a fact.",
            tool_calls=[{"name": "memory_insert", "arguments": {"label": "human", "new_string": "Owns a cat"}}],
        )
        fake_provider.enqueue("Done, I will remember your cat.")
        text, run = await call_text(client, "send_message", {"conversation_id": conv, "content": "I have a cat"})
        assert text == "Let me note that.\n\nDone, I will remember your cat."
        types = [m["message_type"] for m in run["messages"]]
        assert types == [
            "reasoning_message",
            "assistant_message",
            "tool_call_message",
            "tool_return_message",
            "assistant_message",
        ]
        assert run["messages"][0]["reasoning"] == "The user shared a fact."
        call_msg, ret = run["messages"][2], run["messages"][3]
        assert call_msg["tool_calls"][0]["name"] == "memory_insert"
        assert ret["tool_call_id"] == call_msg["tool_calls"][0]["tool_call_id"] and ret["status"] == "success"
        # The second request carries the first step as one assistant message with its tool call, then the return.
        second = fake_provider.requests[1].messages
        assert second[-2]["role"] == "assistant" and second[-2]["content"] == "Let me note that."
        assert second[-2]["tool_calls"][0]["function"]["name"] == "memory_insert"
        assert second[-1] == {"role": "tool", "tool_call_id": ret["tool_call_id"], "content": ret["content"]}
        assert "Owns a cat" in fake_provider.requests[1].system
        listed = await history(client, conv)
        assert [m["message_type"] for m in listed] == ["user_message", *types]
        assert all(m["in_context"] for m in listed)


async def test_max_steps_ends_completed_with_stop_reason(connect, fake_provider: FakeProvider) -> None:
    async with connect() as client:
        conv = await new_conversation(client)
        for i in range(3):
            fake_provider.enqueue(tool_calls=[{"name": "conversation_search", "arguments": {"query": f"thing {i}"}}])
        text, run = await call_text(client, "send_message", {"conversation_id": conv, "content": "go", "max_steps": 2})
        assert run["status"] == "completed" and run["stop_reason"] == "max_steps"
        assert len(fake_provider.requests) == 2
        assert "max_steps" in text
        assert [m["message_type"] for m in run["messages"]].count("tool_return_message") == 2


@pytest.mark.parametrize(
    ("calls", "expected"),
    [
        (
            {"name": "memory_replace", "arguments": {"label": "nope", "old_string": "a", "new_string": "b"}},
            "no memory block labelled 'nope'",
        ),
        ({"name": "core_memory_append", "arguments": {"label": "rules", "content": "more"}}, "read-only"),
        ({"name": "memory_rethink", "arguments": {"label": "human", "new_memory": "x" * 60}}, "over its limit of 50"),
        (
            {"name": "memory_replace", "arguments": {"label": "human", "old_string": "cat", "new_string": "dog"}},
            "occurs 2 times",
        ),
        ({"name": "memory_insert", "arguments": "{not json"}, "not valid JSON"),
        ({"name": "memory_rethink", "arguments": {"label": "human"}}, "new_memory"),
        ({"name": "launch_rockets", "arguments": {}}, "unknown tool"),
    ],
)
async def test_agent_tool_errors_go_back_to_the_model(
    connect, fake_provider: FakeProvider, calls: dict, expected: str
) -> None:
    async with connect() as client:
        agent = await call(
            client,
            "create_agent",
            {
                "name": "t",
                "memory_blocks": [
                    {"label": "human", "value": "cat and cat", "limit": 50},
                    {"label": "rules", "value": "fixed", "read_only": True},
                ],
            },
        )
        conv = await new_conversation(client, agent_id=agent["id"])
        fake_provider.enqueue(tool_calls=[calls])
        fake_provider.enqueue("I could not do that.")
        text, run = await call_text(client, "send_message", {"conversation_id": conv, "content": "edit"})
        assert text == "I could not do that." and run["status"] == "completed"
        ret = next(m for m in run["messages"] if m["message_type"] == "tool_return_message")
        assert ret["status"] == "error" and expected in ret["content"]
        assert fake_provider.requests[1].messages[-1]["content"] == ret["content"]
        blocks = {
            blk["label"]: blk["value"]
            for blk in (await call(client, "get_agent", {"agent_id": agent["id"]}))["memory_blocks"]
        }
        assert blocks == {"human": "cat and cat", "rules": "fixed"}


async def test_every_memory_tool_edits_the_block(connect, fake_provider: FakeProvider) -> None:
    async with connect() as client:
        agent = await call(
            client, "create_agent", {"name": "m", "memory_blocks": [{"label": "notes", "value": "a\nb"}]}
        )
        conv = await new_conversation(client, agent_id=agent["id"])
        edits = [
            ("core_memory_append", {"label": "notes", "content": "c"}),
            ("core_memory_replace", {"label": "notes", "old_content": "b", "new_content": "B"}),
            ("memory_insert", {"label": "notes", "new_string": "start", "insert_line": 0}),
            ("memory_replace", {"label": "notes", "old_string": "B", "new_string": "bee"}),
        ]
        fake_provider.enqueue(tool_calls=[{"name": n, "arguments": a} for n, a in edits])
        fake_provider.enqueue("ok")
        run = await call(client, "send_message", {"conversation_id": conv, "content": "edit"})
        returns = [m for m in run["messages"] if m["message_type"] == "tool_return_message"]
        assert [r["status"] for r in returns] == ["success"] * 4
        agent = await call(client, "get_agent", {"agent_id": agent["id"]})
        assert agent["memory_blocks"][0]["value"] == "start\na\nbee\nc"
        fake_provider.enqueue(
            tool_calls=[{"name": "memory_rethink", "arguments": {"label": "notes", "new_memory": "new"}}]
        )
        fake_provider.enqueue("ok")
        await call(client, "send_message", {"conversation_id": conv, "content": "rethink"})
        assert (await call(client, "get_agent", {"agent_id": agent["id"]}))["memory_blocks"][0]["value"] == "new"


async def test_conversation_search_tool_searches_the_agents_pooled_history(
    connect, fake_provider: FakeProvider
) -> None:
    async with connect() as client:
        a, b = await new_conversation(client), await new_conversation(client)
        await call(client, "send_message", {"conversation_id": a, "content": "My pottery class starts on Tuesday"})
        fake_provider.enqueue(tool_calls=[{"name": "conversation_search", "arguments": {"query": "when is pottery?"}}])
        fake_provider.enqueue("On Tuesday.")
        run = await call(client, "send_message", {"conversation_id": b, "content": "when is my class?"})
        ret = next(m for m in run["messages"] if m["message_type"] == "tool_return_message")
        hits = json.loads(ret["content"])
        assert any("pottery class starts on Tuesday" in h["content"] and h["conversation_id"] == a for h in hits)


@pytest.mark.parametrize("mode", ["auto", "legacy"])  # results and progress travel differently per era
async def test_progress_notifications_carry_the_deltas_in_order(connect, fake_provider: FakeProvider) -> None:
    async with connect() as client:
        conv = await new_conversation(client)
        fake_provider.enqueue(tool_calls=[{"name": "conversation_search", "arguments": {"query": "x"}}])
        fake_provider.enqueue("one two three four five", chunk_delay=0.001)
        seen: list[tuple[float, str | None]] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen.append((progress, message))

        text, _ = await call_text(
            client, "send_message", {"conversation_id": conv, "content": "count"}, progress_callback=on_progress
        )
        messages = [m for _, m in seen]
        assert messages == ["[calling conversation_search]", "one", " two", " three", " four", " five"]
        assert "".join(messages[1:]) == text
        assert [p for p, _ in seen] == sorted(p for p, _ in seen)  # progress increases


@pytest.mark.parametrize("mode", ["auto", "legacy"])  # results and progress travel differently per era
async def test_tools_are_listed_with_schemas_and_annotations(connect) -> None:
    async with connect() as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        send = tools["send_message"]
        assert "background" in send.description and "get_run" in send.description
        assert "60" in send.input_schema["properties"]["background"]["description"]
        assert send.output_schema is not None and "run_id" in send.output_schema["properties"]
        assert tools["get_run"].annotations.read_only_hint is True
        assert tools["cancel_run"].annotations.destructive_hint is True
        assert set(tools["compact_conversation"].output_schema["properties"]) == {
            "summary",
            "messages_before",
            "messages_after",
        }
        assert MODEL  # the fixtures' default model
