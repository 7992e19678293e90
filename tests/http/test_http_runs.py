"""send_message over the real streamable-HTTP server, with litellm talking to the fake provider:
progress notifications stream before the result; a client that goes away (disconnect or
cancellation) ends a foreground run `cancelled` and nothing leaks; a background run outlives the
client that started it and any later session reads it; shutdown marks in-flight runs interrupted."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from fake_provider import FakeProvider
from http_helpers import mcp_client, serving
from test_http_mcp import ACCEPT, INIT

from mcp_server_conversations.app import App
from mcp_server_conversations.config import Settings
from mcp_server_conversations.models import Message, Run

MODEL = "openai/fake-model"
LONG = " ".join(f"word{i}" for i in range(40))  # 40 deltas
FINAL = ("completed", "failed", "cancelled", "interrupted")


@pytest.fixture
def run_settings(settings: Settings, fake_provider: FakeProvider) -> Settings:
    return settings.model_copy(update={"default_model": MODEL})


async def until(check: Callable[[], Awaitable[Any]], what: str, within: float = 30.0) -> Any:
    """Poll `check` until it returns something truthy (bounded, so a bug fails instead of hanging)."""
    try:
        async with asyncio.timeout(within):
            while True:
                if result := await check():
                    return result
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def history(app: App, conversation_id: str) -> list[Message]:
    return (await app.service.list_messages(conversation_id, limit=1000)).messages


async def the_run_ended(app: App, conversation_id: str) -> Run:
    async def ended() -> Run | None:
        run_ids = {m.run_id for m in await history(app, conversation_id) if m.run_id}
        if run_ids:
            run = await app.runtime.get_run(run_ids.pop())
            if run.status in FINAL:
                return run
        return None

    return await until(ended, "the run to end")


@pytest.mark.parametrize("stateless", [False, True], ids=["sessions", "stateless"])
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_progress_streams_before_the_result(
    run_settings: Settings, fake_provider: FakeProvider, mode: str, stateless: bool
) -> None:
    reply = fake_provider.enqueue(LONG, chunk_delay=0.02)
    s = run_settings.model_copy(update={"stateless": stateless})
    async with serving(s) as served, mcp_client(served.mcp_url, mode=mode) as client:
        conv = (await client.call_tool("create_conversation", {})).structured_content
        deltas: list[tuple[str | None, bool]] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            deltas.append((message, reply.finished.is_set()))

        result = await client.call_tool(
            "send_message", {"conversation_id": conv["id"], "content": "stream please"}, progress_callback=on_progress
        )
    assert not result.is_error, result.content
    assert result.structured_content["status"] == "completed"
    assert result.content[0].text == LONG
    assert "".join(m or "" for m, _ in deltas) == LONG, "every delta, in order"
    assert len(deltas) >= 40
    # The first delta reached the client while the provider was still streaming: it was not
    # buffered until the end of the run.
    assert deltas[0][1] is False


async def handshake(http: httpx.AsyncClient, url: str, kind: str) -> tuple[dict[str, str], dict[str, Any]]:
    """Headers and params._meta for a raw tools/call of the given connection kind."""
    if kind == "modern":  # 2026-07-28: every request carries its own envelope, no session
        meta = {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "0"},
        }
        headers = {"mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "send_message"}
        return {**ACCEPT, **headers}, meta
    r = await http.post(url, json=INIT, headers=ACCEPT)
    headers = {**ACCEPT, "mcp-protocol-version": "2025-11-25"}
    if kind == "session":
        headers["mcp-session-id"] = r.headers["mcp-session-id"]
    note = await http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
    assert note.status_code == 202
    return headers, {}


@pytest.mark.parametrize("kind", ["session", "stateless", "modern"])
async def test_client_disconnect_cancels_a_foreground_run(
    run_settings: Settings, fake_provider: FakeProvider, kind: str
) -> None:
    fake_provider.enqueue(LONG, chunk_delay=0.1)  # 4 s of streaming unless cancelled
    s = run_settings.model_copy(update={"stateless": kind == "stateless"})
    async with serving(s) as served:
        conv = await served.app.service.create_conversation()
        async with httpx.AsyncClient() as setup:
            headers, meta = await handshake(setup, served.mcp_url, kind)
        baseline = len(asyncio.all_tasks())
        call = {
            "jsonrpc": "2.0",
            "id": 9,
            "method": "tools/call",
            "params": {
                "name": "send_message",
                "arguments": {"conversation_id": conv.id, "content": "hello"},
                "_meta": {**meta, "progressToken": "tok"},
            },
        }
        async with (
            httpx.AsyncClient(timeout=60) as http,
            http.stream("POST", served.mcp_url, json=call, headers=headers) as r,
        ):
            assert r.status_code == 200
            async for line in r.aiter_lines():
                if "notifications/progress" in line:
                    break  # the reply is streaming: now leave without reading the rest
        # The client is gone (its connection closed with the response unread).
        run = await the_run_ended(served.app, conv.id)
        assert run.status == "cancelled", run
        assert run.stop_reason == "cancelled"
        rows = await history(served.app, conv.id)
        assert [(m.message_type, m.is_err, m.in_context) for m in rows] == [("user_message", True, False)]
        assert not any(m.message_type == "assistant_message" for m in run.messages)
        # The model stream was stopped, not read to its end.
        assert await until(lambda: _true(fake_provider.requests[0].disconnected), "the provider stream to close")
        # Nothing leaks: the request's tasks and the connection are gone.
        await until(lambda: _true(len(asyncio.all_tasks()) <= baseline), "request tasks to end")
        await until(lambda: _true(not served.server.server_state.connections), "connections to close")
        # And the server goes on: the next send in the conversation completes.
        async with mcp_client(served.mcp_url, mode="legacy" if kind != "modern" else "auto") as client:
            again = await client.call_tool("send_message", {"conversation_id": conv.id, "content": "again"})
        assert again.structured_content["status"] == "completed"


async def _true(value: bool) -> bool:
    return value


# A 2025-era client cancels by POSTing notifications/cancelled. Without a session, that POST
# cannot name which client's request id 9 it means, and the SDK's client keeps reading the
# original response instead of closing it, so the run goes on (cancel_run still stops it).
# Documented in the README; strict, so a fix upstream shows up here.
LEGACY_STATELESS = pytest.mark.xfail(strict=True, reason="stateless 2025 sessions cannot route notifications/cancelled")


@pytest.mark.parametrize("stateless", [False, True], ids=["sessions", "stateless"])
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_cancelling_the_call_cancels_the_run(
    run_settings: Settings, fake_provider: FakeProvider, mode: str, stateless: bool, request: pytest.FixtureRequest
) -> None:
    if mode == "legacy" and stateless:
        request.applymarker(LEGACY_STATELESS)
    fake_provider.enqueue(LONG, chunk_delay=0.05)  # 2 s of streaming unless cancelled
    s = run_settings.model_copy(update={"stateless": stateless})
    async with serving(s) as served, mcp_client(served.mcp_url, mode=mode) as client:
        conv = (await client.call_tool("create_conversation", {})).structured_content
        streaming = asyncio.Event()

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            streaming.set()

        call = asyncio.create_task(
            client.call_tool(
                "send_message", {"conversation_id": conv["id"], "content": "hi"}, progress_callback=on_progress
            )
        )
        await until(lambda: _true(streaming.is_set()), "the first delta")
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        run = await the_run_ended(served.app, conv["id"])
        assert run.status == "cancelled", run
        assert not (await client.call_tool("list_agents", {})).is_error  # the session goes on


@pytest.mark.parametrize("stateless", [False, True], ids=["sessions", "stateless"])
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_background_run_outlives_its_client(
    run_settings: Settings, fake_provider: FakeProvider, mode: str, stateless: bool
) -> None:
    release = threading.Event()
    reply = fake_provider.enqueue("done in the background", wait_for=release, chunk_delay=0.01)
    # One session at most: the second client connects only if the first one's session was released.
    s = run_settings.model_copy(update={"stateless": stateless, "max_sessions": 1})
    async with serving(s) as served:
        async with mcp_client(served.mcp_url, mode=mode) as first:
            conv = (await first.call_tool("create_conversation", {})).structured_content
            started = await first.call_tool(
                "send_message", {"conversation_id": conv["id"], "content": "take your time", "background": True}
            )
            assert not started.is_error, started.content
            run = started.structured_content
            assert run["status"] in ("queued", "running") and run["messages"] == [] and run["stop_reason"] is None
            assert "get_run" in started.content[0].text
        # The client that started it has left (its session closed); the model is still holding.
        await until(lambda: _true(reply.started.is_set()), "the provider to get the request")
        assert (await served.app.runtime.get_run(run["run_id"])).status == "running"
        release.set()
        async with mcp_client(served.mcp_url, mode=mode) as second:

            async def finished() -> dict | None:
                got = (await second.call_tool("get_run", {"run_id": run["run_id"]})).structured_content
                return got if got["status"] in FINAL else None

            final = await until(finished, "the background run to finish")
        assert final["status"] == "completed" and final["stop_reason"] == "end_turn"
        assert [m["content"] for m in final["messages"] if m["message_type"] == "assistant_message"] == [
            "done in the background"
        ]
        assert fake_provider.requests[0].disconnected is False


async def test_shutdown_interrupts_in_flight_runs(run_settings: Settings, fake_provider: FakeProvider) -> None:
    """Stopping the server (what SIGTERM does) while a foreground and a background run wait on the
    model ends both `interrupted`, with their input out of context, before the database closes."""
    hold = threading.Event()
    fake_provider.enqueue(LONG, when="fore", wait_for=hold)
    fake_provider.enqueue(LONG, when="back", wait_for=hold)
    async with serving(run_settings) as served:
        client_cm = mcp_client(served.mcp_url, mode="legacy")
        client = await client_cm.__aenter__()
        convs = [(await client.call_tool("create_conversation", {})).structured_content["id"] for _ in "ab"]
        back = {"conversation_id": convs[1], "content": "back", "background": True}
        assert not (await client.call_tool("send_message", back)).is_error
        fore = asyncio.create_task(client.call_tool("send_message", {"conversation_id": convs[0], "content": "fore"}))
        await fake_provider.await_requests(2)
        served.server.should_exit = True
        runs = [await the_run_ended(served.app, c) for c in convs]  # the store is still open meanwhile
        fore.cancel()
        with contextlib.suppress(BaseException):  # the server is gone: leaving may fail, not hang
            await fore
            await client_cm.__aexit__(None, None, None)
    hold.set()
    assert [(r.status, r.stop_reason) for r in runs] == [("interrupted", "interrupted")] * 2, runs
