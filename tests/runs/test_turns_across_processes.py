"""Two server processes on one database (replicas, or two clients each spawning a stdio server on the
default file) never interleave a conversation's turns: a run starts only once it holds the turn, which
a run of a dead process does not keep."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from fake_provider import FakeProvider
from mcp import Client
from runtime_helpers import call, call_text, db_exec, db_rows, eventually, history, new_conversation, run_ids

from mcp_server_conversations.app import open_app
from mcp_server_conversations.config import Settings
from mcp_server_conversations.mcp.server import build_server


@asynccontextmanager
async def two_servers(settings: Settings) -> AsyncIterator[tuple[Client, Client]]:
    """Clients of two apps on one file: two runtimes, two owners, as two processes would be."""
    async with open_app(settings) as a, open_app(settings) as b:
        async with Client(build_server(settings, shared=a)) as ca, Client(build_server(settings, shared=b)) as cb:
            yield ca, cb


async def test_two_servers_take_turns_on_one_conversation(
    fake_provider: FakeProvider, model_settings: Settings
) -> None:
    gate = threading.Event()
    fake_provider.enqueue("first", wait_for=gate)  # server A's turn holds the conversation
    async with two_servers(model_settings) as (ca, cb):
        conv = await new_conversation(ca)
        first = asyncio.create_task(call_text(ca, "send_message", {"conversation_id": conv, "content": "from A"}))
        await fake_provider.await_requests(1)
        second = asyncio.create_task(call_text(cb, "send_message", {"conversation_id": conv, "content": "from B"}))
        await eventually(lambda: len(run_ids(model_settings, conv)) == 2, "B's run to be stored")
        b_run = await call(cb, "get_run", {"run_id": run_ids(model_settings, conv)[1]})
        assert b_run["status"] == "queued"
        await asyncio.sleep(0.3)  # B keeps looking at the turn meanwhile
        assert len(fake_provider.requests) == 1  # B did not call the model during A's turn
        assert [m["content"] for m in await history(cb, conv)] == ["from A"]
        gate.set()
        assert (await first)[0] == "first"
        assert (await second)[0] == "Fake reply to: from B"
        listed = [(m["role"], m["content"]) for m in await history(ca, conv)]
        assert listed == [
            ("user", "from A"),
            ("assistant", "first"),
            ("user", "from B"),
            ("assistant", "Fake reply to: from B"),
        ]
    assert fake_provider.max_in_flight == 1
    assert fake_provider.requests[1].last_user == "from B"
    assert [m["content"] for m in fake_provider.requests[1].messages[1:]] == ["from A", "first", "from B"]
    assert db_rows(model_settings, "SELECT count(*) FROM turns")[0][0] == 0  # every turn released


async def test_a_dead_processs_turn_does_not_block(fake_provider: FakeProvider, model_settings: Settings) -> None:
    async with open_app(model_settings) as a, open_app(model_settings) as b:  # b: another live process
        async with Client(build_server(model_settings, shared=a)) as c:
            conv = await new_conversation(c)
            db_exec(
                model_settings,  # held by an owner that no longer runs
                "INSERT INTO turns VALUES (?, 'run-ghost', 'gone-owner', '2026-01-01T00:00:00Z')",
                (conv,),
            )
            text, run = await asyncio.wait_for(
                call_text(c, "send_message", {"conversation_id": conv, "content": "hello"}), 30
            )
            assert run["status"] == "completed" and text == "Fake reply to: hello"
        assert b.runtime is not None


async def test_a_start_beside_a_live_process_interrupts_only_a_dead_ones_runs(model_settings: Settings) -> None:
    async with open_app(model_settings) as live:
        conv = await live.service.create_conversation()
        store = live.store
        await store.create_run(
            "run-live",
            conv.id,
            conv.agent_id,
            status="running",
            idempotency_key=None,
            owner=live.runtime._presence.owner,
        )
        await store.create_run(
            "run-ghost", conv.id, conv.agent_id, status="running", idempotency_key=None, owner="gone-owner"
        )
        await store.create_run("run-old", conv.id, conv.agent_id, status="queued", idempotency_key=None)
        async with open_app(model_settings):  # a second process starting while `live` runs
            pass
        status = {r: (await store.get_run(r)).status for r in ("run-live", "run-ghost", "run-old")}
        assert status == {"run-live": "running", "run-ghost": "interrupted", "run-old": "queued"}
        await store.finish_run("run-live", conv.id, {"status": "completed"}, abandon=False)
        await store.finish_run("run-old", conv.id, {"status": "cancelled"}, abandon=True)


async def test_compaction_waits_for_another_processs_run(fake_provider: FakeProvider, model_settings: Settings) -> None:
    gate = threading.Event()
    fake_provider.enqueue("held", wait_for=gate)
    async with two_servers(model_settings) as (ca, cb):
        conv = await new_conversation(ca)
        run = asyncio.create_task(call_text(ca, "send_message", {"conversation_id": conv, "content": "hi"}))
        await fake_provider.await_requests(1)
        compaction = asyncio.create_task(call(cb, "compact_conversation", {"conversation_id": conv}))
        await asyncio.sleep(0.3)
        assert not compaction.done()  # it waits for A's turn
        gate.set()
        assert (await run)[0] == "held"
        result = await asyncio.wait_for(compaction, 30)
        assert result["messages_after"] == result["messages_before"] == 2
    assert db_rows(model_settings, "SELECT count(*) FROM turns")[0][0] == 0


@pytest.mark.sqlite_only("SQLite's owner files (PostgreSQL's presence is an advisory lock: tests/test_postgres.py)")
async def test_owner_files_of_dead_processes_are_removed_at_start(model_settings: Settings) -> None:
    owners = model_settings.resolved_db().parent / f"{model_settings.resolved_db().name}-owners"
    async with open_app(model_settings) as live:
        ghost = owners / "killed-process.lock"
        ghost.touch()  # what a killed process leaves behind: a file nobody holds a lock on
        async with open_app(model_settings):
            assert not ghost.exists()
            assert (owners / f"{live.runtime._presence.owner}.lock").exists()  # a live process's file stays
    assert list(owners.glob("*.lock")) == []  # each process removes its own on the way out


async def test_cancel_run_stops_a_run_another_process_owns(
    fake_provider: FakeProvider, model_settings: Settings
) -> None:
    reply = fake_provider.enqueue("never finished", hold_after=1)  # streams one delta, then hangs
    async with two_servers(model_settings) as (ca, cb):
        conv = await new_conversation(ca)
        started = await call(ca, "send_message", {"conversation_id": conv, "content": "long", "background": True})
        await fake_provider.await_requests(1)
        cancelled = await asyncio.wait_for(call(cb, "cancel_run", {"run_id": started["id"]}), 30)  # asked of B
        assert (cancelled["status"], cancelled["stop_reason"]) == ("cancelled", "cancelled")
        await asyncio.to_thread(reply.finished.wait, 10)
        assert fake_provider.requests[0].disconnected  # A hung up on the provider
        assert (await call(ca, "get_run", {"run_id": started["id"]}))["status"] == "cancelled"
        listed = await history(cb, conv)
        assert [(m["content"], m["is_err"], m["in_context"]) for m in listed] == [("long", True, False)]
        again = await call(cb, "cancel_run", {"run_id": started["id"]})  # already ended: returned as it ended
        assert again["status"] == "cancelled"
        text, run = await call_text(ca, "send_message", {"conversation_id": conv, "content": "next"})
        assert run["status"] == "completed" and text == "Fake reply to: next"  # the turn was released
    assert fake_provider.requests[1].last_user == "next"
    assert [m["content"] for m in fake_provider.requests[1].messages[1:]] == ["next"]  # the cancelled turn: gone


async def send_background(c: Client, conv: str, content: str) -> dict[str, Any]:
    return await call(c, "send_message", {"conversation_id": conv, "content": content, "background": True})


@asynccontextmanager
async def a_held_turn(
    fake_provider: FakeProvider, settings: Settings
) -> AsyncIterator[tuple[Client, Client, str, dict[str, Any], threading.Event]]:
    """Two servers, and a conversation whose turn server A's run "A1" holds until the event is set."""
    gate = threading.Event()
    fake_provider.enqueue("first", wait_for=gate)
    async with two_servers(settings) as (ca, cb):
        conv = await new_conversation(ca)
        first = await send_background(ca, conv, "A1")
        await fake_provider.await_requests(1)
        yield ca, cb, conv, first, gate


