"""Forks share message rows with their source; deletes reclaim rows no fork still holds."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from foundation_helpers import assert_fts_in_sync, count_rows, remove_from_context, say, sql_one, turn

from mcp_server_conversations.config import Settings
from mcp_server_conversations.errors import NotFoundError, ValidationError
from mcp_server_conversations.models import Deleted
from mcp_server_conversations.service.conversations import ConversationService
from mcp_server_conversations.storage import NewMessage, SQLiteStore


@pytest.fixture
async def svc(settings: Settings, store: SQLiteStore) -> AsyncIterator[ConversationService]:
    yield ConversationService(store, settings)


async def history(svc: ConversationService, conv_id: str, **kw) -> list:
    return (await svc.list_messages(conv_id, 1000, **kw)).messages


async def context_ids(store: SQLiteStore, conv_id: str) -> list[str]:
    return [m.id for m in await store.context_messages(conv_id)]


# -- forking --


async def test_a_whole_fork_starts_with_the_source_context_behind_a_fresh_system_message(
    svc: ConversationService, store: SQLiteStore
) -> None:
    src = await svc.create_conversation(model="openai/m", summary="trip")
    msgs = await turn(store, src.id, "plan a trip to Lisbon", "Sure: trams, pastries, fado")
    await svc.update_memory_block(None, "human", value="prefers trains")  # after the source's system message
    fork = await svc.fork_conversation(src.id)
    assert (fork.agent_id, fork.model, fork.message_count) == (src.agent_id, "openai/m", 2)
    assert fork.forked_from is not None
    assert (fork.forked_from.conversation_id, fork.forked_from.message_id) == (src.id, None)
    listed = await history(svc, fork.id)
    assert [(m.id, m.conversation_id, m.content) for m in listed] == [
        (m.id, src.id, m.content) for m in msgs
    ]  # same ids, their original conversation_id
    assert all(m.in_context for m in listed)
    fork_ctx = await store.context_messages(fork.id)
    src_ctx = await store.context_messages(src.id)
    assert [m.id for m in fork_ctx[1:]] == [m.id for m in src_ctx[1:]]
    assert fork_ctx[0].message_type == "system_message" and fork_ctx[0].id != src_ctx[0].id
    assert fork_ctx[0].conversation_id == fork.id
    assert "prefers trains" in (fork_ctx[0].content or "")
    assert "prefers trains" not in (src_ctx[0].content or "")


async def test_fork_through_a_message_is_inclusive(svc: ConversationService, store: SQLiteStore) -> None:
    src = await svc.create_conversation()
    msgs = await say(store, src.id, "one", "two", "three", "four")
    fork = await svc.fork_conversation(src.id, msgs[1].id)
    assert fork.forked_from is not None and fork.forked_from.message_id == msgs[1].id
    assert [m.content for m in await history(svc, fork.id)] == ["one", "two"]
    assert fork.message_count == 2
    assert (await svc.get_conversation(src.id)).message_count == 4


async def test_fork_through_a_message_not_in_context_is_a_validation_error(
    svc: ConversationService, store: SQLiteStore
) -> None:
    src = await svc.create_conversation()
    other = await svc.create_conversation()
    msgs = await say(store, src.id, "one", "two", "three")
    (elsewhere,) = await say(store, other.id, "elsewhere")
    (outside,) = await store.append_messages(
        src.id, [NewMessage("user_message", "user", content="x")], in_context=False
    )
    await remove_from_context(store, src.id, [msgs[0].id], mark_err=False)  # compacted out
    system_id = (await store.context_messages(src.id))[0].id
    for bad in (msgs[0].id, outside.id, elsewhere.id, system_id, "message-nope", ""):
        with pytest.raises(ValidationError, match="not in the context window") as exc:
            await svc.fork_conversation(src.id, bad)
        assert exc.value.field == "message_id"
    ok = await svc.fork_conversation(src.id, msgs[2].id)
    assert [m.content for m in await history(svc, ok.id)] == ["two", "three"]
    with pytest.raises(NotFoundError, match="conversation conv-nope not found"):
        await svc.fork_conversation("conv-nope")


async def test_the_threads_go_their_own_ways(svc: ConversationService, store: SQLiteStore) -> None:
    src = await svc.create_conversation()
    await say(store, src.id, "shared")
    fork = await svc.fork_conversation(src.id)
    await say(store, src.id, "only in source")
    await say(store, fork.id, "only in fork")
    assert [m.content for m in await history(svc, src.id)] == ["shared", "only in source"]
    assert [m.content for m in await history(svc, fork.id)] == ["shared", "only in fork"]
    assert [m.content for m in (await store.context_messages(fork.id))[1:]] == ["shared", "only in fork"]
    assert (await svc.get_conversation(fork.id)).message_count == 2


async def test_forks_of_forks_list_inherited_rows_under_their_writers(
    svc: ConversationService, store: SQLiteStore
) -> None:
    a = await svc.create_conversation()
    a_msgs = await say(store, a.id, "a1", "a2")
    b = await svc.fork_conversation(a.id)
    b_msgs = await say(store, b.id, "b1")
    c = await svc.fork_conversation(b.id, b_msgs[0].id)
    c_msgs = await say(store, c.id, "c1")
    listed = await history(svc, c.id)
    assert [(m.id, m.conversation_id) for m in listed] == [
        (a_msgs[0].id, a.id),
        (a_msgs[1].id, a.id),
        (b_msgs[0].id, b.id),
        (c_msgs[0].id, c.id),
    ]
    assert (await svc.get_conversation(c.id)).message_count == 4
    assert c.forked_from is not None and c.forked_from.conversation_id == b.id


async def test_a_fork_inherits_a_compacted_context_with_its_summary(svc: ConversationService, store) -> None:
    src = await svc.create_conversation()
    msgs = await say(store, src.id, "old one", "old two", "recent")
    summary = await store.replace_context_prefix(
        src.id, [msgs[0].id, msgs[1].id], NewMessage("summary_message", "system", content="they said old things")
    )
    fork = await svc.fork_conversation(src.id)
    assert [m.content for m in await history(svc, fork.id)] == ["they said old things", "recent"]
    assert (await context_ids(store, fork.id))[1:] == [summary.id, msgs[2].id]


@pytest.mark.sqlite_only("SQLite's page counts")
async def test_forking_does_not_copy_message_content(svc: ConversationService, store: SQLiteStore) -> None:
    src = await svc.create_conversation()
    big = "lorem ipsum dolor " * 6000  # ~108 KB each
    await say(store, src.id, *[f"{i} {big}" for i in range(30)])
    pages = (await sql_one(store, "PRAGMA page_count"))[0]
    rows = count_rows(store.location, "messages")
    for _ in range(5):
        await svc.fork_conversation(src.id)
    assert count_rows(store.location, "messages") == rows + 5  # one system message each, no message rows
    grown = (await sql_one(store, "PRAGMA page_count"))[0] - pages
    page_size = (await sql_one(store, "PRAGMA page_size"))[0]
    assert grown * page_size < 200_000, f"5 forks of 3 MB of messages grew the file by {grown} pages"


# -- deleting --


async def test_delete_removes_the_conversation_everywhere(svc: ConversationService, store: SQLiteStore) -> None:
    conv = await svc.create_conversation()
    await say(store, conv.id, "the narwhal")
    await store.create_run("run-x", conv.id, conv.agent_id, status="completed", idempotency_key=None)
    assert await svc.delete_conversation(conv.id) == Deleted(id=conv.id)
    for call in (
        svc.get_conversation(conv.id),
        svc.list_messages(conv.id),
        svc.fork_conversation(conv.id),
        svc.delete_conversation(conv.id),
        svc.update_conversation(conv.id, summary="x"),
        svc.search("narwhal", conversation_id=conv.id),
    ):
        with pytest.raises(NotFoundError, match=f"conversation {conv.id} not found"):
            await call
    assert conv.id not in [c.id for c in (await svc.list_conversations()).conversations]
    assert (await svc.search("narwhal")).results == []
    assert count_rows(store.location, "messages") == 0  # its system message is gone too
    assert count_rows(store.location, "runs") == 0
    assert_fts_in_sync(store.location)


async def test_deleting_the_source_keeps_what_the_fork_holds(svc: ConversationService, store: SQLiteStore) -> None:
    src = await svc.create_conversation()
    held = await turn(store, src.id, "the okapi question", "the okapi answer")
    after_fork_point = await say(store, src.id, "source only okapi")
    fork = await svc.fork_conversation(src.id, held[1].id)
    own = await say(store, fork.id, "fork okapi")
    before = await history(svc, fork.id)
    ctx_before = await context_ids(store, fork.id)
    await svc.delete_conversation(src.id)
    after = await history(svc, fork.id)
    assert after == before  # listed, same ids, original conversation_id
    assert await context_ids(store, fork.id) == ctx_before  # still in its context
    results = (await svc.search("okapi")).results
    assert sorted(r.message_id for r in results) == sorted([held[0].id, held[1].id, own[0].id])
    assert {r.conversation_id for r in results} == {fork.id}
    assert [r.message_id for r in (await svc.search("okapi", conversation_id=fork.id)).results] != []
    # the source's own rows that no fork holds are gone from storage, with its system message
    assert count_rows(store.location, "messages", "id = ?", (after_fork_point[0].id,)) == 0
    assert count_rows(store.location, "messages") == 2 + 1 + 1  # held + fork's own + fork's system message
    assert (await svc.get_conversation(fork.id)).message_count == 3
    assert_fts_in_sync(store.location)


async def test_deleting_the_fork_leaves_the_source_untouched(svc: ConversationService, store: SQLiteStore) -> None:
    src = await svc.create_conversation()
    await turn(store, src.id, "the quokka question", "the quokka answer")
    before = await history(svc, src.id, include_system=True)
    src_before = await svc.get_conversation(src.id)
    ctx_before = await context_ids(store, src.id)
    rows_before = count_rows(store.location, "messages")
    fork = await svc.fork_conversation(src.id)
    await say(store, fork.id, "fork quokka one", "fork quokka two")
    await svc.delete_conversation(fork.id)
    assert await history(svc, src.id, include_system=True) == before
    assert await svc.get_conversation(src.id) == src_before
    assert await context_ids(store, src.id) == ctx_before
    assert count_rows(store.location, "messages") == rows_before
    assert len((await svc.search("quokka")).results) == 2
    assert_fts_in_sync(store.location)


async def test_deleting_source_then_fork_reclaims_every_row(svc: ConversationService, store: SQLiteStore) -> None:
    src = await svc.create_conversation()
    await turn(store, src.id, "the ibis question", "the ibis answer")
    fork = await svc.fork_conversation(src.id)
    fork2 = await svc.fork_conversation(fork.id)
    await say(store, fork.id, "fork ibis")
    await svc.delete_conversation(src.id)
    await svc.delete_conversation(fork.id)
    assert [m.content for m in await history(svc, fork2.id)] == ["the ibis question", "the ibis answer"]
    assert {r.conversation_id for r in (await svc.search("ibis")).results} == {fork2.id}
    await svc.delete_conversation(fork2.id)
    assert count_rows(store.location, "messages") == 0
    assert count_rows(store.location, "conversations") == 0
    assert (await svc.search("ibis")).results == []
    assert_fts_in_sync(store.location)


async def test_deleting_a_middle_fork_rehomes_its_rows_to_the_fork_below(
    svc: ConversationService, store: SQLiteStore
) -> None:
    a = await svc.create_conversation()
    await say(store, a.id, "kestrel from a")
    b = await svc.fork_conversation(a.id)
    (b_msg,) = await say(store, b.id, "kestrel from b")
    c = await svc.fork_conversation(b.id)
    await svc.delete_conversation(b.id)
    listed = await history(svc, c.id)
    assert [(m.content, m.conversation_id) for m in listed] == [("kestrel from a", a.id), ("kestrel from b", b.id)]
    by_id = {r.message_id: r.conversation_id for r in (await svc.search("kestrel")).results}
    assert by_id[b_msg.id] == c.id and set(by_id.values()) == {a.id, c.id}
    await svc.delete_conversation(a.id)
    assert {r.conversation_id for r in (await svc.search("kestrel")).results} == {c.id}
    assert [m.id for m in await history(svc, c.id)] == [m.id for m in listed]
    assert_fts_in_sync(store.location)


async def test_long_histories_are_forked_and_deleted_in_chunks(svc: ConversationService, store: SQLiteStore) -> None:
    src = await svc.create_conversation()
    msgs = await say(store, src.id, *[f"gecko {i}" for i in range(2500)])
    fork = await svc.fork_conversation(src.id, msgs[1999].id)
    assert fork.message_count == 2000
    await say(store, src.id, "after")
    await svc.delete_conversation(src.id)
    assert count_rows(store.location, "messages") == 2000 + 1
    listed = (await svc.list_messages(fork.id, 1000, order="desc")).messages
    assert listed[0].id == msgs[1999].id and len(listed) == 1000
    await svc.delete_conversation(fork.id)
    assert count_rows(store.location, "messages") == 0
    assert_fts_in_sync(store.location)


# -- a fork's message_count: the non-system rows it inherits --


def user(text: str) -> NewMessage:
    return NewMessage(message_type="user_message", role="user", content=text)


async def test_fork_counts_inherited_rows_without_system_messages_even_among_other_conversations(
    store: SQLiteStore,
) -> None:
    agent = await store.create_agent(name="a", model=None, system="s", context_window_limit=None, blocks=[])
    src = await store.create_conversation(agent.id, model=None, summary=None, system_text="sys")
    await store.append_messages(src.id, [user("one")])
    # Other conversations made meanwhile put their system rows inside the source's rowid range.
    others = [await store.create_conversation(agent.id, model=None, summary=None, system_text="x") for _ in range(3)]
    system_input = NewMessage(message_type="system_message", role="system", content="be brief")
    await store.append_messages(src.id, [system_input, user("two")])
    await store.append_messages(others[0].id, [user("elsewhere")])
    await store.import_messages([(src.id, [user(f"bulk {i}") for i in range(5)])])

    fork = await store.fork_conversation(src.id, None, "sys2")
    assert fork.message_count == 7  # one, two, bulk 0-4: the system input is in the context but not counted
    page, _ = await store.list_history(fork.id, limit=100, after=None, desc=False, types=None, include_system=False)
    assert len(page) == fork.message_count

    two = next(m for m in page if m.content == "two")
    partial = await store.fork_conversation(src.id, two.id, "sys3")
    assert partial.message_count == 2  # one, two
    again = await store.fork_conversation(fork.id, None, "sys4")  # a fork of a fork: inherited rows again
    assert again.message_count == 7
