"""Full-text ranking shared by both backends: BM25 over term statistics of the search's own scope,
and the next turn's share of what a turn matched. Each backend only finds, per query term, its
matching messages in scope (newest first, with each one's length) and the scope's size; the
arithmetic here is the same for SQLite and PostgreSQL.

- Statistics come from the messages searched (the agent, narrowed by the search's filters), never
  from the rest of the database: a word that is rare overall but in half of one agent's messages
  (its speakers' names) weighs little there, and another agent's messages never move this one's
  ranking. They are taken over the newest WINDOW messages in scope, so a huge agent costs the same
  as a large one; a term's document frequency is counted among its newest `cap` matches and, past
  that, estimated from how densely those matches sit among the newest messages.
- IDF is ln(1 + (N - df + 0.5) / (df + 0.5)): a word in most messages counts little but never
  nothing (BM25's classic IDF turns negative past half, which FTS5 floors to zero).
- Term frequency counts as one: chat turns rarely repeat a word, and neither index gives it
  cheaply without scoring every match. Length normalization is BM25's (mild: b=0.3), against the candidates'
  mean length.
- The answer to a question is often the turn after the one sharing its words ("what did you
  adopt?" / "a beagle"), so each strong match passes NEXT_SHARE of its score to the next turn of
  its conversation. Only the scope's uncommon words pass on: a name in every other turn would
  otherwise lift every reply.
- Equal scores fall back to the newer message (recency is a tie-breaker only).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

K1, B = 1.2, 0.3  # chat turns are short: a one-line greeting must not outrank the turn that says more
WINDOW = 20_000  # statistics are those of the newest WINDOW messages in scope
COMMON = 0.3  # a term in more than this share of the scope never passes score to the next turn
NEXT_SHARE = 0.5  # share of a turn's (uncommon-word) score added to the next turn
NEIGHBOUR_DEPTH = 50  # how many of the best matches pass score on


@dataclass
class TermHits:
    """One query term's matches in scope: rowids newest first and each message's length in
    tokens (or lexemes); `capped` when more matches exist than were read."""

    rowids: list[int]
    lengths: list[int]
    capped: bool


@dataclass
class Scope:
    """The statistics' population: `n` messages (at most WINDOW), the oldest of them `oldest`."""

    n: int
    oldest: int


def idf(n: float, df: float) -> float:
    df = min(max(df, 0.0), n)
    return math.log(1.0 + (n - df + 0.5) / (df + 0.5))


def document_frequency(hits: TermHits, scope: Scope, newer_than_last: int | None) -> float:
    """df of a term among the scope's newest `n` messages. Read exactly when every match was read
    or the matches read reach past the window; otherwise (`newer_than_last`: how many scope
    messages are at least as new as the oldest match read) the matches' density estimates it."""
    inside = sum(1 for r in hits.rowids if r >= scope.oldest)
    if not hits.capped or not hits.rowids or hits.rowids[-1] < scope.oldest or not newer_than_last:
        return float(inside)
    return max(float(inside), len(hits.rowids) * scope.n / newer_than_last)


def needs_density(hits: TermHits, scope: Scope) -> bool:
    """Whether `document_frequency` needs the count of scope messages newer than the last match."""
    return hits.capped and bool(hits.rowids) and hits.rowids[-1] >= scope.oldest


def scores(terms: Sequence[TermHits], dfs: Sequence[float], n: int) -> tuple[dict[int, float], dict[int, float]]:
    """Each candidate's BM25 score, and the part of it from the scope's uncommon terms."""
    lengths: dict[int, int] = {}
    for hits in terms:
        lengths.update(zip(hits.rowids, hits.lengths, strict=True))
    if not lengths:
        return {}, {}
    mean = max(sum(lengths.values()) / len(lengths), 1.0)
    total: dict[int, float] = {}
    uncommon: dict[int, float] = {}
    for hits, df in zip(terms, dfs, strict=True):
        weight = idf(n, df)
        rare = n > 0 and df / n <= COMMON
        for rowid, length in zip(hits.rowids, hits.lengths, strict=True):
            s = weight * (K1 + 1.0) / (1.0 + K1 * (1.0 - B + B * max(length, 1) / mean))
            total[rowid] = total.get(rowid, 0.0) + s
            if rare:
                uncommon[rowid] = uncommon.get(rowid, 0.0) + s
    return total, uncommon


def passing_on(uncommon: dict[int, float]) -> list[int]:
    """The matches whose next turn gets a share of their score: the best NEIGHBOUR_DEPTH."""
    return sorted(uncommon, key=lambda r: (-uncommon[r], -r))[:NEIGHBOUR_DEPTH]


def with_neighbours(total: dict[int, float], uncommon: dict[int, float], following: dict[int, int]) -> dict[int, float]:
    """`total` plus NEXT_SHARE of each passing match's uncommon-word score on its next turn
    (`following`: rowid -> the next in-scope turn's rowid)."""
    out = dict(total)
    for rowid, after in following.items():
        if after in out:
            out[after] += NEXT_SHARE * uncommon.get(rowid, 0.0)
    return out


def best(ranked: dict[int, float], limit: int) -> list[tuple[int, float]]:
    """The `limit` best (rowid, score), best first; equal scores newest first."""
    order = sorted(ranked, key=lambda r: (-ranked[r], -r))[:limit]
    return [(r, ranked[r]) for r in order]
