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
CLAIM_CLASS = 0x636F6E65  # advisory lock class of embedding claims ("cone"); the key is the message key mod 2^31-1
KEY = "(k % 2147483647)::int"


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

    async def claim_embedding_work(self, model: str, *, after: int = 0, limit: int = 64) -> list[PendingMessage]:
        """Claims are session advisory locks on the claims connection (db.on_claims): taken with
        pg_try_advisory_lock, so a message another process holds is skipped, and released by the
        server if this process dies. A message embedded by another process between this read and
        its lock is seen by the second look (its vector commits before its claim is released)."""
        after = max(0, after - LATE_COMMITS)
        held = self.database.claimed

        async def claim(c: Conn) -> list[PendingMessage]:
            rows = await c.fetch(
                f"WITH cand AS MATERIALIZED (SELECT m.rowid AS k, m.id, m.agent_id, {SEARCH_TEXT} AS text "
                f"FROM messages m WHERE m.rowid > $1 AND {SEARCH_TEXT} IS NOT NULL "
                "AND NOT (m.rowid = ANY($5::bigint[])) "
                "AND NOT EXISTS (SELECT 1 FROM message_embeddings e WHERE e.message_rowid = m.rowid AND e.model = $2) "
                "ORDER BY m.rowid LIMIT $3 * 16) "  # past what other processes hold in flight
                f"SELECT k, id, agent_id, text FROM cand WHERE pg_try_advisory_lock($4, {KEY}) LIMIT $3",
                after,
                model,
                limit,
                CLAIM_CLASS,
                list(held),
            )
            keys = [r[0] for r in rows]
            done = {
                r[0]
                for r in await c.fetch(
                    "SELECT message_rowid FROM message_embeddings WHERE message_rowid = ANY($1::bigint[]) "
                    "AND model = $2",
                    keys,
                    model,
                )
            }
            if done:
                await _unlock(c, list(done))
            held.update(k for k in keys if k not in done)
            return [PendingMessage(r[0], r[1], r[2], r[3]) for r in rows if r[0] not in done]

        return await self.database.on_claims(claim)

    async def release_embedding_work(self, rowids: list[int]) -> None:
        held = self.database.claimed
        mine = [k for k in rowids if k in held]
        if not mine:
            return

        async def release(c: Conn) -> None:
            if not all(k in held for k in mine):  # the connection was lost meanwhile: so were the claims
                return
            await _unlock(c, mine)
            held.difference_update(mine)

        await self.database.on_claims(release)

    async def vector_stamp(self, agent_id: str) -> int:
        """Counts the other processes' notices of vectors stored for the agent (conv_vectors, sent by
        save_embeddings), and the listener's reconnections, when notices may have been missed."""
        if not await self.database.listen():
            return -1 - self.database.writes  # no notifications: assume the worst after every write
        return (self.database.listen_epoch << 32) + self.database.vector_notes.get(agent_id, 0)

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
            # Other processes' cached matrices of these agents are stale from this commit on.
            await c.execute(
                "SELECT pg_notify('conv_vectors', $1 || ' ' || a) FROM unnest($2::text[]) AS a",
                self.database.instance,
                sorted({r[1] for r in rows}),
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


async def _unlock(c: Conn, keys: list[int]) -> None:
    await c.execute(f"SELECT pg_advisory_unlock($1, {KEY}) FROM unnest($2::bigint[]) AS k", CLAIM_CLASS, keys)
