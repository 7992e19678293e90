"""Storage on a real SQLite file: migrations, file mode, pragmas, FTS kept in sync."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import pytest
from foundation_helpers import assert_fts_in_sync, on_pg, sql_all, sql_one, sql_write

from mcp_server_conversations.errors import NotFoundError
from mcp_server_conversations.storage import NewMessage, SQLiteStore
from mcp_server_conversations.storage import schema as schema_mod
from mcp_server_conversations.storage.rows import pack, unpack

M001_TABLES = {"agents", "blocks", "conversations", "messages", "messages_fts", "runs", "schema_migrations"}
M001_TRIGGERS = {"messages_fts_ai", "messages_fts_ad", "messages_fts_au"}


def sqlite_objects(path: Path) -> dict[str, set[str]]:
    """Tables, triggers and indexes of a file, read with the stdlib (not through our store)."""
    con = sqlite3.connect(path)
    try:
        out: dict[str, set[str]] = {"table": set(), "trigger": set(), "index": set()}
        for kind, name in con.execute("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"):
            if kind in out:
                out[kind].add(name)
        return out
    finally:
        con.close()


async def fts_rowids(store: SQLiteStore, word: str) -> set[int]:
    """The keys of the messages the full-text index finds for `word` (FTS5 MATCH, or the tsvector's @@)."""
    if on_pg(store):
        from mcp_server_conversations.storage.postgres.text import normalize

        rows = await sql_all(
            store, "SELECT rowid FROM messages WHERE search_tsv @@ phraseto_tsquery('conv', ?)", (normalize(word),)
        )
        return {r[0] for r in rows}
    rows = await sql_all(store, "SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?", (f'"{word}"',))
    return {r[0] for r in rows}


async def make_conversation(store: SQLiteStore) -> tuple[str, str]:
    agent = await store.create_agent(name="a", model=None, system="sys", context_window_limit=None, blocks=[])
    conv = await store.create_conversation(agent.id, model=None, summary=None, system_text="compiled")
    return agent.id, conv.id


async def test_blank_file_migrates_to_latest_tables_and_triggers(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "c.db"
    store = await SQLiteStore.open(path)
    await store.close()
    objects = sqlite_objects(path)
    assert M001_TABLES <= objects["table"]
    assert M001_TRIGGERS <= objects["trigger"]
    assert {"agents_one_default", "conversations_agent_created", "messages_conversation"} <= objects["index"]
    con = sqlite3.connect(path)
    versions = con.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
    con.close()
    assert versions == [(i, name) for i, (name, _) in enumerate(schema_mod.MIGRATIONS, start=1)]


async def test_database_file_and_its_new_directory_are_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "data" / "c.db"
    old = os.umask(0o022)
    try:
        store = await SQLiteStore.open(path)
        await make_conversation(store)
        await store.close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700


async def test_existing_world_readable_file_is_made_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    path.touch()
    os.chmod(path, 0o644)
    store = await SQLiteStore.open(path)
    await store.close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


@pytest.mark.sqlite_only("SQLite's PRAGMAs")
async def test_wal_and_foreign_keys_are_on(store: SQLiteStore) -> None:
    assert (await sql_one(store, "PRAGMA journal_mode"))[0] == "wal"
    assert (await sql_one(store, "PRAGMA foreign_keys"))[0] == 1
    wal = Path(store.location + "-wal")
    await make_conversation(store)
    assert wal.exists() and stat.S_IMODE(os.stat(wal).st_mode) == 0o600


async def test_foreign_keys_reject_a_conversation_of_a_missing_agent(store: SQLiteStore) -> None:
    with pytest.raises((sqlite3.IntegrityError, NotFoundError)):  # PostgreSQL checks the agent first
        await store.create_conversation("agent-missing", model=None, summary=None, system_text="x")
    # the failed write rolled back and the store keeps working
    _, conv_id = await make_conversation(store)
    assert (await store.get_conversation(conv_id)).id == conv_id


async def test_reopen_is_a_no_op_migration(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    store = await SQLiteStore.open(path)
    _, conv_id = await make_conversation(store)
    await store.close()
    before = sqlite_objects(path)
    store = await SQLiteStore.open(path)
    try:
        assert await store.database.on_writer(schema_mod.migrate) == []
        assert (await store.get_conversation(conv_id)).id == conv_id
    finally:
        await store.close()
    assert sqlite_objects(path) == before


async def test_a_new_migration_is_applied_once_on_the_next_start(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "c.db"
    store = await SQLiteStore.open(path)
    await store.close()
    extra = ("m999_test_column", "ALTER TABLE agents ADD COLUMN note TEXT;")
    monkeypatch.setattr(schema_mod, "MIGRATIONS", [*schema_mod.MIGRATIONS, extra])
    store = await SQLiteStore.open(path)
    try:
        cols = {r["name"] for r in await sql_all(store, "PRAGMA table_info(agents)")}
        assert "note" in cols
        assert await store.database.on_writer(schema_mod.migrate) == []
        assert await store.database.on_writer(schema_mod.schema_version) == len(schema_mod.MIGRATIONS)
    finally:
        await store.close()


async def test_a_failing_migration_rolls_back_whole(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "c.db"
    store = await SQLiteStore.open(path)
    await store.close()
    bad = ("m999_broken", "CREATE TABLE half_done (x INTEGER);\nTHIS IS NOT SQL;")
    monkeypatch.setattr(schema_mod, "MIGRATIONS", [*schema_mod.MIGRATIONS, bad])
    with pytest.raises(sqlite3.OperationalError):
        await SQLiteStore.open(path)
    assert "half_done" not in sqlite_objects(path)["table"]
    monkeypatch.setattr(schema_mod, "MIGRATIONS", schema_mod.MIGRATIONS[:-1])
    store = await SQLiteStore.open(path)  # still usable by the release it was made with
    await store.close()


async def test_a_file_from_a_newer_release_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    store = await SQLiteStore.open(path)
    await sql_write(store, "INSERT INTO schema_migrations VALUES (9999, 'm9999_future', 'now')")
    await store.close()
    with pytest.raises(schema_mod.SchemaTooNewError, match="upgrade"):
        await SQLiteStore.open(path)


async def test_stores_opening_a_blank_file_at_once_all_work(tmp_path: Path) -> None:
    for round_ in range(30):
        path = tmp_path / f"c{round_}.db"
        stores = await asyncio.gather(*(SQLiteStore.open(path) for _ in range(4)))
        try:
            _, conv_id = await make_conversation(stores[0])
            assert (await stores[3].get_conversation(conv_id)).id == conv_id
        finally:
            for s in stores:
                await s.close()


OPENER = """
import asyncio, os, sys, time
from mcp_server_conversations.storage import SQLiteStore
async def main():
    while not os.path.exists(sys.argv[2]):
        time.sleep(0.001)
    store = await SQLiteStore.open(sys.argv[1])
    await store.create_agent(name="p", model=None, system="s", context_window_limit=None, blocks=[])
    await store.close()
asyncio.run(main())
"""


@pytest.mark.slow
def test_processes_starting_together_on_a_blank_file_all_start(tmp_path: Path) -> None:
    """Replicas or several stdio clients launched at once: SQLite answers "database is locked"
    without waiting while one of them switches the new file to WAL; none may crash for it."""
    for round_ in range(2):
        go = tmp_path / f"go{round_}"
        db = tmp_path / f"p{round_}.db"
        procs = [
            subprocess.Popen([sys.executable, "-c", OPENER, str(db), str(go)], stderr=subprocess.PIPE, text=True)
            for _ in range(4)
        ]
        time.sleep(0.5)  # let them all reach the barrier
        go.touch()
        for p in procs:
            _, err = p.communicate(timeout=60)
            assert p.returncode == 0, err
        assert sqlite_objects(db)["table"] >= M001_TABLES
        con = sqlite3.connect(db)
        assert con.execute("SELECT count(*) FROM agents").fetchone()[0] == 4
        con.close()


@pytest.mark.sqlite_only("FTS5's triggers (PostgreSQL indexes a message as it is written; none is rewritten)")
async def test_fts_follows_insert_update_and_delete(store: SQLiteStore) -> None:
    _, conv_id = await make_conversation(store)
    (msg,) = await store.append_messages(conv_id, [NewMessage("user_message", "user", content="a kumquat pie")])
    row = await sql_one(store, "SELECT rowid FROM messages WHERE id = ?", (msg.id,))
    assert await fts_rowids(store, "kumquat") == {row[0]}
    await sql_write(store, "UPDATE messages SET content = 'a durian pie' WHERE rowid = ?", (row[0],))
    assert await fts_rowids(store, "kumquat") == set()
    assert await fts_rowids(store, "durian") == {row[0]}
    assert_fts_in_sync(store.location)
    await store.delete_conversation(conv_id)
    assert await fts_rowids(store, "durian") == set()
    assert (await sql_one(store, "SELECT count(*) FROM messages"))[0] == 0
    assert_fts_in_sync(store.location)


async def test_system_messages_are_not_indexed_but_tool_calls_and_reasoning_are(store: SQLiteStore) -> None:
    agent = await store.create_agent(name="a", model=None, system="s", context_window_limit=None, blocks=[])
    conv = await store.create_conversation(agent.id, model=None, summary=None, system_text="zebrafish prompt")
    await store.append_messages(
        conv.id,
        [
            NewMessage("reasoning_message", "assistant", reasoning="thinking about marmalade"),
            NewMessage(
                "tool_call_message",
                "assistant",
                tool_calls=[{"tool_call_id": "t1", "name": "core_memory_append", "arguments": '{"x": "quince"}'}],
            ),
        ],
    )
    assert await fts_rowids(store, "zebrafish") == set()
    assert len(await fts_rowids(store, "marmalade")) == 1
    assert len(await fts_rowids(store, "quince")) == 1
    assert len(await fts_rowids(store, "core_memory_append")) == 1


async def test_append_messages_keeps_order_context_and_count(store: SQLiteStore) -> None:
    _, conv_id = await make_conversation(store)
    msgs = await store.append_messages(conv_id, [NewMessage("user_message", "user", content=f"m{i}") for i in range(5)])
    out = await store.append_messages(conv_id, [NewMessage("user_message", "user", content="x")], in_context=False)
    assert [m.content for m in msgs] == [f"m{i}" for i in range(5)]
    assert all(m.in_context and m.conversation_id == conv_id for m in msgs)
    assert out[0].in_context is False
    context = await store.context_messages(conv_id)
    assert [m.message_type for m in context][0] == "system_message"
    assert [m.content for m in context[1:]] == [f"m{i}" for i in range(5)]
    assert (await store.get_conversation(conv_id)).message_count == 6


async def test_append_to_a_missing_conversation_is_not_found_and_writes_nothing(store: SQLiteStore) -> None:
    with pytest.raises(NotFoundError):
        await store.append_messages("conv-missing", [NewMessage("user_message", "user", content="x")])
    assert (await sql_one(store, "SELECT count(*) FROM messages"))[0] == 0


async def test_a_write_that_raises_is_rolled_back(store: SQLiteStore) -> None:
    agent_id, _ = await make_conversation(store)

    def fails(db: sqlite3.Connection) -> None:
        db.execute("UPDATE agents SET name = 'changed' WHERE id = ?", (agent_id,))
        raise RuntimeError("boom")

    async def fails_on_postgres(db: Any) -> None:  # asyncpg: the same unit of work, awaited
        await db.execute("UPDATE agents SET name = 'changed' WHERE id = $1", agent_id)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await store.database.write(fails_on_postgres if on_pg(store) else fails)
    assert (await store.get_agent(agent_id)).name == "a"


async def test_packed_rowids_round_trip() -> None:
    ids = [1, 2, 2**40, 7]
    assert unpack(pack(ids)) == ids
    assert unpack(b"") == [] and unpack(None) == []


async def test_delete_agent_removes_every_row_it_owns(store: SQLiteStore) -> None:
    agent_id, conv_id = await make_conversation(store)
    await store.append_messages(conv_id, [NewMessage("user_message", "user", content="gone soon")])
    await store.create_run("run-1", conv_id, agent_id, status="completed", idempotency_key=None)
    await store.delete_agent(agent_id)
    for table in ("agents", "blocks", "conversations", "messages", "runs"):
        assert (await sql_one(store, f"SELECT count(*) FROM {table}"))[0] == 0, table
    assert_fts_in_sync(store.location)
    with pytest.raises(NotFoundError):
        await store.delete_agent(agent_id)


async def in_transaction(store: SQLiteStore) -> bool:
    return await store.database.on_writer(lambda db: db.in_transaction)


async def test_a_writer_cancelled_while_waiting_for_begin_leaves_no_open_transaction(tmp_path: Path) -> None:
    """Another process holds the write lock; our BEGIN waits in busy_timeout and the awaiting task
    is cancelled (as an MCP request cancellation does, through an anyio scope). The unit of work
    still runs whole in the writer thread once the lock frees, and later writes work."""
    path = tmp_path / "c.db"
    store = await SQLiteStore.open(path)
    try:
        agent_id, _ = await make_conversation(store)
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")
        entered = asyncio.Event()

        def rename(to: str) -> Callable[[sqlite3.Connection], object]:
            return lambda db: db.execute("UPDATE agents SET name = ? WHERE id = ?", (to, agent_id))

        async def doomed() -> None:
            entered.set()
            await store.database.write(rename("doomed"))

        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(doomed)
                await entered.wait()
                await asyncio.sleep(0.2)  # doomed's unit is now inside BEGIN IMMEDIATE, blocked by `other`
                scope.cancel()
                other.execute("COMMIT")  # sync, so it runs before the cancellation lands here
        other.close()
        await store.database.write(rename("after"))  # queued behind doomed's unit, which ran whole
        assert (await store.get_agent(agent_id)).name == "after"
        assert not await in_transaction(store)
    finally:
        await store.close()
    con = sqlite3.connect(path)
    assert con.execute("SELECT name FROM agents").fetchone() == ("after",)
    con.close()


@pytest.mark.sqlite_only("SQLite's writer and reader threads (tests/test_postgres.py covers PostgreSQL's units)")
@pytest.mark.parametrize("how", ["anyio", "asyncio"])
async def test_a_writer_cancelled_mid_unit_commits_whole_before_the_next_writer_runs(
    store: SQLiteStore, how: str
) -> None:
    """Cancelling the task that awaits a write cannot cut the transaction in half: the writer thread
    finishes the unit (every statement of it committed), then runs the next one."""
    agent_id, _ = await make_conversation(store)
    inside, release = threading.Event(), threading.Event()

    def unit(db: sqlite3.Connection) -> None:
        db.execute("UPDATE agents SET name = 'first half' WHERE id = ?", (agent_id,))
        inside.set()
        release.wait(10)
        db.execute("UPDATE agents SET name = name || ', second half' WHERE id = ?", (agent_id,))

    scope = anyio.CancelScope()

    async def doomed() -> None:
        with scope:
            await store.database.write(unit)

    async def follower() -> None:
        await store.database.write(lambda db: db.execute("INSERT INTO schema_migrations VALUES (-1, 'marker', 'now')"))

    async def cancel_midway(cancel: Callable[[], None]) -> asyncio.Task[None]:
        await asyncio.to_thread(inside.wait, 10)
        second = asyncio.ensure_future(follower())
        await asyncio.sleep(0)
        cancel()
        await asyncio.sleep(0.05)
        assert not second.done()  # it waits for the unit in the writer thread
        release.set()
        return second

    if how == "asyncio":
        task = asyncio.ensure_future(doomed())
        second = await cancel_midway(task.cancel)
        with pytest.raises(asyncio.CancelledError):
            await task
        await second
    else:
        async with anyio.create_task_group() as tg:
            tg.start_soon(doomed)
            second = await cancel_midway(scope.cancel)
        await second
    assert (await store.get_agent(agent_id)).name == "first half, second half"
    assert (await sql_one(store, "SELECT count(*) FROM schema_migrations WHERE version = -1"))[0] == 1
    assert not await in_transaction(store)


@pytest.mark.sqlite_only("SQLite's writer and reader threads (tests/test_postgres.py covers PostgreSQL's units)")
async def test_reads_see_only_committed_rows_and_a_writer_sees_its_own(store: SQLiteStore) -> None:
    _, conv_id = await make_conversation(store)
    count = "SELECT count(*) FROM messages WHERE conversation_id = ?"
    before = (await sql_one(store, count, (conv_id,)))[0]
    inside, outside = threading.Event(), threading.Event()
    seen_by_writer: list[int] = []

    def writer(db: sqlite3.Connection) -> None:
        db.execute(
            "INSERT INTO messages (id, agent_id, conversation_id, home_conversation_id, message_type, role, "
            "content, created_at) SELECT 'message-x', agent_id, id, id, 'user_message', 'user', 'half done', "
            "created_at FROM conversations WHERE id = ?",
            (conv_id,),
        )
        seen_by_writer.append(db.execute(count, (conv_id,)).fetchone()[0])  # its own transaction's row
        inside.set()
        outside.wait(10)

    task = asyncio.create_task(store.database.write(writer))
    await asyncio.to_thread(inside.wait, 10)
    assert (await sql_one(store, count, (conv_id,)))[0] == before  # another unit: not yet committed
    outside.set()
    await task
    assert seen_by_writer == [before + 1]
    assert (await sql_one(store, count, (conv_id,)))[0] == before + 1


# -- migration m006: a file written before it (search_text stored) upgrades in place --

BEFORE_M006 = [name for name, _ in schema_mod.MIGRATIONS].index("m006_computed_search_text")


async def test_a_pre_m006_file_upgrades_without_losing_search(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "old.db"
    with monkeypatch.context() as m:
        m.setattr(schema_mod, "MIGRATIONS", schema_mod.MIGRATIONS[:BEFORE_M006])
        store = await SQLiteStore.open(db)
        # The agent as that release wrote it (today's create_agent writes columns added since).
        await sql_write(
            store, "INSERT INTO agents (id, name, system, created_at) VALUES ('agent-old', 'a', 's', '2025-01-01')"
        )
        agent = SimpleNamespace(id="agent-old")
        conv = await store.create_conversation(agent.id, model=None, summary=None, system_text="zebra prompt")
        old_rows = [  # rows as the old code wrote them: search_text = the indexed text
            ("user_message", "the pottery class starts tuesday", "the pottery class starts tuesday"),
            ("reasoning_message", None, "thinking about glazes"),
            ("assistant_message", "kilns are hot", "kilns are hot\nreasoning about firing"),
        ]
        await store.database.write(
            lambda w: w.executemany(
                "INSERT INTO messages (id, agent_id, conversation_id, home_conversation_id, message_type, role, "
                "content, created_at, search_text) VALUES (?, ?, ?, ?, ?, 'user', ?, '2025-01-01', ?)",
                [
                    (f"message-old-{i}", agent.id, conv.id, conv.id, kind, content, extra)
                    for i, (kind, content, extra) in enumerate(old_rows)
                ],
            )
        )
        await store.close()

    store = await SQLiteStore.open(db)  # applies m006 and later
    try:
        await store.append_messages(conv.id, [NewMessage("user_message", "user", content="painted bowls")])
        found = await store.search(
            agent_id=agent.id,
            terms=["glaze", "pottery", "firing", "paint"],
            roles=None,
            start=None,
            end=None,
            conversation_id=None,
            limit=10,
        )
        assert {r.message_id for r in found} >= {"message-old-0", "message-old-1", "message-old-2"}
        assert any(r.content == "painted bowls" for r in found)
    finally:
        await store.close()
    assert_fts_in_sync(db)
    con = sqlite3.connect(db)
    extra = dict(con.execute("SELECT id, search_extra FROM messages WHERE id LIKE 'message-old-%'").fetchall())
    assert extra == {
        "message-old-0": None,
        "message-old-1": "thinking about glazes",
        "message-old-2": "kilns are hot\nreasoning about firing",
    }
    system = con.execute("SELECT search_text FROM messages WHERE message_type = 'system_message'").fetchall()
    assert system == [(None,)]  # system prompts stay out of search
    con.close()
