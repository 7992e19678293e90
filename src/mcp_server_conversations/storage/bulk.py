"""Bulk loading: many messages of many conversations in one transaction (imports, benchmarks)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from ..errors import NotFoundError
from .conversations import ConversationStore
from .rows import NewMessage, pack, unpack

INSERT_WITH_ROWID = (
    "INSERT INTO messages (rowid, id, agent_id, conversation_id, home_conversation_id, message_type, role, "
    "content, reasoning, tool_calls, tool_call_id, status, model, run_id, is_err, created_at, search_extra) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_PRAGMAS = ("wal_autocheckpoint", "cache_size")


@dataclass
class _Target:
    agent_id: str
    context: list[int]
    added: int = 0


class BulkStore(ConversationStore):
    @asynccontextmanager
    async def bulk_load(self) -> AsyncIterator[None]:
        """Settings for loading many `import_messages` batches in a row (imports, benchmarks):
        FTS5 stops merging its segments as it goes and merges them all once at the end
        ('optimize'); SQLite checkpoints its WAL every 256 MiB instead of 4 MiB and keeps a
        256 MiB page cache. About a quarter less work at 1M messages (bench/). If the process
        dies inside, FTS5 still merges when a level reaches 16 segments ('crisismerge'), and the
        next bulk load (or any 'optimize') restores the rest."""
        (checkpoint,), (cache,) = [(await self.db.execute_fetchall(f"PRAGMA {p}"))[0] for p in _PRAGMAS]
        await self.db.execute("PRAGMA wal_autocheckpoint = 65536")
        await self.db.execute("PRAGMA cache_size = -262144")
        async with self.write() as db:
            await db.execute("INSERT INTO messages_fts (messages_fts, rank) VALUES ('automerge', 0)")
        try:
            yield
        finally:
            async with self.write() as db:
                await db.execute("INSERT INTO messages_fts (messages_fts, rank) VALUES ('automerge', 4)")
                await db.execute("INSERT INTO messages_fts (messages_fts) VALUES ('optimize')")
            await self.db.execute(f"PRAGMA wal_autocheckpoint = {int(checkpoint)}")
            await self.db.execute(f"PRAGMA cache_size = {int(cache)}")
            await self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    async def import_messages(
        self, batches: Sequence[tuple[str, list[NewMessage]]], *, in_context: bool = True
    ) -> int:
        """Append each batch's messages to its conversation as `append_messages` does, all in
        one transaction and without reading them back. Rows go in with one `executemany` and
        explicit rowids (max + 1 …, safe under the write lock), and are full-text indexed by
        one INSERT … SELECT while the row trigger stands aside (schema m002). Returns how many
        messages were stored."""
        if not any(messages for _, messages in batches):
            return 0
        async with self.write() as db:
            cur = await db.execute("SELECT coalesce(max(rowid), 0) FROM messages")
            first = next_rowid = (await cur.fetchone())[0] + 1
            targets: dict[str, _Target] = {}
            rows: list[tuple] = []
            for conv_id, messages in batches:
                t = targets.get(conv_id)
                if t is None:
                    cur = await db.execute("SELECT agent_id, context FROM conversations WHERE id = ?", (conv_id,))
                    conv = await cur.fetchone()
                    if conv is None:
                        raise NotFoundError("conversation", conv_id)
                    t = targets[conv_id] = _Target(conv["agent_id"], unpack(conv["context"]))
                for params in self._message_rows(conv_id, t.agent_id, messages):
                    rows.append((next_rowid, *params))
                    if in_context:
                        t.context.append(next_rowid)
                    next_rowid += 1
                t.added += sum(1 for m in messages if m.message_type != "system_message")
            await db.execute("INSERT INTO fts_deferred (one) VALUES (1)")
            await db.executemany(INSERT_WITH_ROWID, rows)
            await db.execute(
                "INSERT INTO messages_fts (rowid, search_text) SELECT rowid, search_text FROM messages "
                "WHERE rowid >= ? AND search_text IS NOT NULL",
                (first,),
            )
            await db.execute("DELETE FROM fts_deferred")
            await db.executemany(
                "UPDATE conversations SET context = ?, message_count = message_count + ? WHERE id = ?",
                [(pack(t.context), t.added, conv_id) for conv_id, t in targets.items()],
            )
        return len(rows)
