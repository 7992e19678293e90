"""The send path's one-trip storage steps (storage/runs.py, append_messages) give what the reads they
replace give, and the runtime's idle-conversation start keeps the run's contract (status, idempotency)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from fake_provider import FakeProvider
from foundation_helpers import get_message, sql_one

from mcp_server_conversations.app import open_app
from mcp_server_conversations.config import Settings
from mcp_server_conversations.errors import NotFoundError
from mcp_server_conversations.runs import remote_cancel
from mcp_server_conversations.runs.prompt import rows_to_chat, to_chat
from mcp_server_conversations.storage import NewMessage, SQLiteStore

CALL = {"tool_call_id": "call_1", "name": "core_memory_append", "arguments": '{"label": "human", "content": "x"}'}


async def make_conversation(store: SQLiteStore) -> tuple[str, str]:
    agent = await store.create_agent(name="a", model="m-agent", system="sys", context_window_limit=None, blocks=[])
    conv = await store.create_conversation(agent.id, model=None, summary=None, system_text="compiled")
    return agent.id, conv.id


def a_step(run_id: str) -> list[NewMessage]:
    return [
        NewMessage("user_message", "user", content="hello", run_id=run_id),
        NewMessage("reasoning_message", "assistant", reasoning="let me think", model="m", run_id=run_id),
        NewMessage("assistant_message", "assistant", content="one moment", model="m", run_id=run_id),
        NewMessage("tool_call_message", "assistant", tool_calls=[CALL], model="m", run_id=run_id),
        NewMessage("tool_return_message", "tool", content="OK", tool_call_id="call_1", status="success", run_id=run_id),
    ]


async def test_appended_messages_are_returned_as_reading_them_back_gives(store: SQLiteStore) -> None:
    _, conv_id = await make_conversation(store)
    written = await store.append_messages(conv_id, a_step("run-1"))
    read = (await store.context_messages(conv_id))[1:]
    assert [m.model_dump() for m in written] == [m.model_dump() for m in read]
    aside = [NewMessage("user_message", "user", content="x")]
    (outside,) = await store.append_messages(conv_id, aside, in_context=False)
    assert outside.model_dump() == (await get_message(store, outside.id)).model_dump() | {"in_context": False}


async def test_prompt_rows_are_the_context_and_the_stored_system_message(store: SQLiteStore) -> None:
    agent_id, conv_id = await make_conversation(store)
    await store.append_messages(conv_id, a_step("run-1"))
    rows = await store.prompt_rows(conv_id, agent_id)
    context = await store.context_messages(conv_id)
    assert rows.system_text == context[0].content == "compiled"
    assert rows.agent.id == agent_id and rows.agent.model == "m-agent"
    assert rows_to_chat(rows.context) == to_chat(context[1:])
    assert rows_to_chat(rows.context)[1]["tool_calls"][0]["function"]["name"] == "core_memory_append"
    with pytest.raises(NotFoundError):
        await store.prompt_rows("conv-missing", agent_id)


async def test_send_target_names_the_models_and_the_run_of_a_key(store: SQLiteStore) -> None:
    agent_id, conv_id = await make_conversation(store)
    target = await store.send_target(conv_id, "key-1")
    assert (target.agent_id, target.conversation_model, target.agent_model, target.existing_run) == (
        agent_id,
        None,
        "m-agent",
        None,
    )
    await store.start_run(
        "run-1", conv_id, agent_id, [], model="m", started_at="t", create=True, idempotency_key="key-1"
    )
    assert (await store.send_target(conv_id, "key-1")).existing_run == "run-1"
    with pytest.raises(NotFoundError):
        await store.send_target("conv-missing")


async def test_start_run_stores_the_run_running_with_its_input_and_reads_the_prompt(store: SQLiteStore) -> None:
    agent_id, conv_id = await make_conversation(store)
    user = [NewMessage("user_message", "user", content="hi", run_id="run-1")]
    when = "2026-01-01T00:00:00Z"
    run, prompt = await store.start_run("run-1", conv_id, agent_id, user, model="m", started_at=when, create=True)
    assert (run.status, run.model, run.started_at) == ("running", "m", when)
    assert (await store.get_run("run-1")).model_dump() == run.model_dump()
    assert [m.content for m in await store.context_messages(conv_id)] == ["compiled", "hi"]
    assert prompt == await store.prompt_rows(conv_id, agent_id) and prompt.context[-1][:2] == ("user_message", "hi")
    await store.create_run("run-2", conv_id, agent_id, status="queued", idempotency_key=None)
    again, _ = await store.start_run("run-2", conv_id, agent_id, [], model="m2", started_at="t2")
    assert (again.status, again.model) == ("running", "m2")
    with pytest.raises(NotFoundError):
        await store.start_run("run-3", "conv-missing", agent_id, user, model="m", started_at="t", create=True)
    assert await sql_one(store, "SELECT id FROM runs WHERE id = 'run-3'") is None


async def test_finish_run_returns_the_final_run_and_ignores_a_run_never_stored(store: SQLiteStore) -> None:
    agent_id, conv_id = await make_conversation(store)
    step = a_step("run-1")
    await store.start_run("run-1", conv_id, agent_id, step[:1], model="m", started_at="t", create=True)
    await store.append_messages(conv_id, step[1:4])
    ended = {"status": "completed", "stop_reason": "end_turn"}
    final = await store.finish_run("run-1", conv_id, ended, abandon=False, append=step[4:])
    assert final is not None and final.model_dump() == (await store.get_run("run-1")).model_dump()
    assert [m.message_type for m in final.messages] == [m.message_type for m in step[1:]]
    assert all(m.in_context for m in final.messages) and final.messages[-1].content == "OK"
    completion = (await store.get_conversation(conv_id)).last_run_completion
    assert completion == final.completed_at
    gone = await store.finish_run("run-never", conv_id, {"status": "cancelled"}, abandon=True)
    assert gone is None and (await store.get_conversation(conv_id)).last_run_completion == completion


async def test_a_send_to_an_idle_conversation_starts_running_and_one_behind_it_is_queued(
    settings: Settings, fake_provider: FakeProvider
) -> None:
    gate = threading.Event()
    fake_provider.enqueue("first", wait_for=gate)
    async with open_app(settings.model_copy(update={"default_model": "openai/fake-model"})) as app:
        conv = await app.service.create_conversation()
        first = await app.runtime.send(conv.id, content="one", background=True)
        second = await app.runtime.send(conv.id, content="two", background=True)
        assert (first.status, first.model, first.started_at is not None) == ("running", "openai/fake-model", True)
        assert (second.status, second.started_at) == ("queued", None)
        await fake_provider.await_requests(1)
        gate.set()
        done = await app.runtime.send(conv.id, content="three")
        assert done.status == "completed" and done.messages[-1].content == "Fake reply to: three"
        texts = [m.content for m in (await app.service.list_messages(conv.id, limit=100)).messages]
        assert texts[-6:] == ["one", "first", "two", "Fake reply to: two", "three", "Fake reply to: three"]


async def test_concurrent_sends_with_one_key_make_one_run(settings: Settings, fake_provider: FakeProvider) -> None:
    async with open_app(settings.model_copy(update={"default_model": "openai/fake-model"})) as app:
        conv = await app.service.create_conversation()
        runs = await asyncio.gather(*(app.runtime.send(conv.id, content="pay", idempotency_key="k") for _ in range(3)))
        assert len({r.id for r in runs}) == 1 and len(fake_provider.requests) == 1


async def test_a_one_step_send_takes_three_trips_to_the_database_threads(
    settings: Settings, fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each trip is a hand-off to a database thread and back, which costs more than a small query:
    a send reads its target, starts the run (input and first prompt read with it) and finishes it
    (the reply stored with the end). Cancel requests are not looked for during this short send."""
    monkeypatch.setattr(remote_cancel, "CANCEL_POLL", 60.0)
    async with open_app(settings.model_copy(update={"default_model": "openai/fake-model"})) as app:
        conv = await app.service.create_conversation()
        await app.runtime.send(conv.id, content="warm")  # the first send loads litellm
        database = app.store.database  # type: ignore[attr-defined]
        before = database.trips
        done = await app.runtime.send(conv.id, content="count")
        assert done.status == "completed"
        assert database.trips - before <= 3
