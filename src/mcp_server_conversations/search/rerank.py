"""Reranking (`--rerank-model`): a reranker reorders search's final candidates.

Search ranks as it does without one (fused full-text and vectors, or full-text alone), only
DEPTH deep instead of a page; those candidates' texts go to the reranker (a cross-encoder served
by vLLM or Infinity, or Cohere's, Jina's, Voyage's API, through litellm in gateway.py) with the
query, and the page is the reranker's best `limit`, each result's score its relevance.

The reranker is an improvement, never a dependency: when it fails, answers nothing usable or takes
longer than `--rerank-timeout`, the search answers in its un-reranked order and a warning goes to
the log; for `cooldown` seconds after that searches do not ask it, so a dead reranker costs one
search in that time its budget, not every search. Until litellm is imported (shortly after start)
searches are not reranked rather than wait for the import.

Imported only when a rerank model is configured (app.py).
"""

from __future__ import annotations

import asyncio
import logging
import time

from ..config import Settings
from ..gateway import ModelGateway, litellm_ready
from ..models import SearchResult

log = logging.getLogger("mcp_server_conversations.search.rerank")

# Candidates sent to the reranker: it can only lift into the page what is among them, and its time
# grows with each one. Past 40 the share of answers among them grows slowly (bench/quality.py's R@40).
DEPTH = 40
# Characters of a candidate sent: about 500 tokens, as much as a cross-encoder reads (most
# read 512 tokens; the server cuts the rest).
MAX_DOCUMENT_CHARS = 2000


def document(result: SearchResult) -> str:
    """What the reranker reads of a candidate: its text, or when that is long its start and the
    part full-text search matched (the snippet), which may lie past the cut."""
    text = (result.content or result.snippet or "").strip()
    if len(text) <= MAX_DOCUMENT_CHARS:
        return text
    snippet = result.snippet.strip().strip("…").strip()  # its ellipses mark where the text was cut
    if not snippet or snippet in text[:MAX_DOCUMENT_CHARS]:
        return text[:MAX_DOCUMENT_CHARS]
    return text[: max(0, MAX_DOCUMENT_CHARS - len(snippet) - 1)] + " " + snippet


class Reranker:
    """One reranker handle with its latency budget and its cooldown after a failure."""

    cooldown = 15.0  # seconds searches skip the reranker after it failed (the vector side's too)

    def __init__(self, settings: Settings, gateway: ModelGateway) -> None:
        if not settings.rerank_model:
            raise ValueError("Reranker needs settings.rerank_model")
        self.model: str = settings.rerank_model
        self.gateway = gateway
        self.budget = min(settings.rerank_timeout, settings.model_timeout)
        self._down_until = 0.0
        self._failed = False  # the last call failed: the next success is logged

    @staticmethod
    def depth(limit: int) -> int:
        """How many candidates to rank for a page of `limit`."""
        return max(limit, DEPTH)

    async def rerank(self, query: str, candidates: list[SearchResult], limit: int) -> list[SearchResult]:
        """The reranker's best `limit` of the candidates (score: its relevance), or the candidates'
        first `limit` as they are when it cannot answer in time. Never raises but for cancellation."""
        if len(candidates) < 2 or time.monotonic() < self._down_until:
            return candidates[:limit]
        if not litellm_ready():
            self.gateway.warm_in_background()  # the runtime warms it too: this only makes sure
            log.debug("search not reranked: litellm is still being imported")
            return candidates[:limit]
        started = time.monotonic()
        try:
            documents = [document(r) for r in candidates]
            top_n = min(limit, len(candidates))
            ranked = await self.gateway.rerank(self.model, query, documents, top_n=top_n, within=self.budget)
            if not ranked:
                raise ValueError("it ranked none of the candidates")
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a search never fails because of the reranker
            self._down_until = time.monotonic() + self.cooldown
            self._failed = True
            log.warning(
                "search answered un-reranked, and skips the reranker for %.0f s: %s failed after %.2f s: %s",
                self.cooldown,
                self.model,
                time.monotonic() - started,
                getattr(e, "message", None) or str(e) or repr(e),
            )
            return candidates[:limit]
        if self._failed:
            self._failed = False
            log.warning("the reranker %s answers again", self.model)
        out = [candidates[i].model_copy(update={"score": round(score, 6)}) for i, score in ranked]
        if len(out) < limit:  # a reranker that returns fewer than asked: the rest in the order they had
            chosen = {i for i, _ in ranked}
            out += [r for i, r in enumerate(candidates) if i not in chosen][: limit - len(out)]
        return out
