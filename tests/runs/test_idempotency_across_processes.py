"""The same idempotency key sent to two server processes on one database starts one run: both callers get
that run, and a foreground caller waits for its reply wherever the run executes (its end is read from
the database when another process runs it)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx
import pytest
from fake_provider import FakeProvider
from mcp import Client
from pg_helpers import tables_locked
from rest_helpers import TOKEN, rest_server
from runtime_helpers import call, call_text, eventually, history, new_conversation, run_ids
from test_stdio_two_processes import server

from mcp_server_conversations.app import App, open_app
from mcp_server_conversations.config import Settings, is_database_url
from mcp_server_conversations.mcp.server import build_server

pytestmark = [pytest.mark.slow, pytest.mark.processes]

HANG_GUARD = 60  # seconds: only so a broken server fails the test instead of hanging it
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@asynccontextmanager
async def two_apps(settings: Settings) -> AsyncIterator[tuple[App, App, Client, Client]]:
    """Two apps on one file (two runtimes, two owners, as two processes) and a client of each."""
    async with open_app(settings) as a, open_app(settings) as b:
        async with Client(build_server(settings, shared=a)) as ca, Client(build_server(settings, shared=b)) as cb:
            yield a, b, ca, cb


@contextmanager
def writes_held(db: Path | str) -> Iterator[None]:
    """Hold the database's write lock: readers go on, every writer waits (within its busy timeout)."""
    if is_database_url(db):
        with tables_locked(str(db)):
            yield
        return
    con = sqlite3.connect(db, isolation_level=None)
    try:
        con.execute("BEGIN IMMEDIATE")
        yield
        con.execute("ROLLBACK")
    finally:
        con.close()


@pytest.mark.parametrize("background", [False, True])
async def test_one_key_sent_to_two_processes_at_once_starts_one_run(
    fake_provider: FakeProvider, model_settings: Settings, background: bool
) -> None:
    async with two_apps(model_settings) as (a, b, ca, cb):
        conv = await new_conversation(ca)
        args = {"conversation_id": conv, "content": "once", "idempotency_key": "key-1", "background": background}
        # Both sends find the key unused, then store their runs at the same moment.
        with writes_held(model_settings.resolved_db()):
            sends = [asyncio.create_task(call_text(c, "send_message", args)) for c in (ca, cb)]
            await eventually(
                lambda: all((conv, "key-1") in app.runtime._keys for app in (a, b)), "both sends to pass the key check"
            )
        (text_a, run_a), (text_b, run_b) = await asyncio.wait_for(asyncio.gather(*sends), HANG_GUARD)
        assert run_a["id"] == run_b["id"] and run_ids(model_settings, conv) == [run_a["id"]]
        if background:
            assert {run_a["status"], run_b["status"]} <= {"queued", "running", "completed"}
            await eventually(lambda: _ended(ca, run_a["id"]), "the run to end")
        else:
            assert text_a == text_b == "Fake reply to: once"
            assert run_a["status"] == run_b["status"] == "completed"
        assert [m["content"] for m in await history(cb, conv)] == ["once", "Fake reply to: once"]
    assert len(fake_provider.requests) == 1


async def _ended(c: Client, run_id: str) -> bool:
    return (await call(c, "get_run", {"run_id": run_id}))["status"] not in ("queued", "running")


async def test_a_foreground_retry_through_another_process_waits_for_the_reply(
    fake_provider: FakeProvider, model_settings: Settings
) -> None:
    gate = threading.Event()
    fake_provider.enqueue("the one reply", wait_for=gate)
    async with two_apps(model_settings) as (_, _, ca, cb):
        conv = await new_conversation(ca)
        args = {"conversation_id": conv, "content": "once", "idempotency_key": "key-1"}
        first = asyncio.create_task(call_text(ca, "send_message", args))
        await fake_provider.await_requests(1)
        retry = asyncio.create_task(call_text(cb, "send_message", args))  # the run is A's, still running
        await asyncio.wait({retry}, timeout=0.5)
        gate.set()
        (text_a, run_a), (text_b, run_b) = await asyncio.wait_for(asyncio.gather(first, retry), HANG_GUARD)
        assert text_a == text_b == "the one reply"
        assert run_a["id"] == run_b["id"] and run_b["status"] == "completed"

        # A run that fails: the retry through the other process fails as a foreground send does.
        gate.clear()
        fake_provider.enqueue(error_status=400, error_message="the provider refused", wait_for=gate)
        args = {"conversation_id": conv, "content": "twice", "idempotency_key": "key-2"}
        first = asyncio.create_task(cb.call_tool("send_message", args))
        await fake_provider.await_requests(2)
        retry = asyncio.create_task(ca.call_tool("send_message", args))
        await asyncio.wait({retry}, timeout=0.5)
        gate.set()
        results = await asyncio.wait_for(asyncio.gather(first, retry), HANG_GUARD)
        for result in results:
            assert result.is_error and "the provider refused" in result.content[0].text
        assert len(run_ids(model_settings, conv)) == 2
    assert len(fake_provider.requests) == 2


