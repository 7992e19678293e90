"""Runs through MCP clients: per-conversation FIFO, parallel conversations, background runs and get_run,
cancellation (cancel_run and the request being cancelled), idempotency keys, runtime events.

Concurrency is made deterministic with the fake provider's gates (replies held until the test releases
them), never with sleeps or timed assertions."""

from __future__ import annotations

import asyncio
import threading

from fake_provider import FakeProvider
from mcp import Client
from runtime_helpers import call, call_text, eventually, history, new_conversation, run_ids

from mcp_server_conversations.app import open_app
from mcp_server_conversations.config import Settings
from mcp_server_conversations.mcp.server import build_server


async def test_parallel_sends_on_one_conversation_are_serialized_in_arrival_order(
    connect, fake_provider: FakeProvider, model_settings: Settings
) -> None:
    gate = threading.Event()
    fake_provider.enqueue(wait_for=gate)  # the first turn holds the conversation
    async with connect() as c:
        conv = await new_conversation(c)
        send = lambda i: asyncio.create_task(  # noqa: E731
            call_text(c, "send_message", {"conversation_id": conv, "content": f"msg-{i}"})
        )
        tasks = [send(0)]
        await fake_provider.await_requests(1)
        for i in range(1, 4):  # each arrives after the previous one is registered
            tasks.append(send(i))
            await eventually(lambda i=i: len(run_ids(model_settings, conv)) == i + 1, f"run {i} to be queued")
        queued = await call(c, "get_run", {"run_id": run_ids(model_settings, conv)[1]})
        assert queued["status"] == "queued" and queued["messages"] == []
        assert [m["content"] for m in await history(c, conv)] == ["msg-0"]  # queued input not in history yet
        assert len(fake_provider.requests) == 1  # never interleaved
        gate.set()
        results = await asyncio.gather(*tasks)
        assert [text for text, _ in results] == [f"Fake reply to: msg-{i}" for i in range(4)]
        listed = [(m["message_type"], m["content"]) for m in await history(c, conv)]
        expected = []
        for i in range(4):
            expected += [("user_message", f"msg-{i}"), ("assistant_message", f"Fake reply to: msg-{i}")]
        assert listed == expected
    for i, request in enumerate(fake_provider.requests):
        assert request.last_user == f"msg-{i}"
        assert [m["content"] for m in request.messages[1:]] == [content for _, content in expected[: 2 * i + 1]]
    assert fake_provider.max_in_flight == 1


async def test_sends_on_different_conversations_overlap(connect, fake_provider: FakeProvider) -> None:
    gate = threading.Event()
    n = 3
    for _ in range(n):
        fake_provider.enqueue(wait_for=gate)
    async with connect() as c:
        convs = [await new_conversation(c) for _ in range(n)]
        tasks = [
            asyncio.create_task(call_text(c, "send_message", {"conversation_id": conv, "content": f"to {conv}"}))
            for conv in convs
        ]
        # All n model calls are in flight at once while every reply is held: no global lock.
        await fake_provider.await_requests(n)
        assert fake_provider.in_flight == n
        gate.set()
        results = await asyncio.gather(*tasks)
    assert sorted(text for text, _ in results) == sorted(f"Fake reply to: to {conv}" for conv in convs)
    assert fake_provider.max_in_flight == n


async def test_background_send_then_get_run_polling(connect, fake_provider: FakeProvider) -> None:
    gate = threading.Event()
    reply = fake_provider.enqueue("alpha beta gamma", wait_for=gate, hold_after=2)
    async with connect() as c:
        conv = await new_conversation(c)
        text, run = await call_text(
            c, "send_message", {"conversation_id": conv, "content": "long job", "background": True}
        )
        assert run["status"] in ("queued", "running") and run["messages"] == []
        assert run["stop_reason"] is None and run["usage"] is None
        assert "get_run" in text and run["run_id"] == run["id"]

        async def streaming() -> dict | None:
            r = await call(c, "get_run", {"run_id": run["id"]})
            return r if r["partial_text"] == "alpha beta" else None

        mid = await eventually(streaming, "partial text")
        assert mid["status"] == "running" and mid["model"] == "openai/fake-model"
        gate.set()

        async def finished() -> dict | None:
            r = await call(c, "get_run", {"run_id": run["id"]})
            return r if r["status"] == "completed" else None

        done = await eventually(finished, "the run to complete")
        assert reply.finished.is_set()
        assert [m["content"] for m in done["messages"]] == ["alpha beta gamma"]
        assert done["stop_reason"] == "end_turn" and done["usage"]["total_tokens"] > 0
        assert done["partial_text"] is None and done["completed_at"]
        conversation = await call(c, "get_conversation", {"conversation_id": conv})
        assert conversation["last_run_completion"] == done["completed_at"]


