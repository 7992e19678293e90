"""Full-text search (PostgreSQL): messages matching any of the words, ranked as on SQLite.

Each term's matches in scope (newest first, at most `cap` of them, each with its tsvector's length)
are read through the GIN index, and storage/ranking.py scores them with the agent's own term
statistics and passes a share to the next turns, exactly as the SQLite backend does; only a
message's length differs (distinct lexemes here, tokens there). `exact=True` reads every match.
Each term is `phraseto_tsquery('conv', …)` of its normalized text: never query syntax."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...models import SearchResult
from ...util import lead
from .. import ranking
from ..search import cap_for
from .base import Conn, PgBase
from .text import SEARCH_TEXT, normalize

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
            ranked = await _ranked(c, words, agent_id, roles, start, end, conversation_id, limit, exact)
            if not ranked:
                return []
            rows = await c.fetch(
                "SELECT m.rowid, m.id, m.home_conversation_id, m.role, m.message_type, m.content, m.reasoning, "
                f"m.created_at, {SEARCH_TEXT} AS text, ts_headline('conv', {SEARCH_TEXT}, "
                "(SELECT string_agg('(' || q::text || ')', ' | ') FROM (SELECT phraseto_tsquery('conv', t) AS q "
                "FROM unnest($2::text[]) AS t) x WHERE numnode(q) > 0)"
                f"::tsquery, '{HEADLINE}') AS snip, m.search_tsv @@ (SELECT string_agg('(' || q::text || ')', ' | ') "
                "FROM (SELECT phraseto_tsquery('conv', t) AS q FROM unnest($2::text[]) AS t) x "
                "WHERE numnode(q) > 0)::tsquery AS matched FROM messages m WHERE m.rowid = ANY($1::bigint[])",
                [r for r, _ in ranked],
                words,
            )
            by_rowid = {r["rowid"]: r for r in rows}
            return [_result(by_rowid[r], score) for r, score in ranked if r in by_rowid]

        return await self.database.read(read, snapshot=True)


async def _ranked(
    c: Conn,
    words: list[str],
    agent_id: str,
    roles: list[str] | None,
    start: str | None,
    end: str | None,
    conversation_id: str | None,
    limit: int,
    exact: bool,
) -> list[tuple[int, float]]:
    """(rowid, score) of the best `limit` messages in scope, best first (ranking.py, as on SQLite)."""
    window = "" if exact else f"LIMIT {ranking.WINDOW}"
    stats = await c.fetchrow(
        "SELECT count(*), min(rowid) FROM (SELECT m.rowid FROM messages m WHERE m.agent_id = $1 "
        f"ORDER BY m.rowid DESC {window}) w",
        agent_id,
    )
    n = int(stats[0])
    if not n:
        return []
    population = ranking.Scope(n=n, oldest=int(stats[1]))
    cap = cap_for(len(words), limit, exact)
    limited = "" if cap is None else f"LIMIT {cap}"
    scope = await scope_of(c, agent_id, roles, start, end, conversation_id, taken=1)
    filtered = len(scope.where) > 1
    matches = (
        "SELECT m.rowid, length(m.search_tsv) FROM messages m WHERE m.search_tsv @@ phraseto_tsquery('conv', $1) "
        "AND {} ORDER BY m.rowid DESC " + limited
    )
    found: list[ranking.TermHits] = []
    dfs: list[float] = []
    for word in words:
        rows = await c.fetch(matches.format(scope.sql), word, *scope.params)
        hits = ranking.TermHits([r[0] for r in rows], [r[1] for r in rows], cap is not None and len(rows) >= cap)
        found.append(hits)
        if filtered:  # filtered: the term's df is still counted over the agent's messages
            rows = await c.fetch(matches.format("m.agent_id = $2"), word, agent_id)
            hits = ranking.TermHits([r[0] for r in rows], [0] * len(rows), cap is not None and len(rows) >= cap)
        newer = None
        if ranking.needs_density(hits, population):
            newer = await c.fetchval(
                "SELECT count(*) FROM messages m WHERE m.agent_id = $1 AND m.rowid >= $2", agent_id, hits.rowids[-1]
            )
        dfs.append(ranking.document_frequency(hits, population, newer))
    total, uncommon = ranking.scores(found, dfs, n)
    passing = ranking.passing_on(uncommon)
    following: dict[int, int] = {}
    if passing:
        after = await scope_of(c, agent_id, roles, start, end, conversation_id, taken=1)
        rows = await c.fetch(
            "SELECT p.rowid, m.rowid FROM messages p JOIN LATERAL (SELECT x.rowid FROM messages x "
            "WHERE x.conversation_id = p.conversation_id AND x.rowid > p.rowid AND x.message_type <> 'system_message' "
            "ORDER BY x.rowid LIMIT 1) n ON TRUE JOIN messages m ON m.rowid = n.rowid "
            f"WHERE p.rowid = ANY($1::bigint[]) AND {after.sql}",
            passing,
            *after.params,
        )
        following = {r[0]: r[1] for r in rows}
    return ranking.best(ranking.with_neighbours(total, uncommon, following), limit)


def _result(r: Any, score: float) -> SearchResult:
    return SearchResult(
        message_id=r["id"],
        conversation_id=r["home_conversation_id"],
        role=r["role"],
        message_type=r["message_type"],
        content=r["content"] if r["content"] is not None else r["reasoning"],
        snippet=_snippet(r["text"] or "", r["snip"] or "") if r["matched"] else lead(r["text"] or ""),
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
