"""A run's end refused by the database for another reason than a full disk: another connection holds
the write lock past the busy timeout (shortened here so the test stays fast). The end is retried; if
the database keeps refusing, the run still ends (in memory, stored once the lock is gone) and the
conversation goes on without its input."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from fake_provider import FakeProvider
from runtime_helpers import db_rows, eventually

from mcp_server_conversations.app import App, open_app
from mcp_server_conversations.config import Settings
from mcp_server_conversations.errors import StorageUnavailableError
from mcp_server_conversations.models import Run

BUSY_MS = 50


@contextmanager
def write_lock(settings: Settings) -> Iterator[sqlite3.Connection]:
    """Another connection holding the database's write lock until the block ends (or `COMMIT` in it)."""
    db = sqlite3.connect(settings.resolved_db(), isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        yield db
        if db.in_transaction:
            db.execute("COMMIT")
    finally:
        db.close()


async def quick_busy(app: App) -> None:
    await app.store.database.on_writer(lambda db: db.execute(f"PRAGMA busy_timeout={BUSY_MS}"))  # type: ignore[attr-defined]


async def _ended(app: App, run_id: str) -> Run | None:
    run = await app.runtime.get_run(run_id)
    return run if run.status not in ("queued", "running") else None


@pytest.mark.sqlite_only("SQLite's busy timeout")
async def test_a_refused_end_is_retried_and_the_run_completes(
    model_settings: Settings, fake_provider: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    gate = threading.Event()
    fake_provider.enqueue("stored after a retry", wait_for=gate)
    async with open_app(model_settings) as app:
        await quick_busy(app)
        conv = await app.service.create_conversation()
        run = await app.runtime.send(conv.id, content="hello", background=True)
        await fake_provider.await_requests(1)
        with caplog.at_level(logging.WARNING, logger="mcp_server_conversations.runs.pending_ends"):
            with write_lock(model_settings):
                gate.set()
                await eventually(lambda: "retrying" in caplog.text, "a refused attempt at the run's end")
        final = await eventually(lambda: _ended(app, run.id), "the run to end")
        assert final.status == "completed" and final.messages[-1].content == "stored after a retry"


@pytest.mark.sqlite_only("SQLite's busy timeout")
async def test_an_end_refused_past_the_retries_ends_the_run_and_is_stored_later(
    model_settings: Settings, fake_provider: FakeProvider
) -> None:
    gate = threading.Event()
    async with open_app(model_settings) as app:
        await quick_busy(app)
        conv = await app.service.create_conversation()
        await app.runtime.send(conv.id, content="before")
        fake_provider.enqueue("refused", wait_for=gate)
        sending = asyncio.create_task(app.runtime.send(conv.id, content="stranded"))
        await fake_provider.await_requests(2)
        (run_id,) = [r for r, _ in await app.store.unfinished_runs()]
        with write_lock(model_settings):
            gate.set()
            with pytest.raises(StorageUnavailableError, match="could not store"):
                await sending  # the foreground caller is told, not left waiting
            ended = await app.runtime.get_run(run_id)
            assert ended.status == "failed" and "could not store" in (ended.error or "")
            assert (await asyncio.wait_for(app.runtime.cancel_run(run_id), 10)).status == "failed"
            with pytest.raises(StorageUnavailableError):
                await app.runtime.send(conv.id, content="while locked")

        def stored_status() -> str:
            return db_rows(model_settings, "SELECT status FROM runs WHERE id = ?", (run_id,))[0]["status"]

        await eventually(lambda: stored_status() != "running", "the end to be stored")
        assert stored_status() == "failed"
        after = await app.runtime.send(conv.id, content="after")
        assert after.status == "completed"
    sent = [m["content"] for m in fake_provider.requests[-1].messages[1:]]
    assert sent == ["before", "Fake reply to: before", "after"]


@pytest.mark.sqlite_only("another connection holds SQLite's write lock so the run's end waits")
async def test_a_cancel_arriving_while_a_completed_end_is_stored_leaves_it_completed(
    model_settings: Settings, fake_provider: FakeProvider
) -> None:
    gate = threading.Event()
    reply = fake_provider.enqueue("all done", wait_for=gate)
    async with open_app(model_settings) as app:
        conv = await app.service.create_conversation()
        run = await app.runtime.send(conv.id, content="finish this", background=True)
        await fake_provider.await_requests(1)
        with write_lock(model_settings):  # the completed end waits for the lock (busy timeout 10 s)
            gate.set()
            await asyncio.to_thread(reply.finished.wait, 10)
            await asyncio.sleep(0.5)  # the reply is in: the run is storing its end, held by the lock
            cancelling = asyncio.create_task(app.runtime.cancel_run(run.id))
            await asyncio.sleep(0.2)  # the cancel has arrived while the end is being stored
        cancelled = await asyncio.wait_for(cancelling, 30)
        final = await app.runtime.get_run(run.id)
        assert (cancelled.status, final.status) == ("completed", "completed")
        assert final.messages[-1].content == "all done"
        history, _ = await app.store.list_history(
            conv.id, limit=10, after=None, desc=False, types=None, include_system=False
        )
        assert [(m.content, m.is_err) for m in history] == [("finish this", False), ("all done", False)]
