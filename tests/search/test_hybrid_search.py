"""Hybrid search (--embedding-model): the background indexer, vector ranking fused with BM25 by
score-aware fusion, filters on the vector side, deletions, and falling back to full-text when
the embedding provider fails. Embeddings come from the fake OpenAI-compatible server through
litellm (`openai/fake-embed`): hashed bag-of-words vectors where "pottery" and "ceramics" share
a dimension, so a vector match without a shared word can be shown."""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
from array import array
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fake_provider import FakeProvider
from foundation_helpers import count_embeddings, say
from hybrid_helpers import EMBED, indexed, pending
from mcp import Client
from rest_helpers import letta, rest_server, sdk
from runtime_helpers import call, db_rows, eventually
from stdio_helpers import raw_stdio_server

from mcp_server_conversations.app import App, open_app
from mcp_server_conversations.config import Settings
from mcp_server_conversations.mcp.server import build_server
from mcp_server_conversations.models import SearchResult
from mcp_server_conversations.search.fusion import centre, embedding_query, fuse, lead, similarities
from mcp_server_conversations.search.hybrid import EmbeddingIndex
from mcp_server_conversations.storage import NewMessage

pytestmark = pytest.mark.usefixtures("quick_indexer")

CERAMICS = "Ada signed up for a ceramics course on Tuesdays"
GLAZE = "The pottery glaze arrived cracked"
FILLER = [
    "We talked about the marathon training plan",
    "Grocery list: eggs, spinach, oat milk",
    "The quarterly budget review moved to Friday",
    "My sister adopted a grey kitten",
]


async def conversation(app: App, *texts: str, role: str = "user", **kw: Any) -> str:
    conv = await app.service.create_conversation()
    if texts:
        await say(app.store, conv.id, *texts, role=role, **kw)
    return conv.id


def contents(results: Any) -> list[str | None]:
    return [r.content for r in results.results]


# -- fusion (pure) --


def result(message_id: str, snippet: str = "", content: str = "text", score: float = 1.0) -> SearchResult:
    return SearchResult(
        message_id=message_id,
        conversation_id="conv-1",
        role="user",
        message_type="user_message",
        content=content,
        snippet=snippet,
        created_at="2026-01-01T00:00:00Z",
        score=score,
    )


def ids(results: list[SearchResult]) -> list[str]:
    return [r.message_id for r in results]


def test_fusion_keeps_a_strong_hit_only_one_side_found() -> None:
    """The vector side's clear best ("v", far above the rest) is missing from full-text, whose twelve
    hits all come back weakly on the vector side too: rank-only fusion (1 / (60 + rank) summed) put
    each of those twelve above "v" and dropped it from the top 10."""
    fts = [result(f"f{i}", f"…f{i}…", score=10.0 - 0.1 * i) for i in range(12)]
    vec = [result("v", score=0.92)] + [result(f"f{i}", score=0.30 - 0.001 * i) for i in range(12)]
    fused = fuse(fts, vec, limit=10)
    assert ids(fused)[0] == "v"
    assert ids(fused)[1:] == [f"f{i}" for i in range(9)]  # full-text's order otherwise
    assert [r.score for r in fused] == sorted((r.score for r in fused), reverse=True)


def test_a_flat_side_barely_moves_the_other() -> None:
    fts = [result("a", "…a…", score=9.0), result("b", score=4.0), result("c", score=3.9), result("d", score=3.8)]
    flat = [result(m, score=0.5) for m in ("d", "c", "x")]  # no candidate stands out: no say
    fused = ids(fuse(fts, flat, limit=10))
    assert [m for m in fused if m != "x"] == ["a", "b", "c", "d"] and fused[0] == "a"