async def test_cancel_run_of_a_run_queued_in_another_process_never_calls_the_model(
    fake_provider: FakeProvider, model_settings: Settings
) -> None:
    async with a_held_turn(fake_provider, model_settings) as (ca, cb, conv, first, gate):
        queued = await send_background(ca, conv, "two")
        assert queued["status"] == "queued"
        cancelled = await asyncio.wait_for(call(cb, "cancel_run", {"run_id": queued["id"]}), 30)
        assert cancelled["status"] == "cancelled"
        gate.set()
        await eventually(lambda: _ended(ca, first["id"]), "the first run to end")
        assert len(fake_provider.requests) == 1  # the cancelled run never reached the model


async def _ended(c: Client, run_id: str) -> bool:
    return (await call(c, "get_run", {"run_id": run_id}))["status"] not in ("queued", "running")


async def test_cancel_run_ends_a_run_whose_process_is_gone(model_settings: Settings) -> None:
    async with open_app(model_settings) as a:
        async with Client(build_server(model_settings, shared=a)) as c:
            conv = await new_conversation(c)
            agent = (await call(c, "get_conversation", {"conversation_id": conv}))["agent_id"]
            await a.store.create_run(
                "run-ghost", conv, agent, status="running", idempotency_key=None, owner="gone-owner"
            )
            cancelled = await asyncio.wait_for(call(c, "cancel_run", {"run_id": "run-ghost"}), 30)
            assert (cancelled["status"], cancelled["stop_reason"]) == ("cancelled", "cancelled")


async def test_across_processes_the_turn_goes_in_the_order_runs_were_queued(
    fake_provider: FakeProvider, model_settings: Settings
) -> None:
    async with a_held_turn(fake_provider, model_settings) as (ca, cb, conv, first, gate):
        b1 = await send_background(cb, conv, "B1")
        assert b1["status"] == "queued"
        a2 = await send_background(ca, conv, "A2")
        assert a2["status"] == "queued"  # queued after B1, though in the process that holds the turn
        gate.set()
        for run in (first, b1, a2):
            await eventually(lambda run=run: _ended(ca, run["id"]), "the three runs to end")
    assert [r.last_user for r in fake_provider.requests] == ["A1", "B1", "A2"]