async def test_cancel_run_stops_the_stream_and_leaves_the_context_clean(connect, fake_provider: FakeProvider) -> None:
    async with connect() as c:
        conv = await new_conversation(c)
        await call(c, "send_message", {"conversation_id": conv, "content": "keep me"})
        fake_provider.reset()
        reply = fake_provider.enqueue("never finished answer", hold_after=2)  # holds until the client hangs up
        run = await call(c, "send_message", {"conversation_id": conv, "content": "drop me", "background": True})

        async def streaming() -> bool:
            return (await call(c, "get_run", {"run_id": run["id"]}))["partial_text"] == "never finished"

        await eventually(streaming, "the stream to start")
        cancelled = await call(c, "cancel_run", {"run_id": run["id"]})
        assert cancelled["status"] == "cancelled" and cancelled["stop_reason"] == "cancelled"
        assert cancelled["messages"] == []  # no partial output stored
        await asyncio.to_thread(reply.finished.wait, 10)
        assert fake_provider.requests[0].disconnected  # the HTTP stream to the provider was closed
        again = await call(c, "cancel_run", {"run_id": run["id"]})  # already ended: returned as it ended
        assert again["status"] == "cancelled"

        text, _ = await call_text(c, "send_message", {"conversation_id": conv, "content": "next"})
        assert text == "Fake reply to: next"
        sent = [m["content"] for m in fake_provider.requests[-1].messages[1:]]
        assert sent == ["keep me", "Fake reply to: keep me", "next"]
        dropped = next(m for m in await history(c, conv) if m["content"] == "drop me")
        assert dropped["is_err"] and not dropped["in_context"]
        assert not any("never finished" in (m["content"] or "") for m in await history(c, conv))


async def test_cancel_run_of_a_queued_run_makes_no_model_call(
    connect, fake_provider: FakeProvider, model_settings: Settings
) -> None:
    gate = threading.Event()
    fake_provider.enqueue("first answer", wait_for=gate)
    async with connect() as c:
        conv = await new_conversation(c)
        first = await call(c, "send_message", {"conversation_id": conv, "content": "one", "background": True})
        second = await call(c, "send_message", {"conversation_id": conv, "content": "two", "background": True})
        assert second["status"] == "queued"
        cancelled = await call(c, "cancel_run", {"run_id": second["id"]})
        assert cancelled["status"] == "cancelled" and cancelled["completed_at"]
        gate.set()

        async def finished() -> bool:
            return (await call(c, "get_run", {"run_id": first["id"]}))["status"] == "completed"

        await eventually(finished, "the first run")
        assert [m["content"] for m in await history(c, conv)] == ["one", "first answer"]
    assert len(fake_provider.requests) == 1


async def test_cancelled_request_cancels_its_run_and_the_server_goes_on(
    connect, fake_provider: FakeProvider, model_settings: Settings
) -> None:
    reply = fake_provider.enqueue("partial words here", hold_after=1)
    async with connect() as c:
        conv = await new_conversation(c)
        first_delta = asyncio.Event()

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            first_delta.set()

        task = asyncio.create_task(
            c.call_tool("send_message", {"conversation_id": conv, "content": "abandon"}, progress_callback=on_progress)
        )
        await asyncio.wait_for(first_delta.wait(), 30)
        task.cancel()  # the client gives up: notifications/cancelled (legacy) / cancelled dispatch (auto)
        await asyncio.gather(task, return_exceptions=True)
        (run_id,) = run_ids(model_settings, conv)

        async def ended() -> dict | None:
            r = await call(c, "get_run", {"run_id": run_id})
            return r if r["status"] != "running" else None

        run = await eventually(ended, "the run to end")
        assert run["status"] == "cancelled" and run["messages"] == []
        await asyncio.to_thread(reply.finished.wait, 10)
        assert fake_provider.requests[0].disconnected
        text, _ = await call_text(c, "send_message", {"conversation_id": conv, "content": "still there?"})
        assert text == "Fake reply to: still there?"
        assert [m["content"] for m in fake_provider.requests[-1].messages[1:]] == ["still there?"]