async def test_two_server_processes_sent_one_key_at_once(tmp_path: Path, fake_provider: FakeProvider) -> None:
    """Two installed console scripts: the key check and the run's insert are apart by the first send's
    load of litellm in each, so both usually find the key unused; either way there is one run."""
    db = tmp_path / "shared.db"
    async with Client(server(db, fake_provider)) as a, Client(server(db, fake_provider), mode="legacy") as b:
        conv = await new_conversation(a)
        fore = {"conversation_id": conv, "content": "once", "idempotency_key": "key-1"}
        sent = [call_text(c, "send_message", fore) for c in (a, b)]
        (text_a, run_a), (text_b, run_b) = await asyncio.wait_for(asyncio.gather(*sent), HANG_GUARD)
        assert text_a == text_b == "Fake reply to: once" and run_a["id"] == run_b["id"]

        back = {"conversation_id": conv, "content": "later", "idempotency_key": "key-2", "background": True}
        sent = [call(c, "send_message", back) for c in (a, b)]
        run_a, run_b = await asyncio.wait_for(asyncio.gather(*sent), HANG_GUARD)
        assert run_a["id"] == run_b["id"]
        await asyncio.wait_for(eventually(lambda: _ended(b, run_a["id"]), "the run to end"), HANG_GUARD)
        listed = [m["content"] for m in await history(a, conv)]
        assert listed == ["once", "Fake reply to: once", "later", "Fake reply to: later"]
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 2


async def test_a_letta_otid_sent_through_another_process_gets_the_reply(
    settings: Settings, fake_provider: FakeProvider
) -> None:
    gate = threading.Event()
    fake_provider.enqueue("the one reply", wait_for=gate)
    async with rest_server(settings) as a, rest_server(settings) as b:
        b.app.rest.sse_keepalive = 3600  # a stream's silence must not be what ends it
        async with (
            httpx.AsyncClient(base_url=a.base_url, headers=AUTH, timeout=HANG_GUARD) as http_a,
            httpx.AsyncClient(base_url=b.base_url, headers=AUTH, timeout=HANG_GUARD) as http_b,
        ):
            agent = (await http_a.post("/v1/agents/", json={"name": "otid"})).json()
            conv = (await http_a.post("/v1/conversations/", params={"agent_id": agent["id"]}, json={})).json()
            path = f"/v1/conversations/{conv['id']}/messages"
            body = {"messages": [{"role": "user", "content": "Once only", "otid": "otid-1"}], "streaming": False}
            first = asyncio.create_task(http_a.post(path, json=body))
            await fake_provider.await_requests(1)
            plain = asyncio.create_task(http_b.post(path, json=body))  # A runs it: B's retries wait for it
            streamed = asyncio.create_task(http_b.post(path, json={**body, "streaming": True}))
            await asyncio.wait({plain, streamed}, timeout=0.5)
            gate.set()
            responses = await asyncio.wait_for(asyncio.gather(first, plain, streamed), HANG_GUARD)
        for r in responses:
            assert r.status_code == 200, r.text
        for r in responses[:2]:
            assert [m["content"] for m in r.json()["messages"] if m["message_type"] == "assistant_message"] == [
                "the one reply"
            ]
        chunks = [json.loads(line[6:]) for line in responses[2].text.splitlines() if line.startswith("data: {")]
        assert [c["content"] for c in chunks if c["message_type"] == "assistant_message"] == ["the one reply"]
        assert [c["stop_reason"] for c in chunks if c["message_type"] == "stop_reason"] == ["end_turn"]
    assert len(fake_provider.requests) == 1
