"""Full-text search over the pooled messages of an agent (FTS5, BM25)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from ..models import SearchResult
from .base import SQLiteBase
from .rows import unpack


def _result(r: Any, rank: float) -> SearchResult:
    return SearchResult(
        message_id=r["id"],
        conversation_id=r["home_conversation_id"],
        role=r["role"],
        message_type=r["message_type"],
        content=r["content"] if r["content"] is not None else r["reasoning"],
        snippet=r["snip"] or "",
        created_at=r["created_at"],
        score=round(-float(rank), 6),
    )


# BM25 over every match of a very common word is slow (a word found in most of 1M messages
# took seconds), so each term of an OR query is ranked over at most its newest `cap` matches
# within the search's scope, and a message's score is the sum of its per-term scores — which
# is exactly how FTS5's bm25() scores an OR of terms. The result is therefore exact unless a
# term has more than `cap` matches in scope; then that (low-IDF, little-weight) word adds its
# score only to its newest matches. Rare words, which decide the ranking, are always exact.
RANK_BUDGET = 6000  # per-term matches ranked in all, shared by the query's terms
MIN_CAP = 500
RESULT_COLUMNS = "m.rowid, m.id, m.home_conversation_id, m.role, m.message_type, m.content, m.reasoning, m.created_at"
SNIPPET = "snippet(messages_fts, 0, '', '', '…', 24) AS snip"


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
        `exact` ranks every match with one bm25() instead of each term over its newest `cap` (tests)."""
        if not terms:
            return []
        match = fts_expression(terms)
        quoted = [_quoted(t) for t in terms]

        def read(db: sqlite3.Connection) -> list[SearchResult]:
            where, params = _message_filters(db, agent_id, roles, start, end, conversation_id)
            if exact:
                where.insert(0, "messages_fts MATCH :match")
                params.update(match=match, limit=limit)
                rows = db.execute(
                    f"SELECT {RESULT_COLUMNS}, {SNIPPET}, messages_fts.rank AS rank "
                    "FROM messages_fts JOIN messages m ON m.rowid = messages_fts.rowid "
                    f"WHERE {' AND '.join(where)} ORDER BY messages_fts.rank LIMIT :limit",
                    params,
                ).fetchall()
                return [_result(r, r["rank"]) for r in rows]
            ranks = _ranked(db, quoted, where, params, limit)
            if not ranks:
                return []
            marks = ",".join("?" * len(ranks))
            rows = db.execute(
                f"SELECT {RESULT_COLUMNS}, {SNIPPET} FROM messages_fts JOIN messages m ON m.rowid = messages_fts.rowid "
                f"WHERE messages_fts MATCH ? AND messages_fts.rowid IN ({marks})",
                [match, *ranks],
            ).fetchall()
            by_rowid = {r["rowid"]: r for r in rows}
            return [_result(by_rowid[i], rank) for i, rank in ranks.items() if i in by_rowid]

        return await self.database.read(read, snapshot=True)


def _quoted(term: str) -> str:
    """A term as an FTS5 string: whatever it holds is a phrase to match, never FTS5 syntax."""
    return '"' + term.replace('"', '""') + '"'


def fts_expression(terms: Sequence[str]) -> str:
    """The FTS5 MATCH expression for messages holding any of `terms`."""
    return " OR ".join(_quoted(t) for t in terms)


def _ranked(
    db: sqlite3.Connection, terms: list[str], where: list[str], params: dict[str, object], limit: int
) -> dict[int, float]:
    """rowid -> summed BM25 rank (lower is better) of the best `limit` messages, best first."""
    scope = " AND ".join(where)
    parts = []
    for i, term in enumerate(terms):
        params[f"t{i}"] = term
        parts.append(
            "SELECT * FROM (SELECT messages_fts.rowid AS rowid, messages_fts.rank AS score "
            "FROM messages_fts JOIN messages m ON m.rowid = messages_fts.rowid "
            f"WHERE messages_fts MATCH :t{i} AND {scope} ORDER BY messages_fts.rowid DESC LIMIT :cap)"
        )
    params.update(cap=max(MIN_CAP, limit, RANK_BUDGET // len(terms)), limit=limit)
    rows = db.execute(
        f"WITH hits(rowid, score) AS ({' UNION ALL '.join(parts)}) "
        "SELECT rowid, sum(score) AS rank FROM hits GROUP BY rowid ORDER BY rank, rowid DESC LIMIT :limit",
        params,
    ).fetchall()
    return {r["rowid"]: r["rank"] for r in rows}


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
