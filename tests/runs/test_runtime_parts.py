"""The runtime's parts on their own: the litellm gateway against the fake provider, key redaction,
the compaction cut and the prompt built from stored messages."""

from __future__ import annotations

import asyncio

import pytest
from fake_provider import FakeProvider

from mcp_server_conversations.config import Settings
from mcp_server_conversations.errors import ModelNotConfiguredError, ProviderError
from mcp_server_conversations.gateway import Completion, Delta, ModelGateway, redact
from mcp_server_conversations.models import Message, ToolCall
from mcp_server_conversations.runs.compaction import choose_evicted, transcript_chunks
from mcp_server_conversations.runs.prompt import to_chat


def msg(kind: str, content: str | None = "x", *, run: str | None = "run-1", **extra) -> Message:
    roles = {
        "user_message": "user",
        "assistant_message": "assistant",
        "tool_call_message": "assistant",
        "tool_return_message": "tool",
        "summary_message": "system",
        "reasoning_message": "assistant",
    }
    return Message(
        id=f"message-{id(extra)}-{kind}-{content}",
        conversation_id="conv-1",
        agent_id="agent-1",
        message_type=kind,
        role=roles[kind],
        content=content,
        created_at="2026-01-01T00:00:00Z",
        run_id=run,
        **extra,
    )


def tool_call(call_id: str) -> Message:
    return msg("tool_call_message", None, tool_calls=[ToolCall(tool_call_id=call_id, name="t", arguments="{}")])


def tool_return(call_id: str, text: str = "ok") -> Message:
    return msg("tool_return_message", text, tool_call_id=call_id, status="success")


async def test_gateway_streams_deltas_then_the_assembled_message(
    settings: Settings, fake_provider: FakeProvider
) -> None:
    fake_provider.enqueue(
        "Hi there",
        reasoning="hmm",
        tool_calls=[
            {"name": "a", "arguments": {"x": 1}, "id": "call_a"},
            {"name": "b", "arguments": "{}", "id": "call_b"},
        ],
    )
    gateway = ModelGateway(settings)
    items = [
        i
        async for i in gateway.stream(
            "openai/fake-model",
            [{"role": "user", "content": "q"}],
            [
                {"type": "function", "function": {"name": "a", "parameters": {"type": "object"}}},
            ],
        )
    ]
    await gateway.close()
    deltas, final = items[:-1], items[-1]
    assert [(d.kind, d.text) for d in deltas] == [
        ("reasoning", "hmm"),
        ("text", "Hi"),
        ("text", " there"),
        ("tool_call", "a"),
        ("tool_call", "b"),
    ]
    assert all(isinstance(d, Delta) for d in deltas) and isinstance(final, Completion)
    assert (final.content, final.reasoning, final.finish_reason) == ("Hi there", "hmm", "tool_calls")
    assert final.tool_calls == [
        {"tool_call_id": "call_a", "name": "a", "arguments": '{"x": 1}'},
        {"tool_call_id": "call_b", "name": "b", "arguments": "{}"},
    ]
    assert final.usage.total_tokens == final.usage.prompt_tokens + final.usage.completion_tokens > 0
    assert fake_provider.requests[0].body["stream_options"] == {"include_usage": True}


async def test_an_unpriced_model_is_priced_at_zero_for_litellm_only(
    settings: Settings, fake_provider: FakeProvider
) -> None:
    """litellm has no price for local models and would search its table for one after every call;
    the zero price it is given instead stays in litellm (the provider sees the plain request)."""
    gateway = ModelGateway(settings)
    await gateway.complete("openai/fake-model", [{"role": "user", "content": "q"}])
    assert gateway._unpriced("openai/fake-model") and not gateway._unpriced("openai/gpt-4o-mini")
    body = fake_provider.requests[0].body
    assert not any("cost" in key for key in body), sorted(body)
    assert set(body) <= {"model", "messages", "stream", "stream_options", "tools"}, sorted(body)
    await gateway.close()


async def test_gateway_closing_the_stream_hangs_up_on_the_provider(
    settings: Settings, fake_provider: FakeProvider
) -> None:
    reply = fake_provider.enqueue("one two three", hold_after=1)
    gateway = ModelGateway(settings)
    stream = gateway.stream("openai/fake-model", [{"role": "user", "content": "q"}])
    first = await stream.__anext__()
    assert first == Delta("text", "one")
    await stream.aclose()
    await asyncio.to_thread(reply.finished.wait, 10)
    assert fake_provider.requests[0].disconnected
    await gateway.close()


