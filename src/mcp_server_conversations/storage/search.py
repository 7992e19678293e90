"""Full-text search over the pooled messages of an agent (FTS5, BM25)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from ..models import SearchResult
from ..util import lead
from . import ranking
from .base import SQLiteBase
from .rows import unpack


def _result(r: Any, score: float, snippet: str | None) -> SearchResult:
    return SearchResult(
        message_id=r["id"],
        conversation_id=r["home_conversation_id"],
        role=r["role"],
        message_type=r["message_type"],
        content=r["content"] if r["content"] is not None else r["reasoning"],
        snippet=snippet or lead(r["content"] if r["content"] is not None else r["reasoning"] or ""),
        created_at=r["created_at"],
        score=round(float(score), 6),
    )


# Each term is ranked over at most its newest `cap` matches in scope: reading every match of a word
# found in most of 1M messages took seconds. Rare words, which decide a ranking, are always read in
# full; a common word adds its (small) score to its newest matches only. Scoring is ranking.py's,
# the same on both backends.
RANK_BUDGET = 6000  # per-term matches read in all, shared by the query's terms
MIN_CAP = 500
RESULT_COLUMNS = "m.rowid, m.id, m.home_conversation_id, m.role, m.message_type, m.content, m.reasoning, m.created_at"
SNIPPET = "snippet(messages_fts, 0, '', '', '…', 24) AS snip"


def cap_for(terms: int, limit: int, exact: bool) -> int | None:
    """Matches read per term (None: all of them)."""
    return None if exact else max(MIN_CAP, limit, RANK_BUDGET // max(terms, 1))


class SearchStore(SQLiteBase):
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
        """Messages matching any of `terms` (words from search.terms(), never syntax), best first.
        `exact` reads every match of every term and takes statistics over the whole scope (tests)."""
        if not terms:
            return []
        match = fts_expression(terms)
        quoted = [_quoted(t) for t in terms]

        def read(db: sqlite3.Connection) -> list[SearchResult]:
            where, params = _message_filters(db, agent_id, roles, start, end, conversation_id)
            ranked = _ranked(db, quoted, where, params, limit, cap_for(len(quoted), limit, exact), exact)
            if not ranked:
                return []
            marks = ",".join("?" * len(ranked))
            ids = [r for r, _ in ranked]
            rows = db.execute(f"SELECT {RESULT_COLUMNS} FROM messages m WHERE m.rowid IN ({marks})", ids).fetchall()
            snips = dict(
                db.execute(
                    f"SELECT rowid, {SNIPPET} FROM messages_fts WHERE messages_fts MATCH ? AND rowid IN ({marks})",
                    [match, *ids],
                ).fetchall()
            )
            by_rowid = {r["rowid"]: r for r in rows}
            return [_result(by_rowid[i], score, snips.get(i)) for i, score in ranked if i in by_rowid]

        return await self.database.read(read, snapshot=True)


def _quoted(term: str) -> str:
    """A term as an FTS5 string: whatever it holds is a phrase to match, never FTS5 syntax."""
    return '"' + term.replace('"', '""') + '"'


def fts_expression(terms: Sequence[str]) -> str:
    """The FTS5 MATCH expression for messages holding any of `terms`."""
    return " OR ".join(_quoted(t) for t in terms)


def _varint(blob: bytes | None) -> int:
    """The first SQLite varint of an FTS5 docsize record: the message's length in tokens."""
    value = 0
    for i, byte in enumerate(blob or b""):
        if i == 8:
            return (value << 8) | byte
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return value
    return value


