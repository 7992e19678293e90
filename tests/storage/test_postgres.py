"""What only the PostgreSQL backend has: several pools (replicas) on one database, row locks instead
of one writer, presence by advisory locks, LISTEN/NOTIFY wake-ups, and its own errors and migrations."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
from pg_helpers import TestDatabase
from runtime_helpers import eventually

from mcp_server_conversations.config import Settings, redacted
from mcp_server_conversations.errors import DuplicateRunError, StorageUnavailableError
from mcp_server_conversations.storage import NewMessage, Store, open_store
from mcp_server_conversations.storage.schema import SchemaTooNewError


@pytest.fixture
def pg(pg_database: TestDatabase | None) -> TestDatabase:
    if pg_database is None:
        pytest.skip("about PostgreSQL")
    return pg_database


@pytest.fixture(params=["postgres"])
def backend(request: pytest.FixtureRequest) -> str:  # this module is PostgreSQL's only
    return str(request.param)


async def two_stores(url: str) -> tuple[Store, Store]:
    """Two stores on one database: two pools, as two replicas have."""
    return await open_store(url), await open_store(url)


async def conversation(store: Store) -> tuple[str, str]:
    agent = await store.create_agent(
        name="a",
        model=None,
        system="sys",
        context_window_limit=None,
        blocks=[{"label": "notes", "value": "", "limit": 10_000}],
    )
    conv = await store.create_conversation(agent.id, model=None, summary=None, system_text="sys")
    return agent.id, conv.id


def user(text: str, **kw: object) -> NewMessage:
    return NewMessage("user_message", "user", content=text, **kw)  # type: ignore[arg-type]


async def test_the_postgres_store_offers_exactly_the_contract(pg: TestDatabase) -> None:
    from mcp_server_conversations.storage.postgres import PostgresStore

    contract = {n for n in vars(Store) if not n.startswith("_")} | set(Store.__annotations__)
    offered = {n for n in dir(PostgresStore) if not n.startswith("_")} | {"location"}
    assert offered - {"open", "bulk_load", "import_messages", "database"} == contract


async def test_a_url_is_kept_and_logged_without_its_password() -> None:
    settings = Settings(db="postgresql://me:secret@db.example:5432/conv?sslmode=require")
    assert settings.resolved_db() == "postgresql://me:secret@db.example:5432/conv?sslmode=require"
    assert redacted(settings.resolved_db()) == "postgresql://me:***@db.example:5432/conv?sslmode=require"
    assert Settings(db="postgres://db/x").resolved_db() == "postgres://db/x"
    assert str(Settings(db="~/c.db").resolved_db()).endswith("/c.db")


async def test_an_unreachable_server_is_storage_unavailable() -> None:
    with pytest.raises(StorageUnavailableError):
        await open_store("postgresql://postgres@127.0.0.1:1/nothing")


async def test_a_database_of_a_newer_schema_is_refused(pg: TestDatabase) -> None:
    pg.execute("INSERT INTO schema_migrations (version, name) VALUES (999, 'from the future')")
    try:
        with pytest.raises(SchemaTooNewError):
            await open_store(pg.url)
    finally:
        pg.execute("DELETE FROM schema_migrations WHERE version = 999")


async def test_a_cancelled_write_commits_whole_or_not_at_all(pg: TestDatabase) -> None:
    store = await open_store(pg.url)
    try:
        _, conv = await conversation(store)
        for delay in (0, 0.001, 0.003, 0.01):
            task = asyncio.ensure_future(store.append_messages(conv, [user("a"), user("b"), user("c")]))
            await asyncio.sleep(delay)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        # A unit of work is shielded from its caller's cancellation: wait for the last one to end (on a
        # loaded machine that can be well after the cancel).
        await eventually(lambda: not store.database._tasks, "the cancelled writes' units to end")
        history, _ = await store.list_history(conv, limit=100, after=None, desc=False, types=None, include_system=False)
        contents = [m.content for m in history]
        assert contents == ["a", "b", "c"] * (len(contents) // 3)  # whole units only
        context = await store.context_messages(conv)
        assert [m.content for m in context[1:]] == contents
        assert (
            pg.rows(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND state LIKE 'idle in transaction%'"
            )[0][0]
            == 0
        )
    finally:
        await store.close()


async def test_parallel_block_edits_through_two_pools_lose_nothing(pg: TestDatabase) -> None:
    a, b = await two_stores(pg.url)
    try:
        agent_id, _ = await conversation(a)

        async def append(store: Store, i: int) -> None:
            await store.edit_block_value(agent_id, "notes", lambda cur, i=i: (cur.value if cur else "") + f"[{i}]")

        await asyncio.gather(*(append(a if i % 2 else b, i) for i in range(16)))
        value = (await a.get_block(agent_id, "notes")).value  # type: ignore[union-attr]
        assert sorted(value.strip("[]").split("][")) == sorted(str(i) for i in range(16))
    finally:
        await a.close()
        await b.close()


async def test_two_replicas_starting_runs_at_once_take_turns(pg: TestDatabase) -> None:
    a, b = await two_stores(pg.url)
    try:
        await a.presence().join()
        await b.presence().join()
        agent_id, conv = await conversation(a)

        async def start(store: Store, run_id: str) -> bool:
            started = await store.start_run(
                run_id,
                conv,
                agent_id,
                [user(run_id, run_id=run_id)],
                model="m",
                started_at="2026-01-01T00:00:00Z",
                create=True,
                owner=store.presence().owner,
            )
            return started is not None

        won = await asyncio.gather(*(start(a if i % 2 else b, f"run-{i}") for i in range(6)))
        winners = [i for i, w in enumerate(won) if w]
        assert len({i % 2 for i in winners}) == 1  # only one replica got the turn (and none interleaved)
        ctx = [m.content for m in await a.context_messages(conv)][1:]
        assert sorted(ctx) == sorted(f"run-{i}" for i in winners)
    finally:
        await a.close()
        await b.close()


async def test_one_idempotency_key_through_two_pools_makes_one_run(pg: TestDatabase) -> None:
    a, b = await two_stores(pg.url)
    try:
        agent_id, conv = await conversation(a)
        results = await asyncio.gather(
            a.create_run("run-a", conv, agent_id, status="queued", idempotency_key="k", owner="x"),
            b.create_run("run-b", conv, agent_id, status="queued", idempotency_key="k", owner="y"),
            return_exceptions=True,
        )
        made = [r for r in results if not isinstance(r, BaseException)]
        refused = [r for r in results if isinstance(r, DuplicateRunError)]
        assert len(made) == 1 and len(refused) == 1
        assert refused[0].run_id == made[0].id  # type: ignore[union-attr]
    finally:
        await a.close()
        await b.close()


async def test_presence_tells_a_live_replica_from_a_killed_one(pg: TestDatabase) -> None:
    store = await open_store(pg.url)
    try:
        me = store.presence()
        assert await me.join() is True  # alone
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", HOLDER, pg.url, stdout=subprocess.PIPE, env=dict(os.environ)
        )
        try:
            owner = (await asyncio.wait_for(child.stdout.readline(), 60)).decode().strip()  # type: ignore[union-attr]
            assert owner
            assert await me.alive(owner)
            other = await open_store(pg.url)
            try:
                assert await other.presence().join() is False  # the holder and `me` are there
            finally:
                await other.close()
        finally:
            child.kill()  # kill -9: the server releases the lock with the connection
            await child.wait()
        dead = False
        for _ in range(500):
            if dead := not await me.alive(owner):
                break
            await asyncio.sleep(0.02)
        assert dead
    finally:
        await store.close()


HOLDER = """
import asyncio, sys
from mcp_server_conversations.storage import open_store
async def main():
    store = await open_store(sys.argv[1])
    await store.presence().join()
    print(store.presence().owner, flush=True)
    await asyncio.sleep(3600)
