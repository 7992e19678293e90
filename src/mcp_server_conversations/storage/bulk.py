"""Bulk loading: many messages of many conversations in one transaction (imports, benchmarks)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from ..errors import NotFoundError
from ..util import new_ids, now_iso
from .conversations import ConversationStore
from .rows import NewMessage, pack, unpack

INSERT_WITH_ROWID = (
    "INSERT INTO messages (rowid, id, agent_id, conversation_id, home_conversation_id, message_type, role, "
    "content, reasoning, tool_calls, tool_call_id, status, model, run_id, is_err, created_at, search_extra) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_PLAIN = (
    "INSERT INTO messages (rowid, id, agent_id, conversation_id, home_conversation_id, message_type, role, "
    "content, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_PRAGMAS = ("wal_autocheckpoint", "cache_size")


def _plain(m: NewMessage) -> bool:
    """A message with only text: every other column keeps its default (search_extra NULL: m006)."""
    return not (m.reasoning or m.tool_calls or m.tool_call_id or m.status or m.model or m.run_id or m.is_err)


@dataclass
class _Target:
    agent_id: str
    context: list[int]
    added: int = 0


class BulkStore(ConversationStore):
    @asynccontextmanager
    async def bulk_load(self) -> AsyncIterator[None]:
        """For loading many `import_messages` batches in a row (imports, benchmarks): SQLite
        checkpoints its WAL every 256 MiB instead of 4 MiB (pages rewritten by several batches,
        as FTS5 segments are, are copied to the database once) and keeps a 256 MiB page cache.
        Both settings are this connection's and are put back at the end, after a checkpoint."""
        (checkpoint,), (cache,) = [(await self.db.execute_fetchall(f"PRAGMA {p}"))[0] for p in _PRAGMAS]
        await self.db.execute("PRAGMA wal_autocheckpoint = 65536")
        await self.db.execute("PRAGMA cache_size = -262144")
        try:
            yield
        finally:
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
        stamp = now_iso()
        async with self.write() as db:
            cur = await db.execute("SELECT coalesce(max(rowid), 0) FROM messages")
            first = next_rowid = (await cur.fetchone())[0] + 1
            targets: dict[str, _Target] = {}
            plain: list[tuple] = []  # text-only messages: 9 columns to bind instead of 17
            rows: list[tuple] = []
            for conv_id, messages in batches:
                t = targets.get(conv_id)
                if t is None:
                    cur = await db.execute("SELECT agent_id, context FROM conversations WHERE id = ?", (conv_id,))
                    conv = await cur.fetchone()
                    if conv is None:
                        raise NotFoundError("conversation", conv_id)
                    t = targets[conv_id] = _Target(conv["agent_id"], unpack(conv["context"]))
                ids = iter(new_ids("message", sum(1 for m in messages if not m.id)))
                for m in messages:
                    if _plain(m):
                        plain.append((next_rowid, m.id or next(ids), t.agent_id, conv_id, conv_id, m.message_type,
                                      m.role, m.content, m.created_at or stamp))  # fmt: skip
                    else:
                        rows.append((next_rowid, *self._message_rows(conv_id, t.agent_id, [m])[0]))
                    if in_context:
                        t.context.append(next_rowid)
                    next_rowid += 1
                t.added += sum(1 for m in messages if m.message_type != "system_message")
            await db.execute("INSERT INTO fts_deferred (one) VALUES (1)")
            await db.executemany(INSERT_PLAIN, plain)
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
        return len(plain) + len(rows)
