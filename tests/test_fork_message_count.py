"""A fork's message_count: the non-system rows it inherits, counted from the system-row index (m004)."""

from __future__ import annotations

from mcp_server_conversations.storage import NewMessage, SQLiteStore


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