asyncio.run(main())
"""


async def test_a_dead_replicas_turn_is_taken_and_its_run_interrupted(pg: TestDatabase) -> None:
    store = await open_store(pg.url)
    try:
        await store.presence().join()
        agent_id, conv = await conversation(store)
        await store.create_run("run-ghost", conv, agent_id, status="running", idempotency_key=None, owner="ghost")
        await store.append_messages(conv, [user("ghost input", run_id="run-ghost")])
        pg.execute("INSERT INTO turns VALUES (?, 'run-ghost', 'ghost', '2026-01-01T00:00:00Z')", (conv,))
        started = await store.start_run(
            "run-new",
            conv,
            agent_id,
            [user("mine", run_id="run-new")],
            model="m",
            started_at="2026-01-01T00:00:01Z",
            create=True,
            owner=store.presence().owner,
        )
        assert started is not None
        ghost = await store.get_run("run-ghost")
        assert (ghost.status, ghost.stop_reason) == ("interrupted", "interrupted")
        assert [m.content for m in await store.context_messages(conv)] == ["sys", "mine"]
    finally:
        await store.close()


async def test_a_released_turn_wakes_a_waiter_in_another_replica(pg: TestDatabase) -> None:
    a, b = await two_stores(pg.url)
    try:
        await a.presence().join()
        _, conv = await conversation(a)
        assert await a.claim_turn(conv, "compaction-1", a.presence().owner)
        assert not await b.claim_turn(conv, "compaction-2", b.presence().owner)  # a live replica holds it
        waiter = asyncio.ensure_future(b.wait_turn(conv, 30))
        await asyncio.sleep(0.2)  # the waiter listens
        assert not waiter.done()
        await a.release_turn(conv, "compaction-1")
        await asyncio.wait_for(waiter, 10)  # woken by the notification, not by its 30 s
        assert await b.claim_turn(conv, "compaction-2", b.presence().owner)
    finally:
        await a.close()
        await b.close()


async def test_a_cancel_request_and_a_run_end_wake_their_waiters(pg: TestDatabase) -> None:
    a, b = await two_stores(pg.url)
    try:
        agent_id, conv = await conversation(a)
        await a.create_run("run-1", conv, agent_id, status="running", idempotency_key=None, owner="owner-a")
        asked = asyncio.ensure_future(a.wait_cancel_requests("owner-a", 30))
        ended = asyncio.ensure_future(b.wait_run_end("run-1", 30))
        await asyncio.sleep(0.2)
        assert await b.request_cancel("run-1")
        await asyncio.wait_for(asked, 10)
        assert await a.cancel_requests("owner-a") == ["run-1"]
        assert not ended.done()
        await a.finish_run("run-1", conv, {"status": "cancelled", "stop_reason": "cancelled"}, abandon=True)
        await asyncio.wait_for(ended, 10)
    finally:
        await a.close()
        await b.close()


def test_the_sqlite_path_never_imports_asyncpg(tmp_path) -> None:
    probe = (
        "import asyncio, sys\n"
        "from mcp_server_conversations.storage import open_store\n"
        "async def main():\n"
        "    s = await open_store(sys.argv[1]); await s.close()\n"
        "asyncio.run(main())\n"
        "assert 'asyncpg' not in sys.modules, 'asyncpg imported'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path / "c.db")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


async def test_both_schemas_have_the_same_tables_and_columns(pg: TestDatabase, tmp_path) -> None:
    """Each table has the same columns on both backends, but for what each spells its own way."""
    import sqlite3

    sqlite_store = await open_store(tmp_path / "c.db")
    await sqlite_store.close()
    con = sqlite3.connect(tmp_path / "c.db")
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    tables -= {"fts_deferred", "schema_migrations"} | {t for t in tables if t.startswith("messages_fts")}
    tables -= {"resource_changes"}  # SQLite's change feed; PostgreSQL notifies instead (NOTIFY conv_change)
    lite = {t: {r[1] for r in con.execute(f"PRAGMA table_xinfo({t})")} for t in tables}
    con.close()
    rows = pg.rows(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' "
        "AND table_name <> 'schema_migrations'"
    )
    post: dict[str, set[str]] = {}
    for table, column in rows:
        post.setdefault(table, set()).add(column)
    own = {("blocks", "seq"), ("runs", "seq"), ("messages", "search_tsv")}  # explicit orders; the tsvector
    assert {t: c - {x for tt, x in own if tt == t} for t, c in post.items()} == {
        t: c - {"search_text"}
        for t, c in lite.items()  # SQLite's computed column
    }


async def test_a_message_committed_after_a_later_one_is_still_embedded(pg: TestDatabase) -> None:
    """Keys are taken at insert, not commit: the indexer's cursor can pass a row that commits later."""
    import asyncpg

    store = await open_store(pg.url)
    late = await asyncpg.connect(pg.url)
    try:
        agent_id, conv = await conversation(store)
        tx = late.transaction()
        await tx.start()
        await late.execute(
            "INSERT INTO messages (id, agent_id, conversation_id, home_conversation_id, message_type, role, content, "
            "created_at) VALUES ('message-late', $1, $2, $2, 'user_message', 'user', 'late one', '2026')",
            agent_id,
            conv,
        )
        (early,) = await store.append_messages(conv, [user("early one")])
        pending = await store.messages_missing_embeddings("emb", after=0)
        assert [p.id for p in pending] == [early.id]
        await store.save_embeddings("emb", [(early.id, 1, b"\x00\x00\x80?")])
        cursor = pending[-1].rowid
        await tx.commit()
        assert [p.id for p in await store.messages_missing_embeddings("emb", after=cursor)] == ["message-late"]
    finally:
        await late.close()
        await store.close()
