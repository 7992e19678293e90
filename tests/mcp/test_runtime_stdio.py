"""End to end over stdio: a spawned server process talking to the fake provider through litellm;
litellm stays out of the path to `initialize`; the quickstart example runs against the fake."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import anyio
import pytest
from fake_provider import FakeProvider
from mcp import Client, StdioServerParameters
from runtime_helpers import call, call_text, eventually, history, new_conversation

from mcp_server_conversations.config import Settings

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def server_params(settings: Settings, fake: FakeProvider) -> StdioServerParameters:
    env = {**fake.env(), "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHON_DOTENV_DISABLED": "1"}
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "mcp_server_conversations", "--db", str(settings.resolved_db()), "--model", "openai/fake-model"],
        env=env,
    )


async def test_stdio_server_streams_runs_in_background_and_cancels(
    settings: Settings, fake_provider: FakeProvider
) -> None:
    async with Client(server_params(settings, fake_provider), mode="legacy") as c:
        conv = await new_conversation(c)
        deltas: list[str | None] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            deltas.append(message)

        fake_provider.enqueue("streamed over stdio", chunk_delay=0.001)
        text, run = await call_text(
            c, "send_message", {"conversation_id": conv, "content": "hi"}, progress_callback=on_progress
        )
        assert text == "streamed over stdio" and deltas == ["streamed", " over", " stdio"]
        assert run["model"] == "openai/fake-model" and run["usage"]["total_tokens"] > 0

        gate = threading.Event()
        fake_provider.enqueue("later", wait_for=gate)
        background = await call(c, "send_message", {"conversation_id": conv, "content": "bg", "background": True})
        gate.set()

        async def finished() -> bool:
            return (await call(c, "get_run", {"run_id": background["id"]}))["status"] == "completed"

        await eventually(finished, "the background run")

        reply = fake_provider.enqueue("cut off here", hold_after=1)
        first_delta = anyio.Event()

        async def on_first_delta(progress: float, total: float | None, message: str | None) -> None:
            first_delta.set()

        async def send_abandoned() -> None:
            await c.call_tool(
                "send_message", {"conversation_id": conv, "content": "abandoned"}, progress_callback=on_first_delta
            )

        async with anyio.create_task_group() as tg:
            tg.start_soon(send_abandoned)
            with anyio.fail_after(60):
                await first_delta.wait()
            tg.cancel_scope.cancel()  # the client gives up: notifications/cancelled for the request
        await asyncio.to_thread(reply.finished.wait, 10)
        assert fake_provider.requests[-1].disconnected

        async def abandoned_out_of_context() -> bool:
            msgs = await history(c, conv)
            return any(m["content"] == "abandoned" and m["is_err"] and not m["in_context"] for m in msgs)

        await eventually(abandoned_out_of_context, "the cancelled run to be cleaned up")
        text, _ = await call_text(c, "send_message", {"conversation_id": conv, "content": "still serving?"})
        assert text == "Fake reply to: still serving?"
        assert [m["content"] for m in fake_provider.requests[-1].messages[1:]] == [
            "hi",
            "streamed over stdio",
            "bg",
            "later",
            "still serving?",
        ]


LAZY = textwrap.dedent(
    """
    import asyncio, sys, threading, time
    from mcp import Client
    from mcp_server_conversations.runs import runtime
    from mcp_server_conversations.config import Settings
    from mcp_server_conversations.mcp.server import build_server

    async def main():
        settings = Settings(db=sys.argv[1], default_model="openai/fake-model")
        runtime.WARM_DELAY = 3600  # only what initialize and ordinary tools import
        async with Client(build_server(settings), mode="legacy") as c:
            await c.call_tool("create_conversation", {})
            await c.list_tools()
            print("after initialize:", "litellm" in sys.modules, flush=True)
        runtime.WARM_DELAY = 0  # the background warm-up after start
        async with Client(build_server(settings), mode="legacy") as c:
            deadline = time.monotonic() + 60
            # until the warm-up thread is done: litellm has `acompletion` well before its import ends, and
            # an interpreter that exits while a daemon thread still imports can abort (SIGABRT)
            while "litellm" not in sys.modules or any(t.name == "litellm-warm" for t in threading.enumerate()):
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            print("after warm-up:", "litellm" in sys.modules, flush=True)

    asyncio.run(main())
    """
)


@pytest.mark.above_storage("about what the process imports when")
async def test_litellm_is_not_imported_before_initialize_and_is_warmed_after(settings: Settings) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        LAZY,
        str(settings.resolved_db()),
        stdout=subprocess.PIPE,
        env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    assert out.decode().splitlines() == ["after initialize: False", "after warm-up: True"]


async def test_quickstart_example_runs_against_the_fake_provider(
    settings: Settings, fake_provider: FakeProvider
) -> None:
    fake_provider.enqueue(
        tool_calls=[{"name": "core_memory_append", "arguments": {"label": "human", "content": "Name: Ada; pottery."}}],
        when="I'm Ada",
    )
    env = {**os.environ, **fake_provider.env(), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "examples" / "quickstart.py"),
        "openai/fake-model",
        "--db",
        str(settings.resolved_db()),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    out, err = await proc.communicate()
    text = out.decode()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert "Fake reply to: Hi! I'm Ada" in text
    assert "shared memory block 'human' now reads: 'Name: Ada; pottery.'" in text
    assert "tools used: ['core_memory_append']" in text
    assert "Fake reply to: What do you know about me so far?" in text
    assert "Fake reply to: Let's talk about glazes instead." in text
    assert "search 'when is the pottery class?' -> " in text and "-> 0 result" not in text
    assert text.rstrip().endswith("done")
    assert [r.last_user for r in fake_provider.requests if r.tools][-1] == "Let's talk about glazes instead."
    # The fork's call carried the first conversation's context (Ada's turn), not the second's.
    fork_call = [r for r in fake_provider.requests if r.last_user == "Let's talk about glazes instead."][0]
    assert any("I'm Ada" in (m.get("content") or "") for m in fork_call.messages)
    assert not any("What do you know" in (m.get("content") or "") for m in fork_call.messages)
