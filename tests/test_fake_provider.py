"""The fake OpenAI-compatible server itself: the wire shapes other tests rely on (checked with httpx)."""

from __future__ import annotations

import asyncio
import json
import threading

import httpx
import pytest
from fake_provider import FakeProvider


def _sse(resp: httpx.Response) -> list[dict | str]:
    events: list[dict | str] = []
    for line in resp.text.splitlines():
        if line.startswith("data: "):
            data = line[len("data: ") :]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


async def test_streams_reasoning_text_tool_calls_and_usage(fake_provider: FakeProvider) -> None:
    fake_provider.enqueue("Hello big world", reasoning="hmm", tool_calls=[{"name": "t", "arguments": {"a": 1}}])
    body = {
        "model": "fake-model",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "tools": [{"type": "function", "function": {"name": "t"}}],
    }
    async with httpx.AsyncClient() as client:
        resp = await client.post(fake_provider.base_url + "/chat/completions", json=body)
    events = _sse(resp)
    assert events[-1] == "[DONE]"
    chunks = [e for e in events if isinstance(e, dict)]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    reasoning = "".join(c["choices"][0]["delta"].get("reasoning_content") or "" for c in chunks if c["choices"])
    args = "".join(
        tc["function"].get("arguments") or ""
        for c in chunks
        if c["choices"]
        for tc in c["choices"][0]["delta"].get("tool_calls") or []
    )
    assert (text, reasoning, json.loads(args)) == ("Hello big world", "hmm", {"a": 1})
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    req = fake_provider.requests[0]
    assert (req.model, req.last_user, req.tool_names, req.stream) == ("fake-model", "hi", ["t"], True)


async def test_default_reply_echoes_and_when_matches(fake_provider: FakeProvider) -> None:
    fake_provider.enqueue("for B", when="bravo")
    async with httpx.AsyncClient() as client:
        a = await client.post(
            fake_provider.base_url + "/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "alpha"}]},
        )
        b = await client.post(
            fake_provider.base_url + "/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "bravo"}]},
        )
    assert a.json()["choices"][0]["message"]["content"] == "Fake reply to: alpha"
    assert b.json()["choices"][0]["message"]["content"] == "for B"
    assert fake_provider.pending == 0


@pytest.mark.parametrize(("status", "code"), [(401, None), (429, None), (400, "context_length_exceeded")])
async def test_scripted_errors(fake_provider: FakeProvider, status: int, code: str | None) -> None:
    fake_provider.enqueue(error_status=status, error_code=code)
    async with httpx.AsyncClient() as client:
        resp = await client.post(fake_provider.base_url + "/chat/completions", json={"model": "m", "messages": []})
    assert resp.status_code == status
    assert resp.json()["error"]["code"] == code


async def test_wait_for_holds_reply_and_counts_in_flight(fake_provider: FakeProvider) -> None:
    gate = threading.Event()
    for _ in range(2):
        fake_provider.enqueue("held", wait_for=gate)
    async with httpx.AsyncClient() as client:
        body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True}
        tasks = [
            asyncio.create_task(client.post(fake_provider.base_url + "/chat/completions", json=body)) for _ in range(2)
        ]
        await fake_provider.await_requests(2)
        assert not any(t.done() for t in tasks)
        gate.set()
        results = await asyncio.gather(*tasks)
    assert all("held" in r.text for r in results)
    assert fake_provider.max_in_flight == 2


def test_plain_script_use_and_remote_control() -> None:
    with FakeProvider() as fake:
        httpx.post(fake.base_url.removesuffix("/v1") + "/_fake/enqueue", json={"text": "remote"})
        r = httpx.post(fake.base_url + "/chat/completions", json={"model": "m", "messages": []})
        assert r.json()["choices"][0]["message"]["content"] == "remote"
        recorded = httpx.get(fake.base_url.removesuffix("/v1") + "/_fake/requests").json()
        assert recorded["requests"][0]["model"] == "m"
        emb = httpx.post(fake.base_url + "/embeddings", json={"model": "e", "input": ["a b", "c"]}).json()
        assert len(emb["data"]) == 2 and len(emb["data"][0]["embedding"]) == 64


async def test_rerank_in_cohere_and_tei_shapes_scripted_and_failing(fake_provider: FakeProvider) -> None:
    docs = ["a blue bird", "the red fox", "fox"]
    async with httpx.AsyncClient() as client:
        url = fake_provider.base_url + "/rerank"
        cohere = (await client.post(url, json={"model": "r", "query": "red fox", "documents": docs})).json()
        assert [(r["index"], r["relevance_score"]) for r in cohere["results"]] == [(1, 1.0), (2, 0.5), (0, 0.0)]
        tei = (await client.post(url, json={"query": "red fox", "texts": docs})).json()
        assert tei == [{"index": 1, "score": 1.0}, {"index": 2, "score": 0.5}, {"index": 0, "score": 0.0}]
        fake_provider.rerank_scores = {"bird": 2.0}
        top = (await client.post(url, json={"query": "red fox", "documents": docs, "top_n": 1})).json()
        assert top["results"] == [{"index": 0, "relevance_score": 2.0}]
        fake_provider.rerank_error = 503
        assert (await client.post(url, json={"query": "q", "documents": docs})).status_code == 503
    assert [r["top_n"] for r in fake_provider.rerank_inputs] == [None, None, 1, None]


def test_rerank_remote_control() -> None:
    with FakeProvider() as fake:
        root = fake.base_url.removesuffix("/v1")
        httpx.post(root + "/_fake/rerank", json={"scores": {"bird": 3}, "delay": 0.01})
        r = httpx.post(root + "/v2/rerank", json={"query": "fox", "documents": ["fox", "bird"]}).json()
        assert r["results"][0] == {"index": 1, "relevance_score": 3.0}
        httpx.post(root + "/_fake/rerank", json={"error": 500})
        assert httpx.post(root + "/v1/rerank", json={"query": "fox", "documents": ["fox"]}).status_code == 500
        assert len(httpx.get(root + "/_fake/requests").json()["reranks"]) == 2
