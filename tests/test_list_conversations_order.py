"""list_conversations reads each part in index order (storage): pages still equal one sorted list,
never-run conversations last in both orders, ties broken by id, across every page boundary."""

from __future__ import annotations

import random

import pytest

from mcp_server_conversations.storage import SQLiteStore


@pytest.mark.parametrize("order_by", ["created_at", "last_run_completion"])
@pytest.mark.parametrize("desc", [True, False])
async def test_pages_concatenate_to_the_sorted_list(store: SQLiteStore, order_by: str, desc: bool) -> None:
    rng = random.Random(5)
    agent = await store.create_agent(name="a", model=None, system="s", context_window_limit=None, blocks=[])
    other = await store.create_agent(name="b", model=None, system="s", context_window_limit=None, blocks=[])
    await store.create_conversation(other.id, model=None, summary=None, system_text="x")  # never listed here
    convs = []
    for _ in range(23):
        c = await store.create_conversation(agent.id, model=None, summary=None, system_text="x")
        if rng.random() < 0.6:  # some ran (with ties), the rest never did
            c = await store.update_conversation(c.id, {"last_run_completion": f"2025-01-0{rng.randrange(1, 4)}Z"})
        convs.append(c)

    def key(c):  # never-run last in both orders, then the value, then the id
        value = getattr(c, order_by)
        return (value is None, value or "", c.id)

    expected = sorted(convs, key=key)
    if desc:
        ran = [c for c in expected if getattr(c, order_by) is not None][::-1]
        expected = ran + [c for c in expected if getattr(c, order_by) is None][::-1]
    for page in (1, 4, 7, 50):
        got, after = [], None
        while True:
            rows = await store.list_conversations(agent.id, order_by=order_by, desc=desc, limit=page + 1, after=after)
            got += rows[:page]
            if len(rows) <= page:
                break
            after = [getattr(rows[page - 1], order_by), rows[page - 1].id]
        assert [c.id for c in got] == [c.id for c in expected], (order_by, desc, page)