def test_fusion_details() -> None:
    fts = [result("a", "…match…", score=5.0), result("b", "…b…", score=2.0), result("c", "…c…", score=1.0)]
    vec = [result("c", score=0.9), result("d", content="  a   long\nvector-only   hit " + "word " * 60, score=0.1)]
    fused = fuse(fts, vec, limit=10)
    assert set(ids(fused)) == {"a", "b", "c", "d"} and ids(fused)[0] == "a"
    assert fused[0].snippet == "…match…"  # a full-text hit keeps its snippet
    d = next(r for r in fused if r.message_id == "d")
    assert d.snippet.startswith("a long vector-only hit word") and d.snippet.endswith("…") and len(d.snippet) <= 161
    assert len(fuse(fts, vec, limit=2)) == 2
    assert ids(fuse([result("x")], [result("y")], limit=5)) == ["x", "y"]  # lone hits tie: full-text first
    assert fuse(fts, [], limit=2) == fts[:2]  # no vectors yet: full-text exactly as it is
    assert ids(fuse([], vec, limit=5)) == ["c", "d"]
    assert fuse([], [], limit=3) == []
    assert lead("short  text") == "short text"


def test_the_embedded_query_leaves_dates_out() -> None:
    assert embedding_query("What did Maria buy in May 2023?") == "What did Maria buy?"
    assert embedding_query("Which trail did Jonas hike on 13 June 2024?") == "Which trail did Jonas hike?"
    assert embedding_query("What did we fix in the week of 29 April 2024") == "What did we fix"
    assert embedding_query("notes from 2024-05-07 and 07/05/2024, since 2021") == "notes and"
    assert embedding_query("what happened in March?") == "what happened?"
    assert embedding_query("may I ask about the march") == "may I ask about the march"  # no date: as it is
    assert embedding_query("May 2023") == "May 2023"  # nothing else left: the whole query
    assert embedding_query("Mayor Smith") == "Mayor Smith"


def test_similarity_is_centred_on_the_agents_mean() -> None:
    """Every message shares a name direction; short greetings are little else. Plain cosine ranks a
    greeting first for "<name> + topic"; centred on the mean, the message about the topic wins."""
    rng = np.random.default_rng(1)
    name, topic = np.zeros(16, dtype=np.float32), np.zeros(16, dtype=np.float32)
    name[0], topic[1] = 1.0, 1.0
    rows = [name * 3 + rng.normal(0, 0.3, 16) for _ in range(40)]  # greetings: the name and noise
    rows.append(name * 3 + topic * 2.5 + rng.normal(0, 0.3, 16))  # the answer
    matrix = np.stack([r / np.linalg.norm(r) for r in rows]).astype(np.float32)
    q = (name * 3 + topic).astype(np.float32)
    q /= np.linalg.norm(q)
    assert int(np.argmax(similarities(matrix, q, None))) != 40
    centred = similarities(matrix, q, centre(matrix, matrix.sum(axis=0, dtype=np.float64)))
    assert int(np.argmax(centred)) == 40
    assert np.all(np.abs(centred) <= 1.0 + 1e-5)


# -- the indexer --


async def test_the_indexer_embeds_new_messages_in_the_background(hybrid: Settings, fake_provider: FakeProvider) -> None:
    async with open_app(hybrid) as app:
        conv = await conversation(app, CERAMICS, *FILLER)
        await indexed(hybrid)
        rows = db_rows(
            hybrid, "SELECT e.*, m.content FROM message_embeddings e JOIN messages m ON m.rowid = e.message_rowid"
        )
        assert sorted(r["content"] for r in rows) == sorted([CERAMICS, *FILLER])  # the system message has no vector
        for r in rows:
            assert (r["model"], r["dim"], r["agent_id"]) == (EMBED, 64, (await app.service.resolve_agent(None)))
            vector = array("f", r["vector"])
            assert len(vector) == 64 and math.isclose(math.sqrt(sum(v * v for v in vector)), 1.0, rel_tol=1e-5)
        sent = len(fake_provider.embedding_inputs)
        await say(app.store, conv, "A later message about the garden")
        await indexed(hybrid)
        assert fake_provider.embedding_inputs[sent:] == [["A later message about the garden"]]  # only the new one
        assert await count_embeddings(app.store, EMBED) == len(FILLER) + 2


