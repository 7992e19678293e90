"""conversation_search: BM25 over the agent's pooled history, query safety, filters, forks."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from foundation_helpers import say, turn
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from mcp import Client

from mcp_server_conversations.app import open_app
from mcp_server_conversations.config import Settings
from mcp_server_conversations.mcp.server import build_server
from mcp_server_conversations.search.query import terms
from mcp_server_conversations.service.conversations import ConversationService
from mcp_server_conversations.storage import NewMessage, SQLiteStore
from mcp_server_conversations.storage import search as search_mod
from mcp_server_conversations.storage.search import fts_expression

NASTY = [
    '"',
    '""',
    "'",
    'a"b',
    '"unbalanced',
    "*",
    "a*",
    "*a",
    "NEAR",
    "NEAR(a b)",
    "NEAR(a b, 2)",
    "a NEAR b",
    "AND",
    "OR",
    "NOT",
    "a AND",
    "OR b",
    "NOT NOT",
    "a OR OR b",
    "(",
    ")",
    "(a",
    "a)",
    "((a) OR (b)",
    "^a",
    "a:b",
    "search_text:a",
    "col:",
    "{a b}",
    "-a",
    "+a",
    "a - b",
    "a + b",
    "'; DROP TABLE messages; --",
    "1=1 OR 1=1",
    "' OR '1'='1",
    "\\",
    "\x00",
    "\x01\x02",
    "\u200b",
    "🙂",
    "日本語の質問",
    "naïve café",
    "a" * 5000,
    "?!",
    "%",
    "_",
    "__init__",
    "a_b",
    "$1",
    "?",
    ":memory:",
    "rank",
    "bm25(messages_fts)",
    "snippet(x)",
    "\ud800",
    "a\ud800b",
]


@pytest.fixture
async def svc(settings: Settings, store: SQLiteStore) -> AsyncIterator[ConversationService]:
    yield ConversationService(store, settings)


async def found(svc: ConversationService, query: str, **kw) -> list[str]:
    return [r.content or "" for r in (await svc.search(query, **kw)).results]


# -- query building --


def test_every_term_is_quoted_and_stop_words_dropped() -> None:
    assert terms("When did Ada start the pottery class?") == ["ada", "start", "pottery", "class"]
    assert terms('NEAR("x" w) AND z*') == ["near", "x", "w", "z"]
    assert terms("what is the") == ["what", "is", "the"]  # only stop words: keep them
    assert terms("?!*()") == []
    # storage quotes each word, so nothing the user typed is FTS5 syntax
    assert fts_expression(["near", "x"]) == '"near" OR "x"'
    assert fts_expression(['say "hi"']) == '"say ""hi"""'
    assert len(terms(" ".join(f"w{i}" for i in range(100)))) == 32


# -- ranking --


async def test_stemming_meets_word_forms(svc: ConversationService, store: SQLiteStore) -> None:
    conv = await svc.create_conversation()
    await say(store, conv.id, "I spent the weekend painting the fence", "the weather was sunny")
    assert await found(svc, "painted") == ["I spent the weekend painting the fence"]
    assert await found(svc, "paints") == ["I spent the weekend painting the fence"]
    assert await found(svc, "Painting?") == ["I spent the weekend painting the fence"]


async def test_stop_words_do_not_drive_ranking(svc: ConversationService, store: SQLiteStore) -> None:
    conv = await svc.create_conversation()
    await say(
        store,
        conv.id,
        "what is the thing that is there when it is the time",
        "the kiln is hot",
        "what was it that they did for them there",
    )
    assert await found(svc, "what is the kiln") == ["the kiln is hot"]
    assert set(await found(svc, "what is it")) >= {"what was it that they did for them there"}


async def test_natural_language_questions_find_messages_matching_some_terms(
    svc: ConversationService, store: SQLiteStore
) -> None:
    conv = await svc.create_conversation()
    other = await svc.create_conversation()
    await turn(store, conv.id, "Ada signed up for the pottery class on Tuesday", "Great, enjoy the wheel!")
    await say(store, other.id, "Ada went to the store", "notes from my chemistry class", "nothing relevant here")
    results = (await svc.search("when did Ada start the pottery class?")).results
    assert results[0].content == "Ada signed up for the pottery class on Tuesday"
    assert results[0].conversation_id == conv.id
    contents = [r.content for r in results]
    assert "Ada went to the store" in contents and "notes from my chemistry class" in contents
    assert "nothing relevant here" not in contents
    scores = [r.score for r in results]
    assert scores == sorted(scores, reverse=True) and all(s > 0 for s in scores)


