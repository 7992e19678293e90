"""Failures: provider errors end the run failed with a clean context and no leaked key; a crash or a
shutdown marks runs interrupted; parallel memory edits are never lost."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading

import pytest
from fake_provider import FakeProvider
from mcp import Client
from runtime_helpers import call, call_error, call_text, eventually, history, new_conversation, run_ids

from mcp_server_conversations.app import App, open_app
from mcp_server_conversations.config import Settings
from mcp_server_conversations.mcp.server import build_server
from mcp_server_conversations.models import Run


@pytest.fixture
def mode() -> str:
    """Failure handling does not depend on the MCP protocol era: one in-memory mode (JSON-RPC) is enough."""
    return "legacy"


SECRET = "sk-test-SECRETSECRET-0123456789"


@pytest.mark.parametrize(
    ("status", "error_class"),
    [(401, "AuthenticationError"), (429, "RateLimitError"), (500, "InternalServerError"), (400, "BadRequestError")],
)
async def test_provider_error_fails_the_run_and_leaves_the_context_clean(
    connect,
    fake_provider: FakeProvider,
    model_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    status: int,
    error_class: str,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    async with connect() as c:
        conv = await new_conversation(c)
        await call(c, "send_message", {"conversation_id": conv, "content": "before"})
        fake_provider.enqueue(error_status=status, error_message=f"Incorrect API key provided: {SECRET}. Try again.")
        text = await call_error(c, "send_message", {"conversation_id": conv, "content": "doomed"})
        assert error_class in text and "Incorrect API key provided" in text
        assert SECRET not in text and "SECRETSECRET" not in text
        failed_id = run_ids(model_settings, conv)[-1]
        run = await call(c, "get_run", {"run_id": failed_id})
        assert run["status"] == "failed" and run["stop_reason"] == "error"
        assert error_class in run["error"] and SECRET not in run["error"]
        assert run["messages"] == []
        doomed = next(m for m in await history(c, conv) if m["content"] == "doomed")
        assert doomed["is_err"] and not doomed["in_context"] and doomed["run_id"] == failed_id
        await call(c, "send_message", {"conversation_id": conv, "content": "after"})
        sent = [m["content"] for m in fake_provider.requests[-1].messages[1:]]
        assert sent == ["before", "Fake reply to: before", "after"]
        conversation = await call(c, "get_conversation", {"conversation_id": conv})
        assert conversation["last_run_completion"] is not None


async def test_timeout_and_connection_refused_are_provider_errors(
    settings: Settings, fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    quick = settings.model_copy(update={"default_model": "openai/fake-model", "model_timeout": 0.3})
    fake_provider.enqueue("too late", delay=5)
    async with Client(build_server(quick)) as c:
        conv = await new_conversation(c)
        text = await call_error(c, "send_message", {"conversation_id": conv, "content": "slow"})
        assert "Timeout" in text
        with socket.socket() as s:  # a port nobody listens on
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        monkeypatch.setenv("OPENAI_API_BASE", f"http://127.0.0.1:{port}/v1")
        monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{port}/v1")
        text = await call_error(c, "send_message", {"conversation_id": conv, "content": "nobody home"})
        assert "Error" in text and "onnect" in text
        assert all(m["is_err"] and not m["in_context"] for m in await history(c, conv))


async def test_failure_after_tool_steps_takes_the_whole_turn_out_of_context(
    connect, fake_provider: FakeProvider
) -> None:
    fake_provider.enqueue(tool_calls=[{"name": "core_memory_append", "arguments": {"label": "human", "content": "Bo"}}])
    fake_provider.enqueue(error_status=503)
    async with connect() as c:
        conv = await new_conversation(c)
        text = await call_error(c, "send_message", {"conversation_id": conv, "content": "my name is Bo"})
        assert "ServiceUnavailableError" in text
        listed = await history(c, conv)
        assert [m["message_type"] for m in listed] == ["user_message", "tool_call_message", "tool_return_message"]
        assert not any(m["in_context"] for m in listed)  # kept in history, out of the context window
        assert listed[0]["is_err"]
        await call(c, "send_message", {"conversation_id": conv, "content": "hello"})
        assert [m["role"] for m in fake_provider.requests[-1].messages] == ["system", "user"]
        assert "Bo" in fake_provider.requests[-1].system  # the memory edit itself stands


async def test_parallel_memory_edits_are_never_lost(connect, fake_provider: FakeProvider) -> None:
    gate = threading.Event()
    n = 5
    async with connect() as c:
        convs = [await new_conversation(c) for _ in range(n)]
        for i in range(n):
            edit = {"name": "core_memory_append", "arguments": {"label": "human", "content": f"fact {i}"}}
            fake_provider.enqueue(tool_calls=[edit], wait_for=gate, when=f"tell {i}")
            fake_provider.enqueue(f"ok {i}", when=f"tell {i}")
        tasks = [
            asyncio.create_task(call_text(c, "send_message", {"conversation_id": conv, "content": f"tell {i}"}))
            for i, conv in enumerate(convs)
        ]
        await fake_provider.await_requests(n)
        gate.set()
        assert sorted(text for text, _ in await asyncio.gather(*tasks)) == [f"ok {i}" for i in range(n)]
        agent_id = (await call(c, "get_conversation", {"conversation_id": convs[0]}))["agent_id"]
        human = next(
            b for b in (await call(c, "get_agent", {"agent_id": agent_id}))["memory_blocks"] if b["label"] == "human"
        )
        assert sorted(human["value"].split("\n")) == [f"fact {i}" for i in range(n)]


async def test_shutdown_marks_in_flight_runs_interrupted(
    model_settings: Settings, fake_provider: FakeProvider, mode: str
) -> None:
    gate = threading.Event()
    fake_provider.enqueue("never", wait_for=gate)
    async with Client(build_server(model_settings), mode=mode) as c:
        conv = await new_conversation(c)
        run = await call(c, "send_message", {"conversation_id": conv, "content": "in flight", "background": True})
        await fake_provider.await_requests(1)
    gate.set()  # the server (this connection's lifespan) has stopped
    async with Client(build_server(model_settings), mode=mode) as c:
        ended = await call(c, "get_run", {"run_id": run["id"]})
        assert ended["status"] == "interrupted" and ended["stop_reason"] == "interrupted"
        (msg,) = await history(c, conv)
        assert msg["is_err"] and not msg["in_context"]


CRASHING_SERVER = textwrap.dedent(
    """
    import asyncio, sys
    from mcp_server_conversations.app import open_app
    from mcp_server_conversations.config import Settings

    async def main():
        settings = Settings(db=sys.argv[1], default_model="openai/fake-model")
        async with open_app(settings) as app:
            conv = await app.service.create_conversation()
            run = await app.runtime.send(conv.id, content="lost in the crash", background=True)
            print(conv.id, run.id, run.status, flush=True)
            await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


