"""Bulk import (storage/bulk.py): the same rows, context and search as append_messages, in one go."""

from __future__ import annotations

import asyncio

import pytest
from foundation_helpers import assert_fts_in_sync, on_pg, sql_one

from mcp_server_conversations.errors import NotFoundError
from mcp_server_conversations.storage import NewMessage, SQLiteStore


async def two_conversations(store: SQLiteStore) -> tuple[str, str, str]:
    agent = await store.create_agent(name="a", model=None, system="s", context_window_limit=None, blocks=[])
    a = await store.create_conversation(agent.id, model=None, summary=None, system_text="sys")
    b = await store.create_conversation(agent.id, model=None, summary=None, system_text="sys")
    return agent.id, a.id, b.id


def user(text: str) -> NewMessage:
    return NewMessage(message_type="user_message", role="user", content=text)


async def test_import_messages_extends_context_counts_and_indexes_for_search(store: SQLiteStore) -> None:
    agent_id, a, b = await two_conversations(store)
    await store.append_messages(a, [user("before the import")])
    stored = await store.import_messages(
        [
            (a, [user("pottery class on tuesday"), user("glazing the bowls")]),
            (b, [user("painting lessons")]),
            (a, [user("kiln firing schedule")]),
        ]
    )
    assert stored == 4
    ctx_a = [m.content for m in await store.context_messages(a)]
    assert ctx_a == [
        "sys",
        "before the import",
        "pottery class on tuesday",
        "glazing the bowls",
        "kiln firing schedule",
    ]
    assert [m.content for m in await store.context_messages(b)] == ["sys", "painting lessons"]
    assert (await store.get_conversation(a)).message_count == 4
    assert (await store.get_conversation(b)).message_count == 1

    async def found(word: str) -> list[str]:
        rows = await store.search(
            agent_id=agent_id, terms=[word], roles=None, start=None, end=None, conversation_id=None, limit=10
        )
        return [r.content for r in rows]

    assert await found("glaze") == ["glazing the bowls"]  # stemmed, indexed by the bulk INSERT … SELECT
    assert await found("painted") == ["painting lessons"]
    # The row trigger is back in charge after the import: a normal append is indexed too.
    await store.append_messages(b, [user("glazed vases")])
    assert sorted(await found("glaze")) == ["glazed vases", "glazing the bowls"]
    if not on_pg(store):
        assert (await sql_one(store, "SELECT count(*) FROM fts_deferred"))[0] == 0


async def test_import_into_missing_conversation_stores_nothing(store: SQLiteStore) -> None:
    _, a, _ = await two_conversations(store)
    before = (await sql_one(store, "SELECT count(*) FROM messages"))[0]
    with pytest.raises(NotFoundError):
        await store.import_messages([(a, [user("kept?")]), ("conv-missing", [user("x")])])
    assert (await sql_one(store, "SELECT count(*) FROM messages"))[0] == before
    assert await store.import_messages([]) == 0


async def test_imported_rows_can_be_listed_forked_and_deleted(store: SQLiteStore) -> None:
    agent_id, a, _ = await two_conversations(store)
    await store.import_messages([(a, [user(f"message number {i}") for i in range(30)])])
    page, _ = await store.list_history(a, limit=100, after=None, desc=False, types=None, include_system=False)
    assert [m.content for m in page] == [f"message number {i}" for i in range(30)]
    fork = await store.fork_conversation(a, None, "sys2")
    assert fork.message_count == 30
    await store.delete_conversation(a)
    rows = await store.search(
        agent_id=agent_id, terms=["number"], roles=None, start=None, end=None, conversation_id=None, limit=100
    )
    assert len(rows) == 30 and {r.conversation_id for r in rows} == {fork.id}


async def writer_pragma(store: SQLiteStore, name: str) -> int:
    """A setting of the writing connection (the one bulk_load tunes; reads use another)."""
    return await store.database.on_writer(lambda db: db.execute(f"PRAGMA {name}").fetchone()[0])