async def test_reasoning_tool_calls_and_summaries_are_searched_system_messages_are_not(
    svc: ConversationService, store: SQLiteStore
) -> None:
    agent = await svc.create_agent("a", system="zebrafish are the secret of the prompt")
    conv = await svc.create_conversation(agent.id)
    await store.append_messages(
        conv.id,
        [
            NewMessage("reasoning_message", "assistant", reasoning="the user wants marmalade"),
            NewMessage(
                "tool_call_message",
                "assistant",
                tool_calls=[
                    {"tool_call_id": "t", "name": "memory_insert", "arguments": '{"new_string": "quince"}'},
                ],
            ),
            NewMessage("tool_return_message", "tool", content="inserted persimmon", tool_call_id="t", status="success"),
            NewMessage("summary_message", "system", content="they talked about apricots"),
        ],
    )
    aid = agent.id
    assert (await svc.search("zebrafish", agent_id=aid)).results == []
    (r,) = (await svc.search("marmalade", agent_id=aid)).results
    assert (r.message_type, r.role, r.content) == ("reasoning_message", "assistant", "the user wants marmalade")
    assert [r.message_type for r in (await svc.search("quince", agent_id=aid)).results] == ["tool_call_message"]
    assert [r.role for r in (await svc.search("persimmon", agent_id=aid)).results] == ["tool"]
    assert [r.message_type for r in (await svc.search("apricots", agent_id=aid)).results] == ["summary_message"]


# -- filters --


async def test_roles_filter(svc: ConversationService, store: SQLiteStore) -> None:
    conv = await svc.create_conversation()
    await turn(store, conv.id, "tell me about lighthouses", "lighthouses guide ships")
    await say(store, conv.id, "lighthouse tool output", role="tool", tool_call_id="t", status="success")
    assert await found(svc, "lighthouse", roles=["user"]) == ["tell me about lighthouses"]
    assert await found(svc, "lighthouse", roles=["assistant"]) == ["lighthouses guide ships"]
    assert set(await found(svc, "lighthouse", roles=["user", "tool"])) == {
        "tell me about lighthouses",
        "lighthouse tool output",
    }
    assert len(await found(svc, "lighthouse")) == 3


async def test_date_filters_are_inclusive_and_a_date_only_end_covers_the_day(
    svc: ConversationService, store: SQLiteStore
) -> None:
    conv = await svc.create_conversation()
    for text, at in [
        ("walrus one", "2026-03-01T10:00:00.000000Z"),
        ("walrus two", "2026-03-02T23:59:59.900000Z"),
        ("walrus three", "2026-03-03T00:00:00.000000Z"),
    ]:
        await say(store, conv.id, text, created_at=at)
    assert set(await found(svc, "walrus", end_date="2026-03-02")) == {"walrus one", "walrus two"}
    assert set(await found(svc, "walrus", start_date="2026-03-02")) == {"walrus two", "walrus three"}
    assert await found(svc, "walrus", start_date="2026-03-02", end_date="2026-03-02") == ["walrus two"]
    assert await found(svc, "walrus", start_date="2026-03-03T00:00:00Z", end_date="2026-03-03T00:00:00Z") == [
        "walrus three"
    ]
    assert await found(svc, "walrus", start_date="2026-03-03T02:00:00+02:00", end_date="2026-03-03") == ["walrus three"]
    assert await found(svc, "walrus", end_date="2026-03-01T09:59:59Z") == []


async def test_conversation_and_agent_scope(svc: ConversationService, store: SQLiteStore) -> None:
    a = await svc.create_conversation()
    b = await svc.create_conversation()
    other_agent = await svc.create_agent("other")
    c = await svc.create_conversation(other_agent.id)
    await say(store, a.id, "otter in a")
    await say(store, b.id, "otter in b")
    await say(store, c.id, "otter of another agent")
    assert set(await found(svc, "otter")) == {"otter in a", "otter in b"}
    assert await found(svc, "otter", conversation_id=a.id) == ["otter in a"]
    assert await found(svc, "otter", agent_id=other_agent.id) == ["otter of another agent"]
    assert await found(svc, "otter", conversation_id=c.id) == ["otter of another agent"]


async def test_limit(svc: ConversationService, store: SQLiteStore) -> None:
    conv = await svc.create_conversation()
    await say(store, conv.id, *[f"heron number {i}" for i in range(120)])
    assert len(await found(svc, "heron", limit=1)) == 1
    assert len(await found(svc, "heron")) == 10
    assert len(await found(svc, "heron", limit=100)) == 100


