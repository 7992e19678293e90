"""Full-text search (PostgreSQL): messages matching any of the words, ranked with term rarity.

A message's score is Σ over the query's terms of IDF(term) × ts_rank(search_tsv, term, 1): BM25's
global IDF (as FTS5 computes it, over all messages) times PostgreSQL's length-normalized term
frequency. GIN keeps no term frequencies, so ranking reads every candidate's tsvector; as on SQLite
each term is ranked over at most its newest `cap` matches in scope (exact below the cap: the terms
that decide a ranking are the rare ones), and `exact=True` ranks every match (the tests' oracle).
Each term is `phraseto_tsquery('conv', …)` of its normalized text: never query syntax."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

from ...models import SearchResult
from ..search import MIN_CAP, RANK_BUDGET
from .base import Conn, PgBase
from .text import SEARCH_TEXT, normalize

DF_COUNT_LIMIT = 20_000  # matches counted exactly per term; beyond, the planner's statistics estimate df
N_EXACT_BELOW = 200_000  # messages counted exactly below this many (estimated from pg_class above)
STATS_TTL = 60.0
HEADLINE = 'StartSel="", StopSel="", MaxWords=24, MinWords=12, ShortWord=0'


class Scope:
    """WHERE terms over `messages m` and their parameters, numbered after the `taken` ones: a search's
    agent, roles, dates and a conversation's whole history (its own rows and those it inherited)."""

    def __init__(self, taken: int = 0) -> None:
        self.where: list[str] = []
        self.params: list[Any] = []
        self.taken = taken

    def add(self, sql: str, *values: Any) -> None:
        marks = [f"${self.taken + len(self.params) + i}" for i in range(1, len(values) + 1)]
        self.where.append(sql.format(*marks))
        self.params.extend(values)

    @property
    def sql(self) -> str:
        return " AND ".join(self.where) if self.where else "TRUE"

    def mark(self, value: Any) -> str:
        self.params.append(value)
        return f"${self.taken + len(self.params)}"


async def scope_of(
    c: Conn, agent_id: str, roles: list[str] | None, start: str | None, end: str | None,
    conversation_id: str | None, taken: int = 0,
) -> Scope:  # fmt: skip
    s = Scope(taken)
    s.add("m.agent_id = {}", agent_id)
    if roles:
        s.add("m.role = ANY({}::text[])", list(roles))
    if start:
        s.add("m.created_at >= {}", start)
    if end:
        s.add("m.created_at <= {}", end)
    if conversation_id:
        inherited = await c.fetchval("SELECT inherited FROM conversations WHERE id = $1", conversation_id)
        if inherited:
            s.add("(m.conversation_id = {} OR m.rowid = ANY({}::bigint[]))", conversation_id, list(inherited))
        else:
            s.add("m.conversation_id = {}", conversation_id)
    return s


