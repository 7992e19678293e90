"""A server process killed mid-run (kill -9: no shutdown code runs) leaves its run `running` in the
file. A live process sharing the file ends it `interrupted` within its sweep interval
(`run_sweep_interval`, CONVERSATIONS_RUN_SWEEP_INTERVAL), so a client polling get_run sees an end;
and a live process that takes the conversation's turn first ends it then, so its next model call
never carries the killed run's input."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from fake_provider import FakeProvider
from mcp import Client, StdioServerParameters
from test_runtime_failure import CRASHING_SERVER
from test_stdio_e2e import ENV, SCRIPT, ok

from mcp_server_conversations.app import open_app
from mcp_server_conversations.config import Settings
from mcp_server_conversations.runs import remote_cancel

pytestmark = [pytest.mark.slow, pytest.mark.processes]

HANG_GUARD = 60  # seconds: only so a broken server fails the test instead of hanging it
KILLED_INPUT = "lost in the crash"  # what CRASHING_SERVER sends


def survivor(db: Path, provider: FakeProvider, sweep_interval: float) -> StdioServerParameters:
    """The installed console script on `db`, with the given sweep interval."""
    assert SCRIPT, "the console script is not installed next to the test interpreter"
    env = {**ENV, **provider.env(), "CONVERSATIONS_RUN_SWEEP_INTERVAL": str(sweep_interval)}
    return StdioServerParameters(command=SCRIPT, args=["--db", str(db), "--model", "openai/fake-model"], env=env)


@asynccontextmanager
async def killed_mid_run(db: Path, provider: FakeProvider) -> AsyncIterator[tuple[str, str]]:
    """(conversation id, run id) of a run whose server process was killed while its model call was held."""
    gate = threading.Event()
    provider.enqueue("never delivered", wait_for=gate)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CRASHING_SERVER, str(db), stdout=subprocess.PIPE, env={**ENV, **provider.env()}
    )
    try:
        assert proc.stdout is not None
        conv_id, run_id, status = (await asyncio.wait_for(proc.stdout.readline(), HANG_GUARD)).decode().split()
        assert status == "running"
        await provider.await_requests(1)
    finally:
        proc.kill()
        await proc.wait()
        gate.set()
    yield conv_id, run_id


async def polled_end(c: Client, run_id: str) -> dict[str, Any]:
    while True:
        run = await ok(c, "get_run", {"run_id": run_id})
        if run["status"] not in ("queued", "running"):
            return run
        await asyncio.sleep(0.1)


async def test_a_live_process_ends_a_killed_processs_run(tmp_path: Path, fake_provider: FakeProvider) -> None:
    db = tmp_path / "shared.db"
    async with Client(survivor(db, fake_provider, 0.2)) as c:  # running before the other process dies
        async with killed_mid_run(db, fake_provider) as (conv, run_id):
            ended = await asyncio.wait_for(polled_end(c, run_id), HANG_GUARD)
            assert (ended["status"], ended["stop_reason"]) == ("interrupted", "interrupted")
            assert "stopped" in ended["error"]
            (msg,) = (await ok(c, "list_messages", {"conversation_id": conv}))["messages"]
            assert msg["content"] == KILLED_INPUT and msg["is_err"] and not msg["in_context"]
            after = await ok(c, "send_message", {"conversation_id": conv, "content": "after"})
            assert after["status"] == "completed"
    assert [m["content"] for m in fake_provider.requests[-1].messages[1:]] == ["after"]


async def test_taking_a_killed_processs_turn_ends_its_run_first(tmp_path: Path, fake_provider: FakeProvider) -> None:
    db = tmp_path / "shared.db"
    async with Client(survivor(db, fake_provider, 3600)) as c:  # no sweep during the test: the turn's claim acts
        async with killed_mid_run(db, fake_provider) as (conv, run_id):
            after = await asyncio.wait_for(
                ok(c, "send_message", {"conversation_id": conv, "content": "after"}), HANG_GUARD
            )
            assert after["status"] == "completed"
            assert [m["content"] for m in fake_provider.requests[-1].messages[1:]] == ["after"]
            ended = await ok(c, "get_run", {"run_id": run_id})
            assert (ended["status"], ended["stop_reason"]) == ("interrupted", "interrupted")


async def test_cancel_run_of_a_run_this_process_owns_but_does_not_run_ends_it_at_once(
    model_settings: Settings,
) -> None:
    async with open_app(model_settings) as app:
        conv = await app.service.create_conversation()
        await app.store.create_run(
            "run-adrift",
            conv.id,
            conv.agent_id,
            status="running",
            idempotency_key=None,
            owner=app.runtime._presence.owner,
        )  # stored as this process's, yet no task of it runs it: nothing to wait for
        cancelled = await asyncio.wait_for(app.runtime.cancel_run("run-adrift"), remote_cancel.CANCEL_WAIT - 5)
        assert cancelled.status == "cancelled"