# -- deletion and forks --


async def test_deleted_conversations_are_excluded(svc: ConversationService, store: SQLiteStore) -> None:
    keep = await svc.create_conversation()
    gone = await svc.create_conversation()
    await say(store, keep.id, "badger kept")
    await say(store, gone.id, "badger gone")
    await svc.delete_conversation(gone.id)
    assert await found(svc, "badger") == ["badger kept"]


async def test_a_row_shared_by_forks_appears_once_under_its_writer_then_under_a_holder(
    svc: ConversationService, store: SQLiteStore
) -> None:
    src = await svc.create_conversation()
    (shared,) = await say(store, src.id, "the puffin is shared")
    fork1 = await svc.fork_conversation(src.id)
    fork2 = await svc.fork_conversation(fork1.id)
    await say(store, fork1.id, "puffin only in the fork")
    results = (await svc.search("puffin")).results
    assert sorted(r.content for r in results) == ["puffin only in the fork", "the puffin is shared"]
    row = next(r for r in results if r.message_id == shared.id)
    assert row.conversation_id == src.id
    for conv_id in (src.id, fork1.id, fork2.id):  # a fork's scope includes its inherited rows
        (r,) = [r for r in (await svc.search("shared", conversation_id=conv_id)).results]
        assert (r.message_id, r.conversation_id) == (shared.id, src.id)
    assert await found(svc, "puffin", conversation_id=src.id) == ["the puffin is shared"]
    await svc.delete_conversation(src.id)
    (r,) = (await svc.search("shared")).results
    assert r.message_id == shared.id and r.conversation_id in (fork1.id, fork2.id)
    await svc.delete_conversation(r.conversation_id)
    (r2,) = (await svc.search("shared")).results
    assert r2.message_id == shared.id
    assert r2.conversation_id in (fork1.id, fork2.id) and r2.conversation_id != r.conversation_id


# -- any text is a valid query --


async def test_hostile_queries_never_raise(svc: ConversationService, store: SQLiteStore) -> None:
    conv = await svc.create_conversation()
    await say(store, conv.id, "near the bank of the river", "a AND b OR not c", "drop table messages")
    for q in NASTY:
        if not q.strip():
            continue
        results = (await svc.search(q)).results
        assert len(results) <= 10
    assert await found(svc, "'; DROP TABLE messages; --") == ["drop table messages"]
    assert set(await found(svc, "NEAR(river bank)")) == {"near the bank of the river"}


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    query=st.one_of(
        st.text(min_size=1, max_size=200),
        st.text(alphabet=st.sampled_from("\"'*()^:-+{}[]NEAROTAD ,.;\\%_\x00\t\n"), min_size=1, max_size=60),
        st.lists(
            st.sampled_from(NASTY + ["river", "bank", "AND", "OR", "NOT", "NEAR", "*", '"']), min_size=1, max_size=8
        ).map(" ".join),
    )
)
async def test_property_any_string_is_a_valid_query(svc: ConversationService, store: SQLiteStore, query: str) -> None:
    conv_id = (await svc.list_conversations()).conversations
    if not conv_id:
        conv = await svc.create_conversation()
        await say(store, conv.id, "near the river bank", "quotes \" and 'apostrophes' and * stars")
    if not query.strip():
        return  # empty queries are a validation error, tested elsewhere
    results = (await svc.search(query)).results
    assert len(results) <= 10
    assert all(r.score > 0 for r in results)


@hsettings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(queries=st.lists(st.text(min_size=1, max_size=80), min_size=10, max_size=20))
async def test_property_any_string_through_mcp_never_errors(settings: Settings, queries: list[str]) -> None:
    async with open_app(settings) as app, Client(build_server(settings, shared=app), mode="legacy") as c:
        convs = (await app.service.list_conversations()).conversations
        conv_id = convs[0].id if convs else (await app.service.create_conversation()).id
        if not convs:
            await say(app.store, conv_id, "near the river bank")
        for q in [*queries, *NASTY[:20]]:
            result = await c.call_tool("conversation_search", {"query": q})
            if not q.strip() or "\x00" in q:  # blank, or a NUL (refused in every string a client sends)
                assert result.is_error and "query" in result.content[0].text
                continue
            assert not result.is_error, (q, result.content)
            assert isinstance(result.structured_content["results"], list)


# -- the ranking cap: each term over its newest matches in scope, the same top results as exact bm25 --


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