class PgSearchStore(PgBase):
    _stats: tuple[float, float] | None = None  # (when, N)

    async def search(
        self, *, agent_id: str, terms: Sequence[str], roles: list[str] | None, start: str | None,
        end: str | None, conversation_id: str | None, limit: int, exact: bool = False,
    ) -> list[SearchResult]:  # fmt: skip
        words = [w for w in dict.fromkeys(normalize(t) or "" for t in terms) if w]
        if not words:
            return []

        async def read(c: Conn) -> list[SearchResult]:
            idf = await self._idf(c, words)
            scope = await scope_of(c, agent_id, roles, start, end, conversation_id, taken=2)
            cap = "" if exact else f"LIMIT {max(MIN_CAP, limit, RANK_BUDGET // len(words))}"
            ranked = await c.fetch(
                "WITH q AS (SELECT x.t, phraseto_tsquery('conv', x.t) AS query, x.idf "
                "FROM unnest($1::text[], $2::float8[]) AS x(t, idf)), "
                "hits AS (SELECT h.rowid, q.idf * ts_rank(h.search_tsv, q.query, 1) AS score FROM q "
                "CROSS JOIN LATERAL (SELECT m.rowid, m.search_tsv FROM messages m WHERE m.search_tsv @@ q.query "
                f"AND {scope.sql} ORDER BY m.rowid DESC {cap}) h) "
                "SELECT rowid, sum(score) AS score FROM hits GROUP BY rowid ORDER BY score DESC, rowid DESC "
                f"LIMIT {scope.mark(limit)}",
                words, [idf[w] for w in words], *scope.params,
            )  # fmt: skip
            if not ranked:
                return []
            rows = await c.fetch(
                "SELECT m.rowid, m.id, m.home_conversation_id, m.role, m.message_type, m.content, m.reasoning, "
                f"m.created_at, {SEARCH_TEXT} AS text, ts_headline('conv', {SEARCH_TEXT}, "
                "(SELECT string_agg('(' || q::text || ')', ' | ') FROM (SELECT phraseto_tsquery('conv', t) AS q "
                "FROM unnest($2::text[]) AS t) x WHERE numnode(q) > 0)"
                f"::tsquery, '{HEADLINE}') AS snip FROM messages m WHERE m.rowid = ANY($1::bigint[])",
                [r[0] for r in ranked], words,
            )  # fmt: skip
            by_rowid = {r["rowid"]: r for r in rows}
            return [_result(by_rowid[r[0]], r[1]) for r in ranked if r[0] in by_rowid]

        return await self.database.read(read, snapshot=True)

    async def _idf(self, c: Conn, words: list[str]) -> dict[str, float]:
        """BM25's IDF of each term over all messages (FTS5's formula and its 1e-6 floor)."""
        n = await self._messages(c)
        counts = await c.fetch(
            "SELECT x.t, (SELECT count(*) FROM (SELECT 1 FROM messages m WHERE m.search_tsv @@ "
            "phraseto_tsquery('conv', x.t) LIMIT $2) s) FROM unnest($1::text[]) AS x(t)",
            words, DF_COUNT_LIMIT,
        )  # fmt: skip
        df = {r[0]: float(r[1]) for r in counts}
        common = [w for w in words if df[w] >= DF_COUNT_LIMIT]
        if common:
            df.update(await _estimated_df(c, common, n))
        out = {}
        for w in words:
            d = min(df[w], n)
            out[w] = max(math.log((n - d + 0.5) / (d + 0.5)), 1e-6)
        return out

    async def _messages(self, c: Conn) -> float:
        """How many searchable messages there are (cached a minute; estimated when there are many)."""
        now = time.monotonic()
        if self._stats is not None and now - self._stats[0] < STATS_TTL and self._stats[1] >= N_EXACT_BELOW:
            return self._stats[1]
        n = float(await c.fetchval("SELECT reltuples FROM pg_class WHERE oid = 'messages'::regclass") or 0)
        if n < N_EXACT_BELOW:
            n = float(await c.fetchval("SELECT count(*) FROM messages WHERE search_tsv IS NOT NULL"))
        self._stats = (now, n)
        return max(n, 1.0)


async def _estimated_df(c: Conn, words: list[str], n: float) -> dict[str, float]:
    """df of very common terms from the planner's statistics (never counted: that reads every match)."""
    stats = await c.fetchrow(
        "SELECT most_common_elems::text::text[], most_common_elem_freqs FROM pg_stats "
        "WHERE tablename = 'messages' AND attname = 'search_tsv'"
    )
    freq = dict(zip(stats[0], stats[1], strict=False)) if stats and stats[0] else {}
    out = {}
    for w in words:
        lexemes = await c.fetchval("SELECT tsvector_to_array(to_tsvector('conv', $1))", w)
        f = min((freq.get(x, 0.0) for x in lexemes), default=0.0)
        out[w] = max(float(DF_COUNT_LIMIT), f * n)
    return out


def _result(r: Any, score: float) -> SearchResult:
    return SearchResult(
        message_id=r["id"],
        conversation_id=r["home_conversation_id"],
        role=r["role"],
        message_type=r["message_type"],
        content=r["content"] if r["content"] is not None else r["reasoning"],
        snippet=_snippet(r["text"] or "", r["snip"] or ""),
        created_at=r["created_at"],
        score=max(round(float(score), 6), 1e-6),  # a match always scores above nothing
    )


def _snippet(text: str, headline: str) -> str:
    """ts_headline's fragment in FTS5 snippet's form: '…' where it cuts the text short."""
    if not headline:
        return ""
    flat = " ".join(text.split())
    head = " ".join(headline.split())
    pre = "" if flat.startswith(head[:16]) else "…"
    post = "" if flat.endswith(head[-16:]) else "…"
    return f"{pre}{headline.strip()}{post}"
