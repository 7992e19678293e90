"""Full-text search with one round of pseudo-relevance feedback.

A question often needs two turns that share no word with each other: "what gift is Maria giving
the friend marrying at the castle?" matches "Pat is getting married at the castle", and the answer
is in "wrapped up a hammock for Pat". The best match's words lead there: its words that the question
did not hold are searched too, at FEEDBACK_WEIGHT of their score (their own idf keeps a rare name
strong and everyday words weak), and added to the first ranking.
"""

from __future__ import annotations

from typing import Any

from ..models import SearchResult
from ..storage import Store
from .query import MAX_TERMS, STOP_WORDS, WORD

FEEDBACK_WEIGHT = 0.3  # share of an expansion term's score added to a message's own
FEEDBACK_FROM = 1  # how many of the best matches lend their words
DEPTH = 50  # candidates read from each ranking before merging


def expansion(results: list[SearchResult], terms: list[str]) -> list[str]:
    """The words of the best results that the query does not hold (stop words and numbers out)."""
    have = set(terms)
    out: list[str] = []
    for r in results[:FEEDBACK_FROM]:
        for w in WORD.findall((r.content or "").lower()):
            w = w.strip("_")
            if w and w not in have and w not in STOP_WORDS and not w.isdigit() and len(w) > 2:
                have.add(w)
                out.append(w)
    return out[:MAX_TERMS]


async def search(store: Store, *, terms: list[str], limit: int, **scope: Any) -> list[SearchResult]:
    """store.search with the best match's other words added at FEEDBACK_WEIGHT, best first."""
    depth = max(limit, DEPTH)
    first = await store.search(terms=terms, limit=depth, **scope)
    extra = expansion(first, terms)
    if not first or not extra or not FEEDBACK_WEIGHT:
        return first[:limit]
    second = await store.search(terms=extra, limit=depth, **scope)
    score = {r.message_id: r.score for r in first}
    found = {r.message_id: r for r in first}
    for r in second:
        score[r.message_id] = score.get(r.message_id, 0.0) + FEEDBACK_WEIGHT * r.score
        found.setdefault(r.message_id, r)
    order = {m: i for i, m in enumerate(found)}
    best = sorted(score, key=lambda m: (-score[m], order[m]))[:limit]
    return [found[m].model_copy(update={"score": round(score[m], 6)}) for m in best]
