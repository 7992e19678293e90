"""A fork taken while a run of its source is in flight holds the source's context as of its last ended
turn: the run's input, the steps it stored, and a compaction it made never enter the fork, whatever
the run's outcome."""

from __future__ import annotations

import asyncio
import threading

import pytest
from fake_provider import FakeProvider
from mcp import Client
from runtime_helpers import call, call_error, eventually, history, new_conversation
from test_runtime_compaction import SUMMARY, small_agent_conversation, talk


@pytest.fixture
def mode() -> str:
    """Forks do not depend on the MCP protocol era: one in-memory mode (JSON-RPC) is enough."""
    return "legacy"


async def _ended(c: Client, run_id: str) -> bool:
    return (await call(c, "get_run", {"run_id": run_id}))["status"] not in ("queued", "running")


def _turns(messages: list[dict]) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in messages]


@pytest.mark.parametrize("outcome", ["completed", "cancelled", "failed"])
async def test_a_fork_taken_mid_run_holds_the_last_ended_turn(
    connect, fake_provider: FakeProvider, outcome: str
) -> None:
    gate = threading.Event()
    async with connect() as c:
        conv = await new_conversation(c)
        await call(c, "send_message", {"conversation_id": conv, "content": "one"})
        # The run stores a tool step, then its next model call is held.
        fake_provider.enqueue(tool_calls=[{"name": "conversation_search", "arguments": {"query": "one"}}])
        if outcome == "failed":
            fake_provider.enqueue(error_status=400, error_message="no", wait_for=gate)
        else:
            fake_provider.enqueue("reply to two", wait_for=gate)
        run = await call(c, "send_message", {"conversation_id": conv, "content": "two", "background": True})
        await fake_provider.await_requests(3)
        mid = await history(c, conv)
        assert [m["message_type"] for m in mid][2:] == ["user_message", "tool_call_message", "tool_return_message"]

        fork = await call(c, "fork_conversation", {"conversation_id": conv})
        assert fork["message_count"] == 2
        for m in mid[2:]:  # the in-flight run's rows are not in the context a fork can take
            error = await call_error(c, "fork_conversation", {"conversation_id": conv, "message_id": m["id"]})
            assert "is not in the context window" in error

        if outcome == "cancelled":
            await call(c, "cancel_run", {"run_id": run["id"]})
        gate.set()
        await eventually(lambda: _ended(c, run["id"]), "the run to end")
        assert (await call(c, "get_run", {"run_id": run["id"]}))["status"] == outcome

        earlier = [("user", "one"), ("assistant", "Fake reply to: one")]
        listed = await history(c, fork["id"])
        assert _turns(listed) == earlier and all(m["in_context"] and not m["is_err"] for m in listed)
        assert (await call(c, "get_conversation", {"conversation_id": fork["id"]}))["message_count"] == 2
        await call(c, "send_message", {"conversation_id": fork["id"], "content": "three"})
        sent = fake_provider.requests[-1].messages[1:]
        assert _turns(sent) == [*earlier, ("user", "three")]  # nothing of "two", no two user messages in a row
        assert _turns((await history(c, fork["id"]))[2:]) == [("user", "three"), ("assistant", "Fake reply to: three")]


async def test_a_fork_taken_after_a_runs_compaction_holds_the_context_before_it(
    connect, fake_provider: FakeProvider
) -> None:
    gate = threading.Event()
    async with connect() as c:
        agent, conv = await small_agent_conversation(c, None)
        await talk(c, fake_provider, conv, range(4))
        before = await history(c, conv)
        await call(c, "update_agent", {"agent_id": agent, "context_window_limit": 1000})  # now over the trigger
        for _ in range(3):
            fake_provider.enqueue(SUMMARY, when="Write the")
        held = fake_provider.enqueue("held", wait_for=gate, when="go on")
        run = await call(c, "send_message", {"conversation_id": conv, "content": "go on", "background": True})
        await asyncio.to_thread(held.started.wait, 10)  # the summarizer's calls were made before it
        assert any(m["message_type"] == "summary_message" for m in await history(c, conv))  # compacted mid-run

        fork = await call(c, "fork_conversation", {"conversation_id": conv})
        gate.set()
        await eventually(lambda: _ended(c, run["id"]), "the run to end")
        listed = await history(c, fork["id"])
        assert [m["id"] for m in listed] == [m["id"] for m in before]  # as before the run: no summary, all of it
        assert all(m["in_context"] for m in listed) and fork["message_count"] == len(before)
