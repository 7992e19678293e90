"""Full-text search over the pooled messages of an agent (FTS5, BM25)."""

from __future__ import annotations

from ..models import SearchResult
from .base import SQLiteBase
from .rows import unpack


class SearchStore(SQLiteBase):
    async def search(
        self,
        *,
        agent_id: str,
        match: str,
        roles: list[str] | None,
        start: str | None,
        end: str | None,
        conversation_id: str | None,
        limit: int,
    ) -> list[SearchResult]:
        """`match` is an FTS5 expression built by the search module (never raw user text)."""
        where, params = await self.message_filters(agent_id, roles, start, end, conversation_id)
        where.insert(0, "messages_fts MATCH :match")
        params.update(match=match, limit=limit)
        sql = (
            "SELECT m.id, m.home_conversation_id, m.role, m.message_type, m.content, m.reasoning, m.created_at, "
            "snippet(messages_fts, 0, '', '', '…', 24) AS snip, messages_fts.rank AS rank "
            "FROM messages_fts JOIN messages m ON m.rowid = messages_fts.rowid "
            f"WHERE {' AND '.join(where)} ORDER BY messages_fts.rank LIMIT :limit"
        )
        rows = await self.all(sql, params)
        return [
            SearchResult(
                message_id=r["id"],
                conversation_id=r["home_conversation_id"],
                role=r["role"],
                message_type=r["message_type"],
                content=r["content"] if r["content"] is not None else r["reasoning"],
                snippet=r["snip"] or "",
                created_at=r["created_at"],
                score=round(-float(r["rank"]), 6),
            )
            for r in rows
        ]

    async def message_filters(
        self, agent_id: str, roles: list[str] | None, start: str | None, end: str | None, conversation_id: str | None
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
            conv = await self.one("SELECT inherited FROM conversations WHERE id = ?", (conversation_id,))
            inherited = unpack(conv["inherited"]) if conv else []
            scope = "m.conversation_id = :conv"
            if inherited:
                scope = f"({scope} OR m.rowid IN (SELECT value FROM json_each(:inherited)))"
                params["inherited"] = "[" + ",".join(map(str, inherited)) + "]"
            where.append(scope)
            params["conv"] = conversation_id
        return where, params
