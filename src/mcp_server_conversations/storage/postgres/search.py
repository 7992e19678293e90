"""Full-text search (PostgreSQL): messages matching any of the words, ranked with term rarity.

A message's score is Σ over the query's terms of IDF(term) × ts_rank(search_tsv, term, 1): BM25's
global IDF (as FTS5 computes it, over all messages) times PostgreSQL's length-normalized term
frequency. GIN keeps no term frequencies, so ranking reads every candidate's tsvector; as on SQLite
each term is ranked over at most its newest `cap` matches in scope (exact below the cap: the terms
that decide a ranking are the rare ones), and `exact=True` ranks every match (the tests' oracle).
Each term is `phraseto_tsquery('conv', …)` of its normalized text: never query syntax."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ...models import SearchResult
from ..search import MIN_CAP, RANK_BUDGET
from .base import Conn, PgBase
from .text import SEARCH_TEXT, normalize

DF_COUNT_LIMIT = 1_000  # matches counted exactly per term; beyond, the planner's statistics estimate df
N_EXACT_BELOW = 20_000  # messages counted exactly below this many (estimated from pg_class above)
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
    c: Conn,
    agent_id: str,
    roles: list[str] | None,
    start: str | None,
    end: str | None,
    conversation_id: str | None,
    taken: int = 0,
) -> Scope:
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
    async def search(
        self,
        *,
        agent_id: str,
        terms: Sequence[str],
        roles: list[str] | None,
        start: str | None,
        end: str | None,
        conversation_id: str | None,
        limit: int,
        exact: bool = False,
    ) -> list[SearchResult]:
        words = [w for w in dict.fromkeys(normalize(t) or "" for t in terms) if w]
        if not words:
            return []

        async def read(c: Conn) -> list[SearchResult]:
            # Plans made for the words at hand: a common word's newest matches are found walking the key
            # backwards, a rare word's through the GIN index; one generic plan would serve one of them badly.
            await c.execute("SET LOCAL plan_cache_mode = force_custom_plan")
            idf = await _idf(c, words)
            scope = await scope_of(c, agent_id, roles, start, end, conversation_id, taken=2 * len(words))
            cap = "" if exact else f"LIMIT {max(MIN_CAP, limit, RANK_BUDGET // len(words))}"
            queries = [f"phraseto_tsquery('conv', ${2 * i + 1})" for i in range(len(words))]
            parts = [
                f"(SELECT m.rowid, ${2 * i + 2}::float8 * ts_rank(m.search_tsv, {q}, 1) AS score FROM messages m "
                f"WHERE m.search_tsv @@ {q} AND {scope.sql} ORDER BY m.rowid DESC {cap})"
                for i, q in enumerate(queries)
            ]
            ranked = await c.fetch(
                f"SELECT rowid, sum(score) AS score FROM ({' UNION ALL '.join(parts)}) hits GROUP BY rowid "
                f"ORDER BY score DESC, rowid DESC LIMIT {scope.mark(limit)}",
                *[v for w in words for v in (w, idf[w])],
                *scope.params,
            )
            if not ranked:
                return []
            rows = await c.fetch(
                "SELECT m.rowid, m.id, m.home_conversation_id, m.role, m.message_type, m.content, m.reasoning, "
                f"m.created_at, {SEARCH_TEXT} AS text, ts_headline('conv', {SEARCH_TEXT}, "
                "(SELECT string_agg('(' || q::text || ')', ' | ') FROM (SELECT phraseto_tsquery('conv', t) AS q "
                "FROM unnest($2::text[]) AS t) x WHERE numnode(q) > 0)"
                f"::tsquery, '{HEADLINE}') AS snip FROM messages m WHERE m.rowid = ANY($1::bigint[])",
                [r[0] for r in ranked],
                words,
            )
            by_rowid = {r["rowid"]: r for r in rows}
            return [_result(by_rowid[r[0]], r[1]) for r in ranked if r[0] in by_rowid]

        return await self.database.read(read, snapshot=True)


async def _idf(c: Conn, words: list[str]) -> dict[str, float]:
    """BM25's IDF of each term over all messages (FTS5's formula and its 1e-6 floor). Document
    frequencies are counted up to DF_COUNT_LIMIT; commoner terms are estimated from the statistics."""
    n = float(await c.fetchval("SELECT reltuples FROM pg_class WHERE oid = 'messages'::regclass") or 0)
    if n < N_EXACT_BELOW:  # small (or never analyzed): counted
        n = float(await c.fetchval("SELECT count(*) FROM messages"))
    n = max(n, 1.0)
    counts = await c.fetchrow(
        "SELECT "
        + ", ".join(
            f"(SELECT count(*) FROM (SELECT 1 FROM messages m WHERE m.search_tsv @@ phraseto_tsquery('conv', ${i}) "
            f"LIMIT {DF_COUNT_LIMIT}) s)"
            for i in range(1, len(words) + 1)
        ),
        *words,
    )
    df = {w: float(counts[i]) for i, w in enumerate(words)}
    common = [w for w in words if df[w] >= DF_COUNT_LIMIT]
    if common:
        df.update(await _estimated_df(c, common, n))
    return {w: max(math.log((n - min(df[w], n) + 0.5) / (min(df[w], n) + 0.5)), 1e-6) for w in words}


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
        floor = min(freq.values(), default=0.0)  # a lexeme not tracked is at most this frequent
        f = min((freq.get(x, floor) for x in lexemes), default=0.0)
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
