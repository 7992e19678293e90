"""Message embeddings for hybrid search: what still needs embedding, storing vectors, and reading
them back with the same scope filters full-text search applies (storage/search.py)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from ..models import SearchResult
from .base import all_in
from .rows import vector_hit_from_row
from .search import SearchStore, _message_filters
from .types import PendingMessage


class VectorStore(SearchStore):
    def data_changes(self) -> int:
        """A number that changes whenever this process writes: a free check (no query) that
        tells the indexer whether anything was written since it last looked."""
        return self.database.writes

    async def messages_missing_embeddings(
        self, model: str, *, after: int = 0, limit: int = 64, agent_id: str | None = None
    ) -> list[PendingMessage]:
        """Searchable messages with rowid > `after` and no vector for `model`, oldest first."""
        sql = (
            "SELECT m.rowid, m.id, m.agent_id, m.search_text FROM messages m "
            "WHERE m.rowid > :after AND m.search_text IS NOT NULL "
            "AND NOT EXISTS (SELECT 1 FROM message_embeddings e WHERE e.message_rowid = m.rowid AND e.model = :model)"
        )
        params: dict[str, object] = {"after": after, "model": model, "limit": limit}
        if agent_id is not None:
            sql += " AND m.agent_id = :agent"
            params["agent"] = agent_id
        rows = await self._all(sql + " ORDER BY m.rowid LIMIT :limit", params)
        return [PendingMessage(r[0], r[1], r[2], r[3]) for r in rows]

    async def claim_embedding_work(self, model: str, *, after: int = 0, limit: int = 64) -> list[PendingMessage]:
        """Claims are this process's own here (SQLite has no lock that outlives a transaction and
        dies with its process): the rows it holds are skipped, other processes on the file may embed
        the same message (the later vector replaces the earlier)."""
        held = self._embedding_claims
        found = await self.messages_missing_embeddings(model, after=after, limit=limit + len(held))
        claimed = [m for m in found if m.rowid not in held][:limit]
        held.update(m.rowid for m in claimed)
        return claimed

    async def release_embedding_work(self, rowids: list[int]) -> None:
        self._embedding_claims.difference_update(rowids)

    async def vector_stamp(self, agent_id: str) -> int:
        """SQLite's data_version on the writer connection: it changes only when another connection,
        which for the writer means another process, committed (the reader never writes)."""
        return int(await self.database.on_writer(lambda db: db.execute("PRAGMA data_version").fetchone()[0]))

    async def save_embeddings(self, model: str, vectors: list[tuple[str, int, bytes]]) -> list[tuple[int, str]]:
        """Store (message id, dim, float32 bytes) for `model`, replacing another model's vector.
        Keyed by message id, so a message deleted (or its rowid reused) meanwhile gets nothing.
        Returns (rowid, agent_id) of the rows written."""
        if not vectors:
            return []

        def save(db: sqlite3.Connection) -> list[tuple[int, str]]:
            db.executemany(
                "INSERT OR REPLACE INTO message_embeddings (message_rowid, agent_id, model, dim, vector) "
                "SELECT rowid, agent_id, ?, ?, ? FROM messages WHERE id = ?",
                [(model, dim, blob, message_id) for message_id, dim, blob in vectors],
            )
            # Read in the transaction (its own rows), so the caller updates its cached matrices as soon
            # as the vectors are visible to other readers, not one database trip later.
            rows = all_in(
                db,
                "SELECT e.message_rowid, e.agent_id FROM message_embeddings e "
                "JOIN messages m ON m.rowid = e.message_rowid WHERE m.id IN ({ids})",
                [message_id for message_id, _, _ in vectors],
            )
            return [(r[0], r[1]) for r in rows]

        return await self.database.write(save)

    async def load_vectors(self, agent_id: str, model: str, dim: int) -> tuple[list[int], bytes]:
        """Every `dim`-sized vector of the agent for `model`: rowids ascending, vectors concatenated."""
        rows = await self._all(
            "SELECT message_rowid, vector FROM message_embeddings WHERE agent_id = ? AND model = ? AND dim = ? "
            "ORDER BY message_rowid",
            (agent_id, model, dim),
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
        """Rowids of the agent's searchable messages inside a search's scope (the filtered vector
        side). Messages only: joining the vectors' table would read a page per row for nothing."""

        def read(db: sqlite3.Connection) -> list[int]:
            where, params = _message_filters(db, agent_id, roles, start, end, conversation_id)
            sql = f"SELECT m.rowid FROM messages m WHERE m.search_text IS NOT NULL AND {' AND '.join(where)}"
            return [r[0] for r in db.execute(sql, params)]

        return await self.database.read(read, snapshot=True)

    async def present_rowids(self, rowids: list[int], model: str, scope: dict[str, Any] | None = None) -> set[int]:
        """Which vector candidates still exist with a `model` vector (a cached matrix may hold rows
        deleted since) and, given a `scope` (message_filters' arguments), lie inside it."""

        def read(db: sqlite3.Connection) -> set[int]:
            where: list[str] = []
            params: dict[str, object] = {}
            if scope is not None:
                where, params = _message_filters(db, **scope)
            params.update(candidates=json.dumps(rowids), model=model)
            rows = db.execute(
                "SELECT m.rowid FROM messages m JOIN message_embeddings e ON e.message_rowid = m.rowid "
                "WHERE m.rowid IN (SELECT value FROM json_each(:candidates)) AND e.model = :model"
                + "".join(f" AND {w}" for w in where),
                params,
            )
            return {r[0] for r in rows}

        return await self.database.read(read, snapshot=True)

    async def vector_hits(self, rowids: list[int]) -> dict[int, SearchResult]:
        """Search results (without snippet or score yet) for the messages at `rowids`."""
        rows = await self._all_in(
            "SELECT m.rowid, m.id, m.home_conversation_id, m.role, m.message_type, m.content, m.reasoning, "
            "m.created_at FROM messages m WHERE m.rowid IN ({ids})",
            rowids,
        )
        return {r["rowid"]: vector_hit_from_row(r) for r in rows}