async def test_repeated_idempotency_key_yields_one_turn(connect, fake_provider: FakeProvider) -> None:
    async with connect() as c:
        conv = await new_conversation(c)
        args = {"conversation_id": conv, "content": "pay the invoice", "idempotency_key": "key-1"}
        text1, first = await call_text(c, "send_message", args)
        text2, second = await call_text(c, "send_message", args)
        assert first["id"] == second["id"] and text1 == text2 == "Fake reply to: pay the invoice"
        assert len(fake_provider.requests) == 1
        assert len(await history(c, conv)) == 2

        # A retry while the first call is still running waits for it instead of starting a second turn.
        gate = threading.Event()
        fake_provider.enqueue("slow answer", wait_for=gate)
        retry = {"conversation_id": conv, "content": "book a flight", "idempotency_key": "key-2"}
        background = await call(c, "send_message", {**retry, "background": True})
        waiting = asyncio.create_task(call_text(c, "send_message", retry))
        await fake_provider.await_requests(2)
        gate.set()
        text3, third = await waiting
        assert third["id"] == background["id"] and text3 == "slow answer"
        # The same key in another conversation is a different turn.
        other = await new_conversation(c)
        fourth = await call(c, "send_message", {**args, "conversation_id": other})
        assert fourth["id"] != first["id"]
    assert len(fake_provider.requests) == 3


async def test_background_run_outlives_the_connection_that_started_it(
    model_settings: Settings, fake_provider: FakeProvider, mode: str
) -> None:
    gate = threading.Event()
    fake_provider.enqueue("finished later", wait_for=gate)
    async with open_app(model_settings) as app:  # one app shared by connections, as over HTTP
        async with Client(build_server(model_settings, shared=app), mode=mode) as first:
            conv = await new_conversation(first)
            run = await call(first, "send_message", {"conversation_id": conv, "content": "work", "background": True})
        gate.set()  # the connection that started the run is gone
        async with Client(build_server(model_settings, shared=app), mode=mode) as second:

            async def finished() -> dict | None:
                r = await call(second, "get_run", {"run_id": run["id"]})
                return r if r["status"] == "completed" else None

            done = await eventually(finished, "the background run")
            assert done["messages"][-1]["content"] == "finished later"


async def test_runtime_events_for_subscribers_and_listeners(
    model_settings: Settings, fake_provider: FakeProvider
) -> None:
    gate = threading.Event()
    fake_provider.enqueue("a b c", reasoning="think", wait_for=gate, hold_after=0)
    async with open_app(model_settings) as app:
        conv = await app.service.create_conversation()
        heard = []

        async def listener(event) -> None:
            heard.append(event.kind)

        run = await app.runtime.send(conv.id, content="x", background=True, listener=listener)
        events = []

        async def consume() -> None:
            async for event in app.runtime.subscribe(run.id):
                events.append(event)

        consumer = asyncio.create_task(consume())
        await asyncio.sleep(0)  # the subscriber registers on its first step
        gate.set()
        await consumer
        kinds = [e.kind for e in events]
        assert kinds == heard
        assert kinds[-1] == "done" and events[-1].run.status == "completed"
        assert "".join(e.delta for e in events if e.kind == "text_delta") == "a b c"
        assert "".join(e.delta for e in events if e.kind == "reasoning_delta") == "think"
        stored = [e.message for e in events if e.kind == "message"]
        assert [m.message_type for m in stored] == ["reasoning_message", "assistant_message"]
        text_ids = {e.message_id for e in events if e.kind == "text_delta"}
        assert text_ids == {stored[1].id}  # deltas carry the id their message is stored under
        late = [e async for e in app.runtime.subscribe(run.id)]  # a finished run: just its end
        assert [e.kind for e in late] == ["done"] and late[0].run.id == run.id