async def test_a_backlog_is_embedded_in_batches_when_the_flag_is_turned_on(
    settings: Settings, hybrid: Settings, fake_provider: FakeProvider
) -> None:
    async with open_app(settings) as app:  # no embedding model: nothing is embedded
        assert app.embeddings is None and app.service.hybrid is None
        conv = await conversation(app)
        await app.store.import_messages(
            [(conv, [NewMessage("user_message", "user", content=f"note {i}") for i in range(150)])]
        )
    assert fake_provider.embedding_inputs == [] and pending(settings) == 150
    async with open_app(hybrid) as app:
        await indexed(hybrid)
        sizes = [len(texts) for texts in fake_provider.embedding_inputs]
        assert sorted(sizes) == [22, 64, 64]  # batches go out together: they may arrive in any order
        assert await count_embeddings(app.store) == 150


async def test_a_backlog_is_embedded_several_batches_at_a_time(
    settings: Settings, hybrid: Settings, fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(EmbeddingIndex, "start_delay", 3600.0)  # only the pass below runs
    async with open_app(settings) as app:
        conv = await conversation(app)
        await app.store.import_messages(
            [(conv, [NewMessage("user_message", "user", content=f"note {i}") for i in range(64 * 6)])]
        )
    fake_provider.embedding_delay = 0.2
    async with open_app(hybrid) as app:
        assert await app.embeddings.index_pending() == 64 * 6
        assert fake_provider.embeddings_max_in_flight == EmbeddingIndex.in_flight  # not one batch at a time
        assert await count_embeddings(app.store) == 64 * 6
        sent = sorted(t for texts in fake_provider.embedding_inputs for t in texts)
        assert sent == sorted(f"note {i}" for i in range(64 * 6))  # each message exactly once


async def test_switching_the_embedding_model_re_embeds_everything(hybrid: Settings) -> None:
    async with open_app(hybrid) as app:
        await conversation(app, CERAMICS, *FILLER)
        await indexed(hybrid)
    other = hybrid.model_copy(update={"embedding_model": "openai/fake-embed-2"})
    async with open_app(other) as app:
        sql = "SELECT count(*) FROM message_embeddings WHERE model = 'openai/fake-embed-2'"
        await eventually(lambda: db_rows(other, sql)[0][0] == 1 + len(FILLER), "every message re-embedded")
        assert await count_embeddings(app.store) == 1 + len(FILLER)  # replaced, not added
        assert contents(await app.service.search("pottery", limit=1)) == [CERAMICS]


async def test_a_message_the_provider_refuses_does_not_block_the_others(
    hybrid: Settings, fake_provider: FakeProvider
) -> None:
    fake_provider.embedding_error, fake_provider.embedding_fail_when = 400, "POISON"
    async with open_app(hybrid) as app:
        await conversation(app, "first note", "a POISON message", "third note")
        await indexed(hybrid)
        assert await count_embeddings(app.store, EMBED) == 2
        refused = db_rows(hybrid, "SELECT dim, length(vector) FROM message_embeddings WHERE dim = 0")
        assert [tuple(r) for r in refused] == [(0, 0)]  # remembered, so it is not asked for again
        calls = len(fake_provider.embedding_inputs)
        await say(app.store, (await app.service.list_conversations()).conversations[0].id, "fourth note")
        await indexed(hybrid)
        assert fake_provider.embedding_inputs[calls:] == [["fourth note"]]


async def test_the_indexer_waits_out_a_provider_outage(
    hybrid: Settings, fake_provider: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    fake_provider.embedding_error = 401  # a bad key until someone fixes it (401 is not retried by the SDK)
    caplog.set_level(logging.WARNING, logger="mcp_server_conversations.search.hybrid")
    async with open_app(hybrid) as app:
        await conversation(app, CERAMICS)
        await eventually(lambda: app.embeddings.failures >= 2, "the indexer to fail twice")
        assert pending(hybrid) == 1
        assert "embedding messages with openai/fake-embed failed" in caplog.text
        fake_provider.embedding_error = None
        await indexed(hybrid)
        await eventually(lambda: app.embeddings.failures == 0, "the indexer to recover")
        assert "works again" in caplog.text


# -- fused ranking --


async def test_a_vector_match_without_a_shared_word_is_found(hybrid: Settings, settings: Settings) -> None:
    async with open_app(hybrid) as app:
        await conversation(app, *FILLER, CERAMICS, *FILLER)
        await indexed(hybrid)
        only_fts = await app.store.search(
            agent_id=await app.service.resolve_agent(None),
            terms=["pottery"],
            roles=None,
            start=None,
            end=None,
            conversation_id=None,
            limit=10,
        )
        assert only_fts == []  # full-text alone misses it: no shared word
        top = (await app.service.search("pottery", limit=1)).results
        assert [r.content for r in top] == [CERAMICS]
        assert top[0].snippet == CERAMICS and top[0].score > 0
        assert len((await app.service.search("pottery", limit=100)).results) == 2 * len(FILLER) + 1
    async with open_app(settings) as app:  # the same database without the flag: full-text only, as before
        assert (await app.service.search("pottery")).results == []


async def test_the_query_is_embedded_without_its_dates(hybrid: Settings, fake_provider: FakeProvider) -> None:
    async with open_app(hybrid) as app:
        await conversation(app, *FILLER, CERAMICS)
        await indexed(hybrid)
        sent = len(fake_provider.embedding_inputs)
        found = (await app.service.search("pottery in May 2023", limit=1)).results
        assert fake_provider.embedding_inputs[sent:] == [["pottery"]]
        assert [r.content for r in found] == [CERAMICS]


async def test_fusion_keeps_full_text_hits_first(hybrid: Settings) -> None:
    async with open_app(hybrid) as app:
        await conversation(app, *FILLER, CERAMICS, GLAZE)
        await indexed(hybrid)
        found = (await app.service.search("pottery", limit=3)).results
        assert [r.content for r in found[:2]] == [GLAZE, CERAMICS]  # GLAZE leads both rankings
        assert "pottery" in found[0].snippet and found[0].score > found[1].score > found[2].score


async def test_filters_hold_on_the_vector_side(hybrid: Settings) -> None:
    async with open_app(hybrid) as app:
        mine = await conversation(app, *FILLER)
        await say(app.store, mine, CERAMICS, role="assistant", created_at="2026-03-05T10:00:00Z")
        other = await conversation(app, "Bo joined the pottery club")  # another thread, a full-text hit
        fork = await app.service.fork_conversation(mine)
        theirs = await app.service.create_agent(name="someone else")
        await say(app.store, (await app.service.create_conversation(agent_id=theirs.id)).id, CERAMICS)
        await indexed(hybrid)

        def hits(found: Any) -> list[tuple[str | None, str]]:
            return [
                (r.content, r.conversation_id)
                for r in found.results
                if r.content in (CERAMICS, GLAZE) or "pottery" in (r.content or "")
            ]

        assert hits(await app.service.search("pottery")) == [("Bo joined the pottery club", other), (CERAMICS, mine)]
        assert hits(await app.service.search("pottery", roles=["user"])) == [("Bo joined the pottery club", other)]
        assert hits(await app.service.search("pottery", roles=["assistant"])) == [(CERAMICS, mine)]
        assert hits(await app.service.search("pottery", start_date="2026-03-06")) == [
            ("Bo joined the pottery club", other)
        ]
        assert hits(await app.service.search("pottery", end_date="2026-03-05")) == [(CERAMICS, mine)]
        assert hits(await app.service.search("pottery", conversation_id=mine)) == [(CERAMICS, mine)]
        assert hits(await app.service.search("pottery", conversation_id=fork.id)) == [(CERAMICS, mine)]  # inherited
        assert hits(await app.service.search("pottery", conversation_id=other)) == [
            ("Bo joined the pottery club", other)
        ]
        found = await app.service.search("pottery", agent_id=theirs.id)
        assert [(r.content, r.conversation_id != mine) for r in found.results] == [(CERAMICS, True)]


async def test_a_narrow_scope_finds_its_nearest_rows_behind_many_nearer_ones(hybrid: Settings) -> None:
    async with open_app(hybrid) as app:
        crowd = await conversation(app)
        await app.store.import_messages(
            [(crowd, [NewMessage("user_message", "user", content=f"ceramics {i}") for i in range(600)])]
        )
        mine = await conversation(app, "Ceramic tiles for the kitchen", *FILLER)
        await indexed(hybrid)
        assert "Ceramic tiles for the kitchen" not in contents(await app.service.search("pottery", limit=100))
        found = await app.service.search("pottery", conversation_id=mine, limit=1)
        assert [(r.content, r.conversation_id) for r in found.results] == [("Ceramic tiles for the kitchen", mine)]


async def test_deleted_conversations_leave_vector_results(hybrid: Settings) -> None:
    async with open_app(hybrid) as app:
        closer = [f"ceramics {i}" for i in range(60)]  # nearer to the query than anything kept: the top 50
        gone = await conversation(app, CERAMICS, *closer)
        held = await conversation(app, "Ceramic tiles for the kitchen")
        fork = await app.service.fork_conversation(held)
        await conversation(app, *FILLER)
        await indexed(hybrid)
        found = contents(await app.service.search("pottery", limit=100))
        assert set(found[:60]) == set(closer) and "Ceramic tiles for the kitchen" in found  # the matrix is cached

        await app.service.delete_conversation(gone)
        await app.service.delete_conversation(held)
        results = (await app.service.search("pottery", limit=len(FILLER) + 1)).results  # ranks 50 deep
        assert [(r.content, r.conversation_id) for r in results][0] == ("Ceramic tiles for the kitchen", fork.id)
        assert len(results) == len(FILLER) + 1  # nothing of the deleted conversation
        assert (
            db_rows(
                hybrid,
                "SELECT count(*) FROM message_embeddings e JOIN messages m ON m.rowid = "
                "e.message_rowid WHERE m.content = ?",
                (CERAMICS,),
            )[0][0]
            == 0
        )
        agent = await app.service.create_agent(name="short-lived")
        await say(app.store, (await app.service.create_conversation(agent_id=agent.id)).id, CERAMICS)
        await indexed(hybrid)
        before = db_rows(hybrid, "SELECT count(*) FROM message_embeddings")[0][0]
        await app.service.delete_agent(agent.id)
        assert db_rows(hybrid, "SELECT count(*) FROM message_embeddings")[0][0] == before - 1


async def test_new_messages_join_a_cached_matrix(hybrid: Settings) -> None:
    async with open_app(hybrid) as app:
        conv = await conversation(app, *FILLER)
        await indexed(hybrid)
        assert CERAMICS not in contents(await app.service.search("pottery"))  # loads and caches the matrix
        await say(app.store, conv, CERAMICS)
        await indexed(hybrid)
        assert contents(await app.service.search("pottery", limit=1)) == [CERAMICS]


# -- failures --


async def test_a_failing_provider_leaves_full_text_results(
    hybrid: Settings, settings: Settings, fake_provider: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="mcp_server_conversations.search.hybrid")
    async with open_app(settings) as app:
        await conversation(app, *FILLER, CERAMICS, GLAZE)
        baseline = await app.service.search("pottery glaze")
    assert len(baseline.results) == 1
    async with open_app(hybrid) as app:
        await indexed(hybrid)
        fake_provider.embedding_error = 401  # e.g. a missing or revoked key
        found = await app.service.search("pottery glaze")
        assert found == baseline  # exactly the full-text answer, BM25 scores included
        assert "fell back to full-text only" in caplog.text
        asked = len(fake_provider.embedding_inputs)
        assert contents(await app.service.search("cracked")) == [GLAZE]  # in cooldown: the provider is not asked
        assert len(fake_provider.embedding_inputs) == asked
        app.embeddings._down_until = 0.0  # the cooldown is over
        fake_provider.embedding_error = None
        assert contents(await app.service.search("pottery glaze", limit=2)) == [GLAZE, CERAMICS]


async def test_an_unreachable_provider_leaves_full_text_results(
    hybrid: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with open_app(hybrid) as app:
        await conversation(app, *FILLER, CERAMICS, GLAZE)
        await indexed(hybrid)
        for key in ("OPENAI_API_BASE", "OPENAI_BASE_URL"):
            monkeypatch.setenv(key, "http://127.0.0.1:9/v1")  # nothing listens on the discard port
        found = await app.service.search("cracked glaze")
        assert contents(found) == [GLAZE]


def test_without_an_embedding_model_search_loads_neither_litellm_nor_numpy(tmp_path) -> None:
    script = f"""
import asyncio, sys
from mcp_server_conversations.config import Settings
from mcp_server_conversations.service.conversations import ConversationService
from mcp_server_conversations.storage import NewMessage, SQLiteStore

async def main():
    store = await SQLiteStore.open({str(tmp_path / "plain.db")!r})
    service = ConversationService(store, Settings())
    conv = await service.create_conversation()
    await store.append_messages(conv.id, [NewMessage("user_message", "user", content="the pottery class")])
    found = await service.search("pottery")
    await store.close()
    loaded = [m for m in ("litellm", "numpy", "mcp_server_conversations.search.hybrid") if m in sys.modules]
    print(len(found.results), loaded)

asyncio.run(main())
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "1 []"


# -- every caller of service.search: the MCP tool, the agent's own tool, REST --


async def test_the_mcp_tool_and_the_agents_own_tool_fuse(hybrid: Settings, fake_provider: FakeProvider) -> None:
    settings = hybrid.model_copy(update={"default_model": "openai/fake-model"})
    async with Client(build_server(settings), mode="auto") as c:
        conv = (await call(c, "create_conversation", {}))["id"]
        fake_provider.enqueue("Noted: the ceramics course is on Tuesdays.")
        await call(c, "send_message", {"conversation_id": conv, "content": CERAMICS})
        await indexed(settings)
        found = await call(c, "conversation_search", {"query": "pottery", "limit": 2})
        assert {r["content"] for r in found["results"]} == {CERAMICS, "Noted: the ceramics course is on Tuesdays."}
        assert found["results"][0]["score"] > found["results"][1]["score"]  # fused: only the order means something

        search = {"name": "conversation_search", "arguments": {"query": "pottery", "limit": 3}}
        fake_provider.enqueue(tool_calls=[search])
        fake_provider.enqueue("You take ceramics on Tuesdays.")
        run = await call(c, "send_message", {"conversation_id": conv, "content": "when is my class?"})
        returned = next(m for m in run["messages"] if m["message_type"] == "tool_return_message")
        seen = [r["content"] for r in json.loads(returned["content"])]  # the agent's own tool call is a full-text hit
        assert CERAMICS in seen and "Noted: the ceramics course is on Tuesdays." in seen


def rest_search(base_url: str, agent_id: str) -> list[str]:
    return [r.content for r in letta(base_url).messages.search(query="pottery", agent_id=agent_id, limit=1)]


async def test_rest_search_fuses(settings: Settings, fake_provider: FakeProvider) -> None:
    async with rest_server(settings, embedding_model=EMBED) as served:
        app = served.app
        await conversation(app, *FILLER, CERAMICS)
        await indexed(settings)
        agent = await app.service.resolve_agent(None)
        assert await sdk(rest_search, served.base_url, agent) == [CERAMICS]


# -- end to end over stdio --


@pytest.mark.slow
@pytest.mark.processes
async def test_stdio_server_with_an_embedding_model_fuses_and_keeps_stdout_clean(
    tmp_path: Path, fake_provider: FakeProvider
) -> None:
    """The console script with --embedding-model and debug logging: the indexer embeds what
    send_message stored, search finds it by meaning, and stdout carries nothing but JSON-RPC."""
    db = tmp_path / "stdio.db"
    args = ["--db", str(db), "--model", "openai/fake-model", "--embedding-model", EMBED, "--log-level", "debug"]
    async with raw_stdio_server(*args) as server:
        conv = (await server.tool("create_conversation", {}))["id"]
        await server.tool("send_message", {"conversation_id": conv, "content": CERAMICS})
        await indexed(Settings(db=db))
        found = await server.tool("conversation_search", {"query": "pottery", "limit": 1})
        assert [r["content"] for r in found["results"]] == [CERAMICS]