@pytest.mark.slow
async def test_runs_left_running_by_a_crash_are_interrupted_at_next_start(
    model_settings: Settings, fake_provider: FakeProvider
) -> None:
    gate = threading.Event()
    fake_provider.enqueue("never", wait_for=gate)
    env = {**os.environ, **fake_provider.env()}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CRASHING_SERVER, str(model_settings.resolved_db()), stdout=subprocess.PIPE, env=env
    )
    try:
        assert proc.stdout is not None
        conv_id, run_id, status = (await proc.stdout.readline()).decode().split()
        assert status == "running"
        await fake_provider.await_requests(1)
    finally:
        proc.kill()  # no shutdown code runs: the run stays `running` in the file
        await proc.wait()
    gate.set()
    async with open_app(model_settings) as app:
        run = await app.runtime.get_run(run_id)
        assert run.status == "interrupted" and run.stop_reason == "interrupted" and run.completed_at
        (msg,) = (await app.service.list_messages(conv_id)).messages
        assert msg.content == "lost in the crash" and msg.is_err and not msg.in_context
        assert (await app.store.get_conversation(conv_id)).last_run_completion == run.completed_at
        assert await app.store.unfinished_runs() == []
    assert json.dumps(run.model_dump(mode="json"))


async def test_a_replica_starting_leaves_another_replicas_runs_alone(
    model_settings: Settings, fake_provider: FakeProvider
) -> None:
    gate = threading.Event()
    fake_provider.enqueue("answered by replica one", wait_for=gate)
    async with open_app(model_settings) as one:  # two servers on one database file, as behind a load balancer
        conv = await one.service.create_conversation()
        run = await one.runtime.send(conv.id, content="hello", background=True)
        await fake_provider.await_requests(1)
        async with open_app(model_settings) as two:
            assert (await two.runtime.get_run(run.id)).status == "running"  # not taken for a dead process's
            gate.set()
            final = await eventually(lambda: _ended(two, run.id), "replica one to finish its run")
            assert final.status == "completed" and final.messages[-1].content == "answered by replica one"
        listed = (await one.service.list_messages(conv.id)).messages
        assert [(m.content, m.is_err, m.in_context) for m in listed] == [
            ("hello", False, True),
            ("answered by replica one", False, True),
        ]


async def _ended(app: App, run_id: str) -> Run | None:
    run = await app.runtime.get_run(run_id)
    return run if run.status not in ("queued", "running") else None