@pytest.mark.sqlite_only("bulk_load's PRAGMAs")
async def test_bulk_load_keeps_search_in_sync_and_restores_its_settings(store: SQLiteStore) -> None:
    _, a, b = await two_conversations(store)
    before = [await writer_pragma(store, p) for p in ("wal_autocheckpoint", "cache_size")]
    async with store.bulk_load():
        assert await writer_pragma(store, "wal_autocheckpoint") > before[0]
        for i in range(5):
            await store.import_messages([(a, [user(f"batch {i} pottery")]), (b, [user(f"batch {i} glaze")])])
    assert [await writer_pragma(store, p) for p in ("wal_autocheckpoint", "cache_size")] == before
    assert_fts_in_sync(store.location)
    assert (
        len(
            await store.search(
                agent_id=(await store.get_conversation(a)).agent_id,
                terms=["pottery"],
                roles=None,
                start=None,
                end=None,
                conversation_id=None,
                limit=10,
            )
        )
        == 5
    )


async def test_import_mixes_plain_and_structured_messages_in_order(store: SQLiteStore) -> None:
    agent_id, a, _ = await two_conversations(store)
    call = {"tool_call_id": "call_1", "name": "core_memory_append", "arguments": '{"label": "human"}'}
    await store.import_messages(
        [
            (
                a,
                [
                    user("plain first"),
                    NewMessage("reasoning_message", "assistant", reasoning="pondering kumquats", model="openai/x"),
                    NewMessage("tool_call_message", "assistant", tool_calls=[call], run_id="run-1"),
                    user("plain last"),
                ],
            )
        ]
    )
    page, _ = await store.list_history(a, limit=10, after=None, desc=False, types=None, include_system=False)
    assert [m.message_type for m in page] == ["user_message", "reasoning_message", "tool_call_message", "user_message"]
    assert page[1].reasoning == "pondering kumquats" and page[1].model == "openai/x"
    assert page[2].tool_calls and page[2].tool_calls[0].name == "core_memory_append" and page[2].run_id == "run-1"
    for word, kind in (("kumquat", "reasoning_message"), ("core_memory_append", "tool_call_message")):
        (hit,) = await store.search(
            agent_id=agent_id, terms=[word], roles=None, start=None, end=None, conversation_id=None, limit=10
        )
        assert hit.message_type == kind
    assert_fts_in_sync(store.location)


async def test_an_import_and_appends_racing_on_one_conversation_keep_keys_in_commit_order(store: SQLiteStore) -> None:
    """Keys are taken after the conversation is locked (PostgreSQL allocates them before COPY): the
    history, read in key order, is the order the writes committed, and the context holds them all."""
    _, a, _ = await two_conversations(store)
    writes = []
    for i in range(8):
        if i < 4:
            writes.append(store.import_messages([(a, [user(f"import {i} row {j}") for j in range(50)])]))
        writes.append(store.append_messages(a, [user(f"append {i}")]))
    await asyncio.gather(*writes)
    page, _ = await store.list_history(a, limit=1000, after=None, desc=False, types=None, include_system=False)
    texts = [m.content or "" for m in page]
    assert len(texts) == 4 * 50 + 8
    for i in range(4):  # each import's rows together and in order
        at = texts.index(f"import {i} row 0")
        assert texts[at : at + 50] == [f"import {i} row {j}" for j in range(50)]
    context = await store.context_messages(a)
    assert [m.content for m in context[1:]] == texts  # the context in the same order
    assert (await store.get_conversation(a)).message_count == len(texts)


async def test_bulk_load_on_postgres_leaves_statistics_for_the_planner(store: SQLiteStore) -> None:
    if not on_pg(store):
        pytest.skip("PostgreSQL's planner statistics")
    _, a, _ = await two_conversations(store)
    async with store.bulk_load():
        await store.import_messages([(a, [user(f"row {i}") for i in range(100)])])
    row = await sql_one(store, "SELECT n_live_tup, last_analyze FROM pg_stat_user_tables WHERE relname = 'messages'")
    assert row["last_analyze"] is not None
