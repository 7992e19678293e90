"""Reranking (--rerank-model): a reranker picks each search page from deeper candidates, with and
without an embedding model; a failing, slow or absent reranker leaves the un-reranked order, quickly,
with a warning and a cooldown. The reranker is the fake provider's `/v1/rerank` (Cohere's shape)
reached through litellm's `hosted_vllm/` route: it scores by the query's words a document holds,
or by `rerank_scores` where a test decides the order."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from fake_provider import FakeProvider
from foundation_helpers import count_embeddings, say
from hybrid_helpers import EMBED
from rest_helpers import letta, rest_server, sdk
from runtime_helpers import eventually
from stdio_helpers import raw_stdio_server

from mcp_server_conversations.app import App, open_app
from mcp_server_conversations.config import Settings
from mcp_server_conversations.errors import ProviderError
from mcp_server_conversations.gateway import ModelGateway
from mcp_server_conversations.models import SearchResult
from mcp_server_conversations.search.rerank import DEPTH, MAX_DOCUMENT_CHARS, Reranker, document

pytestmark = pytest.mark.usefixtures("quick_indexer")

RERANK = "hosted_vllm/fake-rerank"
GARDEN = [  # full text ranks the fence first for "garden" (the others' order differs by backend)
    "the garden fence needs paint",
    "garden tomatoes and garden beans from the garden",
    "a walk past the community garden on Sunday",
]


@pytest.fixture
def reranking(settings: Settings, fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("HOSTED_VLLM_API_BASE", fake_provider.base_url)
    return settings.model_copy(update={"rerank_model": RERANK})


async def ready(app: App) -> Reranker:
    """The app's reranker once litellm is imported (until then searches are not reranked)."""
    reranker = app.service.reranker
    assert reranker is not None
    await reranker.gateway.load()
    return reranker


async def conversation(app: App, *texts: str, **kw: Any) -> str:
    conv = await app.service.create_conversation()
    await say(app.store, conv.id, *texts, **kw)
    return conv.id


async def _embedded(app: App, n: int) -> bool:
    return await count_embeddings(app.store, EMBED) == n


def contents(results: Any) -> list[str | None]:
    return [r.content for r in results.results]


async def unreranked(settings: Settings, query: str, **kw: Any) -> list[str | None]:
    """What the same database answers without a reranker."""
    async with open_app(settings.model_copy(update={"rerank_model": None})) as app:
        return contents(await app.service.search(query, **kw))


async def garden(settings: Settings) -> list[str | None]:
    """GARDEN stored; what full text answers for "garden"."""
    async with open_app(settings) as app:
        await conversation(app, *GARDEN)
    baseline = await unreranked(settings, "garden")
    assert sorted(baseline, key=str) == sorted(GARDEN) and baseline[0] == GARDEN[0]
    return baseline


# -- what the reranker is sent, and the handles that reach a Cohere-compatible server --


def hit(content: str, snippet: str = "") -> SearchResult:
    return SearchResult(
        message_id="m",
        conversation_id="c",
        role="user",
        message_type="user_message",
        content=content,
        snippet=snippet,
        created_at="2026-01-01T00:00:00Z",
        score=1.0,
    )


