"""Hybrid ranking's pure parts: the text that is embedded for a query, similarity against an
agent's centred vectors, and the fusion of the full-text and vector rankings.

- Fusion is score-aware: each side's scores become z-scores within that side's candidates, and a
  side counts in proportion to how far its best candidate stands out (its top z-score). A side
  with one clear hit (a rare word, a close paraphrase) keeps it near the top even when the other
  side never saw it, which rank-only fusion (reciprocal ranks with k=60) loses; a side whose
  scores are flat (a weak model, a query of common words) barely moves the other. A candidate
  one side did not return counts as that side's average (its lists are cut at a depth, so it is
  unknown there, not worst). Full-text weighs LEXICAL_WEIGHT, vectors the rest. With no vector
  candidates the order is full-text's.
- The embedded query leaves out dates ("in May 2023", "on 7 May", "2023-05-07"): messages state
  events, not calendar dates, so a date only pulls the query towards other dated text.
- Vector similarity is cosine after subtracting the agent's mean vector: what most of an agent's
  messages share (its speakers' names, its recurring small talk) stops deciding the ranking,
  which otherwise favours short greetings that are little but that shared part.
"""

from __future__ import annotations

import numpy as np

from ..local.models import is_static
from ..models import SearchResult
from ..util import lead
from .dates import without_dates

LEXICAL_WEIGHT = 0.5  # full-text's share of the fused score (vectors: the rest)
STATIC_LEXICAL_WEIGHT = 0.7  # full-text's share beside a static word-vector model (local/models.py STATIC)
LONE = 3.0  # the z-score of a ranking's only candidate
CENTER_AT = 32  # fewer vectors than this give no useful mean: plain cosine


def lexical_weight(model: str) -> float:
    """Full text's share of the fused score beside the embedding model `model`: a static word-vector
    model, which knows little full text does not, counts less (fused below that it fell under full
    text alone on our recall set)."""
    return STATIC_LEXICAL_WEIGHT if is_static(model) else LEXICAL_WEIGHT


def embedding_query(text: str) -> str:
    """The query as it is embedded: dates left out (the whole text if nothing else is left)."""
    return without_dates(text)


def centre(vectors: np.ndarray, total: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows' mean and each row's dot product with it (kept with the matrix until it changes)."""
    mu = (total / len(vectors)).astype(np.float32)
    return mu, vectors @ mu


def similarities(vectors: np.ndarray, q: np.ndarray, centred: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    """Cosine of each (L2-normalized) row with `q` after both lose the rows' mean (`centred` is
    `centre`'s answer); plain cosine when `centred` is None. One pass over the matrix either way."""
    v_q = vectors @ q
    if centred is None:
        return v_q
    mu, v_mu = centred
    q_mu, mu_mu = float(q @ mu), float(mu @ mu)
    q_norm = float(np.sqrt(max(1.0 - 2.0 * q_mu + mu_mu, 1e-12)))
    v_norm = np.sqrt(np.maximum(1.0 - 2.0 * v_mu + mu_mu, 1e-12))
    return (v_q - v_mu - q_mu + mu_mu) / (v_norm * q_norm)


def _standardized(ranking: list[SearchResult]) -> tuple[list[float], float]:
    """Each candidate's z-score within its ranking, and the ranking's weight (its top z-score).
    A lone candidate (one message has the word) counts as a clear hit, three deviations out."""
    if len(ranking) == 1:
        return [LONE], LONE
    scores = np.asarray([r.score for r in ranking], dtype=np.float64)
    spread = float(scores.std())
    if not np.isfinite(spread) or spread <= 0:
        return [0.0] * len(ranking), 0.0
    z = (scores - scores.mean()) / spread
    return z.tolist(), max(float(z.max()), 0.0)


def fuse(
    full_text: list[SearchResult], vector: list[SearchResult], limit: int, lexical_weight: float = LEXICAL_WEIGHT
) -> list[SearchResult]:
    """The two rankings (each best first, `score` higher is better) fused, best first; `score` is
    the fused score. A full-text hit keeps its snippet; a vector-only hit gets the start of its
    text. Ties keep full-text order first."""
    if not vector:  # before vectors exist, or with the vector side down: full-text as it is
        return full_text[:limit]
    fused: dict[str, float] = {}
    found: dict[str, SearchResult] = {}
    for ranking, weight in ((full_text, lexical_weight), (vector, 1.0 - lexical_weight)):
        if not ranking:
            continue
        z, stands_out = _standardized(ranking)
        for result, score in zip(ranking, z, strict=True):
            fused[result.message_id] = fused.get(result.message_id, 0.0) + weight * stands_out * score
            found.setdefault(result.message_id, result)
    order = {message_id: i for i, message_id in enumerate(found)}  # full-text candidates come first
    best = sorted(fused, key=lambda message_id: (-fused[message_id], order[message_id]))[:limit]
    out = []
    for message_id in best:
        result = found[message_id]
        update: dict[str, object] = {"score": round(fused[message_id], 6)}
        if not result.snippet:
            update["snippet"] = lead(result.content or "")
        out.append(result.model_copy(update=update))
    return out
