"""Message embeddings for hybrid search (PostgreSQL): float32 vectors as bytea, ranked in Python with
numpy exactly as on SQLite (no pgvector), under the same scope filters as full-text search."""

from __future__ import annotations

from typing import Any

from ...models import SearchResult
from ..rows import vector_hit_from_row
from ..types import PendingMessage
from .base import Conn
from .search import PgSearchStore, scope_of
from .text import SEARCH_TEXT

# Keys are taken when a row is inserted, not when it commits: a transaction committing late leaves rows
# below a key the indexer has already passed. They are looked for this far behind its cursor too.
LATE_COMMITS = 2000


class PgVectorStore(PgSearchStore):
    async def messages_missing_embeddings(
        self, model: str, *, after: int = 0, limit: int = 64, agent_id: str | None = None
    ) -> list[PendingMessage]:
        after = max(0, after - LATE_COMMITS)
        rows = await self._all(
            f"SELECT m.rowid, m.id, m.agent_id, {SEARCH_TEXT} FROM messages m "
            f"WHERE m.rowid > $1 AND {SEARCH_TEXT} IS NOT NULL AND ($4::text IS NULL OR m.agent_id = $4) "
            "AND NOT EXISTS (SELECT 1 FROM message_embeddings e WHERE e.message_rowid = m.rowid AND e.model = $2) "
            "ORDER BY m.rowid LIMIT $3",
            after,
            model,
            limit,
            agent_id,
        )
        return [PendingMessage(r[0], r[1], r[2], r[3]) for r in rows]

    async def save_embeddings(self, model: str, vectors: list[tuple[str, int, bytes]]) -> list[tuple[int, str]]:
        if not vectors:
            return []

        async def save(c: Conn) -> list[tuple[int, str]]:
            rows = await c.fetch(
                "INSERT INTO message_embeddings (message_rowid, agent_id, model, dim, vector) "
                "SELECT m.rowid, m.agent_id, $1, v.dim, v.vector FROM unnest($2::text[], $3::int[], $4::bytea[]) "
                "AS v(id, dim, vector) JOIN messages m ON m.id = v.id "
                "ON CONFLICT (message_rowid) DO UPDATE SET agent_id = excluded.agent_id, model = excluded.model, "
                "dim = excluded.dim, vector = excluded.vector RETURNING message_rowid, agent_id",
                model,
                [v[0] for v in vectors],
                [v[1] for v in vectors],
                [v[2] for v in vectors],
            )
            return [(r[0], r[1]) for r in rows]

        return await self.database.write(save)

    async def load_vectors(self, agent_id: str, model: str, dim: int) -> tuple[list[int], bytes]:
        rows = await self._all(
            "SELECT message_rowid, vector FROM message_embeddings WHERE agent_id = $1 AND model = $2 AND dim = $3 "
            "ORDER BY message_rowid",
            agent_id,
            model,
            dim,
        )
        return [r[0] for r in rows], b"".join(r[1] for r in rows)

    async def scoped_rowids(
        self,
        *,
        agent_id: str,
        roles: list[str] | None,
        start: str | None,
        end: str | None,
        conversation_id: str | None,
    ) -> list[int]:
        async def read(c: Conn) -> list[int]:
            s = await scope_of(c, agent_id, roles, start, end, conversation_id)
            rows = await c.fetch(
                f"SELECT m.rowid FROM messages m WHERE {SEARCH_TEXT} IS NOT NULL AND {s.sql}", *s.params
            )
            return [r[0] for r in rows]

        return await self.database.read(read, snapshot=True)

    async def present_rowids(self, rowids: list[int], model: str, scope: dict[str, Any] | None = None) -> set[int]:
        async def read(c: Conn) -> set[int]:
            where, params = "TRUE", []
            if scope is not None:
                s = await scope_of(c, **scope, taken=2)
                where, params = s.sql, s.params
            rows = await c.fetch(
                "SELECT m.rowid FROM messages m JOIN message_embeddings e ON e.message_rowid = m.rowid "
                f"WHERE m.rowid = ANY($1::bigint[]) AND e.model = $2 AND {where}",
                list(rowids),
                model,
                *params,
            )
            return {r[0] for r in rows}

        return await self.database.read(read, snapshot=True)

    async def vector_hits(self, rowids: list[int]) -> dict[int, SearchResult]:
        rows = await self._all(
            "SELECT m.rowid, m.id, m.home_conversation_id, m.role, m.message_type, m.content, m.reasoning, "
            "m.created_at FROM messages m WHERE m.rowid = ANY($1::bigint[])",
            list(rowids),
        )
        return {r["rowid"]: vector_hit_from_row(r) for r in rows}