def test_a_long_candidate_is_cut_keeping_its_matching_part() -> None:
    assert document(hit("  short text ")) == "short text"
    long = "x" * 5000 + " the pottery glaze cracked " + "y" * 100
    sent = document(hit(long, snippet="…the pottery glaze cracked…"))
    assert len(sent) <= MAX_DOCUMENT_CHARS and sent.startswith("xxx") and sent.endswith("x the pottery glaze cracked")
    assert document(hit("z" * 5000, snippet="…zzz…")) == "z" * MAX_DOCUMENT_CHARS  # the match is within the cut
    assert document(hit(None, snippet="only a snippet")) == "only a snippet"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("handle", "env"),
    [
        ("hosted_vllm/fake-rerank", {"HOSTED_VLLM_API_BASE": "{v1}"}),  # vLLM: /v1/rerank
        ("hosted_vllm/fake-rerank", {"HOSTED_VLLM_API_BASE": "{root}"}),  # vLLM: /rerank
        ("infinity/fake-rerank", {"INFINITY_API_BASE": "{root}"}),  # Infinity: /rerank
        ("cohere/fake-rerank", {"COHERE_API_BASE": "{root}", "COHERE_API_KEY": "test"}),  # /v2/rerank
        ("jina_ai/fake-rerank", {"JINA_AI_API_BASE": "{root}", "JINA_AI_API_KEY": "test"}),  # /v1/rerank
        ("huggingface/fake-rerank", {"HUGGINGFACE_API_BASE": "{root}"}),  # TEI's own /rerank shape
    ],
)
async def test_litellm_handles_that_reach_a_self_hosted_reranker(
    handle: str, env: dict[str, str], fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    urls = {"v1": fake_provider.base_url, "root": fake_provider.base_url.removesuffix("/v1")}
    for key, value in env.items():
        monkeypatch.setenv(key, value.format(**urls))
    gateway = ModelGateway(Settings())
    gateway.open()
    await gateway.load()  # the call's budget covers importing litellm, which a busy machine can take longer for
    try:
        ranked = await gateway.rerank(handle, "red fox", ["a blue bird", "the red fox", "fox"], top_n=2, within=5)
    finally:
        await gateway.close()
    assert ranked == [(1, 1.0), (2, 0.5)]
    sent = fake_provider.rerank_inputs[-1]
    assert (sent["query"], sent["documents"], sent["top_n"]) == ("red fox", ["a blue bird", "the red fox", "fox"], 2)


async def test_gateway_rerank_maps_errors_and_bounds_its_time(
    fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOSTED_VLLM_API_BASE", fake_provider.base_url)
    gateway = ModelGateway(Settings())
    gateway.open()
    await gateway.load()
    try:
        fake_provider.rerank_error = 401
        with pytest.raises(ProviderError) as refused:
            await gateway.rerank(RERANK, "q", ["a", "b"], top_n=2, within=5)
        assert refused.value.error_class == "AuthenticationError"
        assert "scripted rerank failure" in refused.value.provider_message
        fake_provider.rerank_error, fake_provider.rerank_delay = None, 3.0
        started = time.monotonic()
        with pytest.raises(ProviderError) as slow:
            await gateway.rerank(RERANK, "q", ["a", "b"], top_n=2, within=0.3)
        assert slow.value.error_class == "Timeout" and slow.value.status_code == 504
        assert time.monotonic() - started < 2.5  # no retries behind the budget, nor the stall
    finally:
        await gateway.close()


# -- settings --


@pytest.mark.parametrize(
    ("handle", "says"),
    [
        ("rerank-v3.5", "is not a model handle"),
        ("cohere/", "is not a model handle"),
        ("cohere/rerank v3", "is not a model handle"),
        ("local/ms-marco-minilm", "no reranker runs in this process"),
        ("openai/bge-reranker", "litellm has no rerank route for openai/"),
    ],
)
def test_a_malformed_rerank_model_is_refused_at_start(handle: str, says: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=says):
        Settings(rerank_model=handle)
    script = shutil.which("mcp-server-conversations", path=os.path.dirname(sys.executable))
    assert script
    out = subprocess.run(
        [script, "--db", str(tmp_path / "x.db"), "--rerank-model", handle],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 2 and says in out.stderr and "Traceback" not in out.stderr


def test_rerank_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVERSATIONS_RERANK_MODEL", " cohere/rerank-v3.5 ")
    monkeypatch.setenv("CONVERSATIONS_RERANK_TIMEOUT", "0.5")
    settings = Settings()
    assert (settings.rerank_model, settings.rerank_timeout) == ("cohere/rerank-v3.5", 0.5)
    assert Settings(rerank_model="").rerank_model is None
    for bad in ("0", "-1", "inf", "61"):
        with pytest.raises(ValueError, match="rerank_timeout"):
            Settings(rerank_timeout=bad)


# -- the reranked page --


async def test_the_page_is_the_rerankers_order_over_full_text(reranking: Settings, fake_provider: FakeProvider) -> None:
    async with open_app(reranking) as app:
        await conversation(app, *GARDEN, "nothing to see here")
        await ready(app)
        fake_provider.rerank_scores = {"community": 0.9, "tomatoes": 0.5, "fence": 0.1}
        found = await app.service.search("garden", limit=2)
        assert contents(found) == [GARDEN[2], GARDEN[1]]
        assert [r.score for r in found.results] == [0.9, 0.5]  # the reranker's relevance
        assert "garden" in found.results[0].snippet  # full text's snippet kept
        sent = fake_provider.rerank_inputs[-1]
        assert (sent["model"], sent["query"], sent["top_n"]) == ("fake-rerank", "garden", 2)
        assert sorted(sent["documents"]) == sorted(GARDEN)  # every candidate, not just a page's worth
    assert (await unreranked(reranking, "garden"))[0] == GARDEN[0]  # the order the reranker changed


async def test_the_reranker_sees_depth_candidates_and_lifts_one_from_deep(
    reranking: Settings, fake_provider: FakeProvider
) -> None:
    notes = [f"budget note {i:02d}" + " and more words" * (i % 7) for i in range(DEPTH + 10)]
    async with open_app(reranking) as app:
        await conversation(app, *notes)
    baseline = await unreranked(reranking, "budget note", limit=100)
    assert len(baseline) == len(notes)
    deep, beyond = baseline[DEPTH - 5], baseline[-1]  # within the candidates; past them
    assert deep is not None and beyond is not None
    fake_provider.rerank_scores = {deep: 9.0, beyond: 10.0}
    async with open_app(reranking) as app:
        await ready(app)
        found = contents(await app.service.search("budget note", limit=3))
    assert found[0] == deep and beyond not in found
    assert len(fake_provider.rerank_inputs[-1]["documents"]) == DEPTH


async def test_a_page_larger_than_the_depth_reranks_the_page(reranking: Settings, fake_provider: FakeProvider) -> None:
    async with open_app(reranking) as app:
        await conversation(app, *(f"budget line {i}" for i in range(60)))
        await ready(app)
        found = await app.service.search("budget", limit=50)
        assert len(found.results) == 50 and len(fake_provider.rerank_inputs[-1]["documents"]) == 50


async def test_with_an_embedding_model_the_fused_candidates_are_reranked(
    reranking: Settings, fake_provider: FakeProvider
) -> None:
    hybrid = reranking.model_copy(update={"embedding_model": EMBED})
    ceramics = "Ada signed up for a ceramics course on Tuesdays"  # a vector match: no shared word
    glaze = "The pottery glaze arrived cracked"
    async with open_app(hybrid) as app:
        await conversation(app, "We talked about the marathon", glaze, ceramics, "Grocery list: eggs")
        await eventually(lambda: _embedded(app, 4), "the indexer to embed every message")
        await ready(app)
        fused = contents(await app.service.search("pottery", limit=2))
        assert fused == [glaze, ceramics]  # the rerank scores below are not set yet: word overlap keeps it
        fake_provider.rerank_scores = {"ceramics": 0.8, "glaze": 0.2}
        found = contents(await app.service.search("pottery", limit=2))
        assert found == [ceramics, glaze]
        assert ceramics in fake_provider.rerank_inputs[-1]["documents"]  # the vector side's candidate was sent
    async with open_app(hybrid.model_copy(update={"rerank_model": None})) as app:
        assert contents(await app.service.search("pottery", limit=2)) == [glaze, ceramics]


async def test_a_date_in_the_question_keeps_its_span_first(reranking: Settings, fake_provider: FakeProvider) -> None:
    async with open_app(reranking) as app:
        earlier = "2025-01-10T10:00:00Z"
        conv = await conversation(app, "pottery class with Bo", "pottery wheel for sale", created_at=earlier)
        await say(app.store, conv, "pottery fair in town", created_at="2026-03-10T10:00:00Z")
        await ready(app)
        fake_provider.rerank_scores = {"wheel": 0.9, "class": 0.5, "fair": 0.1}
        found = contents(await app.service.search("pottery in March 2026", limit=2))
        assert found == ["pottery fair in town", "pottery wheel for sale"]  # the span's hit, then the reranker's
        assert len(fake_provider.rerank_inputs) == 1 and len(fake_provider.rerank_inputs[0]["documents"]) == 3
        assert fake_provider.rerank_inputs[0]["query"] == "pottery"  # the date is the span, not words
        only = contents(await app.service.search("pottery in March 2026", limit=1))
        assert only == ["pottery fair in town"]


# -- failures --


@pytest.mark.above_storage("the reranker and its fallback sit above storage")
async def test_a_failing_reranker_leaves_the_unreranked_order_and_cools_down(
    reranking: Settings, fake_provider: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="mcp_server_conversations.search.rerank")
    baseline = await garden(reranking)
    async with open_app(reranking) as app:
        reranker = await ready(app)
        fake_provider.rerank_scores = {"community": 5.0}
        fake_provider.rerank_error = 500
        assert contents(await app.service.search("garden")) == baseline
        assert "search answered un-reranked" in caplog.text and RERANK in caplog.text
        asked = len(fake_provider.rerank_inputs)
        assert contents(await app.service.search("garden")) == baseline  # in cooldown: not asked
        assert len(fake_provider.rerank_inputs) == asked
        fake_provider.rerank_error = None
        reranker._down_until = 0.0  # the cooldown is over
        assert contents(await app.service.search("garden"))[0] == GARDEN[2]
        assert "answers again" in caplog.text


@pytest.mark.above_storage("the reranker and its fallback sit above storage")
async def test_a_slow_reranker_costs_one_search_its_budget(
    reranking: Settings, fake_provider: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="mcp_server_conversations.search.rerank")
    slow = reranking.model_copy(update={"rerank_timeout": 0.3})
    baseline = await garden(slow)
    async with open_app(slow) as app:
        await ready(app)
        fake_provider.rerank_scores = {"community": 5.0}
        fake_provider.rerank_delay = 3.0
        started = time.monotonic()
        first = await app.service.search("garden")
        took = time.monotonic() - started
        second = await app.service.search("garden")
    assert contents(first) == contents(second) == baseline
    assert 0.3 <= took < 2.5  # the budget, not the reranker's stall
    assert len(fake_provider.rerank_inputs) == 1  # then the cooldown: the second search did not wait
    assert "failed after 0.3" in caplog.text


@pytest.mark.above_storage("the reranker and its fallback sit above storage")
async def test_an_unreachable_reranker_leaves_the_unreranked_order(
    reranking: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOSTED_VLLM_API_BASE", "http://127.0.0.1:9/v1")  # nothing listens on the discard port
    baseline = await garden(reranking)
    async with open_app(reranking) as app:
        await ready(app)
        assert contents(await app.service.search("garden")) == baseline


# -- every caller: a spawned stdio server, Letta's REST API --

LAZY = textwrap.dedent(
    """
    import asyncio, json, sys, threading, time
    from mcp import Client
    from mcp_server_conversations.app import open_app
    from mcp_server_conversations.runs import runtime
    from mcp_server_conversations.config import Settings
    from mcp_server_conversations.mcp.server import build_server
    from mcp_server_conversations.storage import NewMessage

    async def main():
        settings = Settings(db=sys.argv[1], rerank_model="hosted_vllm/fake-rerank")
        runtime.WARM_DELAY = 3600  # only what initialize, and the search, start
        async with open_app(settings) as app:
            conv = await app.service.create_conversation()
            texts = ["the garden fence", "the community garden"]
            await app.store.append_messages(conv.id, [NewMessage("user_message", "user", content=t) for t in texts])
        async with Client(build_server(settings), mode="legacy") as c:
            print("after initialize:", "litellm" in sys.modules, flush=True)
            found = await c.call_tool("conversation_search", {"query": "garden"})
            hits = len(json.loads(found.content[0].text)["results"])
            print("search before the import:", found.is_error, hits, flush=True)
            deadline = time.monotonic() + 60
            # until the warm-up thread is done: an interpreter that exits while a daemon thread still
            # imports can abort
            while "litellm" not in sys.modules or any(t.name == "litellm-warm" for t in threading.enumerate()):
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            print("imported after the search:", "litellm" in sys.modules, flush=True)

    asyncio.run(main())
    """
)


@pytest.mark.above_storage("about what the process imports when")
async def test_litellm_is_not_imported_before_initialize(settings: Settings) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        LAZY,
        str(settings.resolved_db()),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert out.decode().splitlines() == [
        "after initialize: False",
        "search before the import: False 2",
        "imported after the search: True",
    ]


@pytest.mark.slow
@pytest.mark.processes
async def test_a_spawned_stdio_server_reranks(tmp_path: Path, fake_provider: FakeProvider) -> None:
    """The console script with --rerank-model: conversation_search over stdio answers in the
    reranker's order, and stdout carries nothing but JSON-RPC."""
    args = ["--db", str(tmp_path / "stdio.db"), "--model", "openai/fake-model", "--rerank-model", RERANK]
    env = {"HOSTED_VLLM_API_BASE": fake_provider.base_url}
    async with raw_stdio_server(*args, "--rerank-timeout", "5", env=env) as server:
        conv = (await server.tool("create_conversation", {}))["id"]
        fake_provider.enqueue("Noted: the garden fence needs paint.")
        await server.tool("send_message", {"conversation_id": conv, "content": "a walk past the community garden"})
        fake_provider.rerank_scores = {"fence": 0.9, "community": 0.3}
        found = await server.tool("conversation_search", {"query": "garden", "limit": 2})
        assert [r["content"] for r in found["results"]] == [
            "Noted: the garden fence needs paint.",
            "a walk past the community garden",
        ]
        assert fake_provider.rerank_inputs[-1]["query"] == "garden"


def rest_search(base_url: str, agent_id: str) -> list[str]:
    return [r.content for r in letta(base_url).messages.search(query="garden", agent_id=agent_id, limit=2)]


@pytest.mark.above_storage("the REST route over the same service call")
async def test_rest_search_reranks(
    settings: Settings, fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOSTED_VLLM_API_BASE", fake_provider.base_url)
    async with rest_server(settings, rerank_model=RERANK) as served:
        app = served.app
        await conversation(app, *GARDEN)
        await ready(app)
        fake_provider.rerank_scores = {"community": 5.0, "tomatoes": 3.0}
        agent = await app.service.resolve_agent(None)
        assert await sdk(rest_search, served.base_url, agent) == [GARDEN[2], GARDEN[1]]