def _ranked(
    db: sqlite3.Connection,
    terms: list[str],
    where: list[str],
    params: dict[str, object],
    limit: int,
    cap: int | None,
    exact: bool,
) -> list[tuple[int, float]]:
    """(rowid, score) of the best `limit` messages in scope, best first (ranking.py)."""
    scope = " AND ".join(where)
    window = "" if exact else f"LIMIT {ranking.WINDOW}"
    agent = {"agent": params["agent"]}  # statistics are the agent's, whatever the filters narrow
    n, oldest = db.execute(
        "SELECT count(*), min(rowid) FROM (SELECT m.rowid FROM messages m WHERE m.agent_id = :agent "
        f"ORDER BY m.rowid DESC {window})",
        agent,
    ).fetchone()
    if not n:
        return []
    stats = ranking.Scope(n=n, oldest=oldest)
    limited = "" if cap is None else f"LIMIT {cap}"
    matches = (
        "SELECT messages_fts.rowid, d.sz FROM messages_fts JOIN messages m ON m.rowid = messages_fts.rowid "
        "JOIN messages_fts_docsize d ON d.id = messages_fts.rowid WHERE messages_fts MATCH :term AND {} "
        f"ORDER BY messages_fts.rowid DESC {limited}"  # driven by the FTS index, never by a scan of the scope
    )
    found: list[ranking.TermHits] = []
    dfs: list[float] = []
    for term in terms:
        rows = db.execute(matches.format(scope), {**params, "term": term}).fetchall()
        hits = ranking.TermHits(
            [r[0] for r in rows], [_varint(r[1]) for r in rows], cap is not None and len(rows) >= cap
        )
        found.append(hits)
        if len(where) > 1:  # filtered: the term's df is still counted over the agent's messages
            rows = db.execute(matches.format("m.agent_id = :agent"), {**agent, "term": term}).fetchall()
            hits = ranking.TermHits([r[0] for r in rows], [0] * len(rows), cap is not None and len(rows) >= cap)
        newer = None
        if ranking.needs_density(hits, stats):
            newer = db.execute(
                "SELECT count(*) FROM messages m WHERE m.agent_id = :agent AND m.rowid >= :last",
                {**agent, "last": hits.rowids[-1]},
            ).fetchone()[0]
        dfs.append(ranking.document_frequency(hits, stats, newer))
    total, uncommon = ranking.scores(found, dfs, n)
    passing = ranking.passing_on(uncommon)
    following = _next_turns(db, passing, scope, params) if passing else {}
    return ranking.best(ranking.with_neighbours(total, uncommon, following), limit)


def _next_turns(db: sqlite3.Connection, rowids: list[int], scope: str, params: dict[str, object]) -> dict[int, int]:
    """rowid -> the next searchable row of the same conversation, where that row is in scope."""
    marks = ",".join(f":r{i}" for i in range(len(rowids)))
    rows = db.execute(
        f"SELECT p.rowid, m.rowid FROM messages p JOIN messages m ON m.rowid = ("
        "SELECT x.rowid FROM messages x WHERE x.conversation_id = p.conversation_id AND x.rowid > p.rowid "
        "AND x.message_type != 'system_message' ORDER BY x.rowid LIMIT 1) "
        f"WHERE p.rowid IN ({marks}) AND {scope}",
        {**params, **{f"r{i}": r for i, r in enumerate(rowids)}},
    ).fetchall()
    return {r[0]: r[1] for r in rows}


def _message_filters(
    db: sqlite3.Connection,
    agent_id: str,
    roles: list[str] | None,
    start: str | None,
    end: str | None,
    conversation_id: str | None,
) -> tuple[list[str], dict[str, object]]:
    """WHERE terms (over `messages m`) and their parameters for a search's scope: the agent, roles,
    dates, and a conversation's whole history (its own rows and the rows it inherited). Shared by
    full-text and vector search so both sides of a hybrid search see the same messages."""
    where = ["m.agent_id = :agent"]
    params: dict[str, object] = {"agent": agent_id}
    if roles:
        names = [f":role{i}" for i in range(len(roles))]
        where.append(f"m.role IN ({','.join(names)})")
        params.update({n[1:]: r for n, r in zip(names, roles, strict=True)})
    if start:
        where.append("m.created_at >= :start")
        params["start"] = start
    if end:
        where.append("m.created_at <= :end")
        params["end"] = end
    if conversation_id:
        conv = db.execute("SELECT inherited FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
        inherited = unpack(conv["inherited"]) if conv else []
        scope = "m.conversation_id = :conv"
        if inherited:
            scope = f"({scope} OR m.rowid IN (SELECT value FROM json_each(:inherited)))"
            params["inherited"] = "[" + ",".join(map(str, inherited)) + "]"
        where.append(scope)
        params["conv"] = conversation_id
    return where, params
