"""Search ranks each term over at most its newest matches in scope (storage/search.py): exact
below the cap, rare words always found, filters applied before the cap, never a missing row."""

from __future__ import annotations

import pytest

from mcp_server_conversations.search import terms
from mcp_server_conversations.storage import NewMessage, SQLiteStore
from mcp_server_conversations.storage import search as search_mod


def msg(text: str, role: str = "user") -> NewMessage:
    kind = "user_message" if role == "user" else "assistant_message"
    return NewMessage(message_type=kind, role=role, content=text, created_at=None)


async def setup(store: SQLiteStore) -> tuple[str, str, str]:
    agent = await store.create_agent(name="a", model=None, system="s", context_window_limit=None, blocks=[])
    old = await store.create_conversation(agent.id, model=None, summary=None, system_text="sys")
    new = await store.create_conversation(agent.id, model=None, summary=None, system_text="sys")
    # The old conversation: the rare word, and "common" with a role only it uses.
    await store.import_messages([(old.id, [msg("kiln common glaze"), msg("common answer", role="assistant")])])
    # Then many newer messages with the common word.
    await store.import_messages([(new.id, [msg(f"common chatter number {i}") for i in range(60)])])
    return agent.id, old.id, new.id


async def scored(store: SQLiteStore, agent_id: str, text: str, **kw: object) -> list[tuple[str, float]]:
    args = {"roles": None, "start": None, "end": None, "conversation_id": None, "limit": 10, **kw}
    found = await store.search(agent_id=agent_id, terms=terms(text), **args)  # type: ignore[arg-type]
    return [(r.content or "", r.score) for r in found]


async def search(store: SQLiteStore, agent_id: str, text: str, **kw: object) -> list[str]:
    return [content for content, _ in await scored(store, agent_id, text, **kw)]


async def test_below_the_cap_the_scores_equal_fts5_bm25_over_all_matches(store: SQLiteStore) -> None:
    agent_id, _, _ = await setup(store)
    for query in ("common kiln", "glaze chatter number", "common", "answer kiln"):
        capped = await scored(store, agent_id, query, limit=100)
        exact = await scored(store, agent_id, query, limit=100, exact=True)  # one bm25() over all matches
        assert dict(capped) == pytest.approx(dict(exact)), query
        assert [s for _, s in capped] == sorted((s for _, s in exact), reverse=True)


async def test_with_a_tiny_cap_rare_words_still_rank_first_and_filters_apply_before_the_cap(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent_id, old, _ = await setup(store)
    monkeypatch.setattr(search_mod, "RANK_BUDGET", 5)
    monkeypatch.setattr(search_mod, "MIN_CAP", 5)
    # "common" is in 62 messages, capped to its 5 newest: the old rare-word message still wins via "kiln".
    assert (await search(store, agent_id, "common kiln"))[0] == "kiln common glaze"
    # Only common words: ranked among the newest matches, the limit is still filled.
    assert len(await search(store, agent_id, "common")) == 10
    # Filters apply inside each term's scan: the old conversation's matches are found, not crowded out.
    in_old = await search(store, agent_id, "common", conversation_id=old)
    assert sorted(in_old) == ["common answer", "kiln common glaze"]
    assert await search(store, agent_id, "common", roles=["assistant"]) == ["common answer"]