async def test_gateway_errors_are_mapped_once_with_the_class_name(
    settings: Settings, fake_provider: FakeProvider
) -> None:
    gateway = ModelGateway(settings)
    fake_provider.enqueue(error_status=429)
    with pytest.raises(ProviderError) as caught:
        await gateway.complete("openai/fake-model", [{"role": "user", "content": "q"}])
    assert caught.value.error_class == "RateLimitError" and caught.value.status_code == 429
    assert caught.value.message.startswith("RateLimitError: ") and "litellm." not in caught.value.message
    await gateway.close()


async def test_missing_key_is_reported_before_the_call(
    settings: Settings, fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = ModelGateway(settings)
    await gateway.check_configured("openai/fake-model")
    await gateway.check_configured("ollama/llama3.2")  # a local provider needs no key
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ModelNotConfiguredError, match="ANTHROPIC_API_KEY"):
        await gateway.check_configured("anthropic/claude-haiku-4-5")
    assert fake_provider.requests == []


def test_redact_removes_keys_from_env_and_common_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_PROVIDER_API_KEY", "abcdef123456")
    text = redact("key abcdef123456 and sk-proj-zzzzzzzzzz and Bearer tok_123456789 and api_key='q1w2e3r4'")
    assert "abcdef123456" not in text and "zzzzzzzzzz" not in text
    assert "tok_123456789" not in text and "q1w2e3r4" not in text


def test_compaction_cut_keeps_the_recent_part_and_tool_pairs() -> None:
    body = [
        msg("user_message", "a" * 400),
        msg("assistant_message", "b" * 400),
        msg("user_message", "c" * 400),
        tool_call("c1"),
        tool_return("c1", "d" * 300),
        msg("assistant_message", "e" * 40),
    ]
    evicted = choose_evicted(body)
    # The ~30% kept would start at the tool return; the cut moves back to its call.
    assert [m.message_type for m in evicted] == ["user_message", "assistant_message", "user_message"]
    assert choose_evicted(body[:1]) == []
    assert choose_evicted([msg("summary_message", "s"), msg("user_message", "u" * 50)]) == []


def test_transcript_chunks_fit_their_budget_and_cut_huge_messages() -> None:
    evicted = [
        msg("user_message", "word " * 2000),
        msg("assistant_message", "short"),
        tool_call("c"),
        tool_return("c", "result"),
    ]
    chunks = transcript_chunks(evicted, chunk_tokens=200)
    assert all(len(c) <= 200 * 3.5 for c in chunks)
    assert "characters cut" in chunks[0] and "assistant called t({})" in "\n".join(chunks)


def test_prompt_merges_text_with_its_tool_calls_and_drops_unpaired_ones() -> None:
    rows = [
        msg("user_message", "hi"),
        msg("reasoning_message", None, reasoning="thinking"),
        msg("assistant_message", "let me check"),
        tool_call("c1"),
        tool_return("c1", "found"),
        msg("assistant_message", "done"),
        msg("summary_message", "earlier", run=None),
        tool_return("orphan", "no call"),  # its call was compacted away
        msg("user_message", "again", run="run-2"),
        tool_call("c2"),  # a fork cut right after this call: no return
    ]
    chat = to_chat(rows)
    assert chat[0] == {"role": "user", "content": "hi"}
    assert chat[1]["content"] == "let me check" and chat[1]["tool_calls"][0]["id"] == "c1"
    assert chat[2] == {"role": "tool", "tool_call_id": "c1", "content": "found"}
    assert chat[3] == {"role": "assistant", "content": "done"}
    assert chat[4]["role"] == "user" and chat[4]["content"].endswith("earlier")
    assert chat[5:] == [{"role": "user", "content": "again"}]


async def test_a_second_app_on_the_same_loop_still_reaches_the_provider(
    model_settings: Settings, fake_provider: FakeProvider
) -> None:
    from mcp_server_conversations.app import open_app

    for turn in range(2):  # the first app's shutdown must not leave litellm's shared clients closed
        async with open_app(model_settings) as app:
            conv = await app.service.create_conversation()
            run = await app.runtime.send(conv.id, content=f"turn {turn}")
            assert run.status == "completed" and run.messages[-1].content == f"Fake reply to: turn {turn}"
