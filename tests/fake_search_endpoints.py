"""The fake provider's search endpoints (tests/fake_provider.py describes them): embeddings as hashed
bags of words, and a reranker that scores the share of the query's words a document holds."""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import threading
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

EMBEDDING_DIM = 64
SYNONYMS = {"pottery": "ceramics", "ceramic": "ceramics"}  # the fake embedding's idea of meaning


def _embed(text: str) -> list[float]:
    vec = [0.0] * EMBEDDING_DIM
    for word in re.findall(r"\w+", text.lower()):
        word = SYNONYMS.get(word, word)
        h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "big")
        vec[h % EMBEDDING_DIM] += 1.0
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


class SearchEndpoints:
    """`/v1/embeddings` and the `/rerank` routes, with the knobs tests set (FakeProvider's __init__)."""

    _lock: threading.Lock
    _cond: threading.Condition
    embedding_inputs: list[list[str]]
    embedding_error: int | None
    embedding_fail_when: str | None
    embedding_delay: float
    embeddings_in_flight: int
    embeddings_max_in_flight: int
    rerank_inputs: list[dict[str, Any]]
    rerank_scores: dict[str, float]
    rerank_error: int | None
    rerank_delay: float

    async def _embeddings(self, request: Request) -> Response:
        body = await request.json()
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
        with self._cond:
            self.embedding_inputs.append([str(t) for t in texts])
            self.embeddings_in_flight += 1
            self.embeddings_max_in_flight = max(self.embeddings_max_in_flight, self.embeddings_in_flight)
        try:
            if self.embedding_delay:
                await asyncio.sleep(self.embedding_delay)
        finally:
            with self._cond:
                self.embeddings_in_flight -= 1
        fail_when = self.embedding_fail_when
        if self.embedding_error and (fail_when is None or any(fail_when in str(t) for t in texts)):
            return JSONResponse(
                {"error": {"message": "scripted embedding failure", "type": "invalid_request_error", "code": None}},
                status_code=self.embedding_error,
            )
        data = [{"object": "embedding", "index": i, "embedding": _embed(str(t))} for i, t in enumerate(texts)]
        tokens = sum(len(str(t)) // 4 + 1 for t in texts)
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": body.get("model", ""),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    def rerank_score(self, query: str, document: str) -> float:
        """A document's relevance: a `rerank_scores` key it contains decides, else the share of the
        query's words it holds."""
        for key, score in self.rerank_scores.items():
            if key in document:
                return score
        words = set(re.findall(r"\w+", query.lower()))
        return round(len(words & set(re.findall(r"\w+", document.lower()))) / (len(words) or 1), 6)

    async def _rerank(self, request: Request) -> Response:
        body = await request.json()
        query = str(body.get("query", ""))
        tei = "texts" in body  # Hugging Face TEI's own shape (litellm's huggingface/ route): texts in, a list out
        sent = body.get("texts" if tei else "documents") or []
        documents = [d if isinstance(d, str) else str((d or {}).get("text", "")) for d in sent]
        top_n = body.get("top_n")
        with self._cond:
            self.rerank_inputs.append(
                {
                    "path": request.url.path,
                    "model": body.get("model", ""),
                    "query": query,
                    "documents": documents,
                    "top_n": top_n,
                }
            )
            self._cond.notify_all()
        if self.rerank_delay:
            await asyncio.sleep(self.rerank_delay)
        if self.rerank_error:
            return JSONResponse(
                {"message": "scripted rerank failure", "error": {"message": "scripted rerank failure"}},
                status_code=self.rerank_error,
            )
        scored = sorted(
            ((i, self.rerank_score(query, d)) for i, d in enumerate(documents)), key=lambda item: -item[1]
        )  # sorted() is stable: ties keep the order sent
        if isinstance(top_n, int) and top_n > 0:
            scored = scored[:top_n]
        if tei:
            return JSONResponse([{"index": i, "score": s} for i, s in scored])
        return JSONResponse(
            {
                "id": uuid.uuid4().hex,
                "results": [{"index": i, "relevance_score": s} for i, s in scored],
                "meta": {"billed_units": {"search_units": 1}},
                "usage": {"total_tokens": sum(len(d) // 4 + 1 for d in documents)},
            }
        )

    async def _remote_rerank(self, request: Request) -> Response:
        knobs = await request.json()
        with self._lock:
            if "scores" in knobs:
                self.rerank_scores = {str(k): float(v) for k, v in (knobs["scores"] or {}).items()}
            if "error" in knobs:
                self.rerank_error = knobs["error"]
            if "delay" in knobs:
                self.rerank_delay = float(knobs["delay"] or 0.0)
        return JSONResponse({"rerank": True})
