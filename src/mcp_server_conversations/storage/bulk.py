"""Bulk loading: many messages of many conversations in one transaction (imports, benchmarks)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from ..errors import NotFoundError
from ..models import Conversation
from ..util import new_id, new_ids, now_iso
from .conversations import ConversationStore, _message_rows, insert_system
from .rows import pack, unpack
from .types import RUN_COLUMNS, ImportedConversation, NewMessage

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

        def widen(db: sqlite3.Connection) -> list[int]:
            before = [int(db.execute(f"PRAGMA {p}").fetchone()[0]) for p in _PRAGMAS]
            db.execute("PRAGMA wal_autocheckpoint = 65536")
            db.execute("PRAGMA cache_size = -262144")
            return before

        checkpoint, cache = await self.database.on_writer(widen)

        def restore(db: sqlite3.Connection) -> None:
            db.execute(f"PRAGMA wal_autocheckpoint = {checkpoint}")
            db.execute(f"PRAGMA cache_size = {cache}")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

        try:
            yield
        finally:
            await self.database.on_writer(restore)

    async def import_messages(self, batches: Sequence[tuple[str, list[NewMessage]]], *, in_context: bool = True) -> int:
        """Append each batch's messages to its conversation as `append_messages` does, all in
        one transaction and without reading them back. Rows go in with one `executemany` and
        explicit rowids (max + 1 …, safe under the write lock), and are full-text indexed by
        one INSERT … SELECT while the row trigger stands aside (schema m002). Returns how many
        messages were stored."""
        if not any(messages for _, messages in batches):
            return 0
        stamp = now_iso()

        def load(db: sqlite3.Connection) -> int:
            first = next_rowid = db.execute("SELECT coalesce(max(rowid), 0) FROM messages").fetchone()[0] + 1
            targets: dict[str, _Target] = {}
            plain: list[tuple[Any, ...]] = []  # text-only messages: 9 columns to bind instead of 17
            rows: list[tuple[Any, ...]] = []
            for conv_id, messages in batches:
                t = targets.get(conv_id)
                if t is None:
                    conv = db.execute("SELECT agent_id, context FROM conversations WHERE id = ?", (conv_id,)).fetchone()
                    if conv is None:
                        raise NotFoundError("conversation", conv_id)
                    t = targets[conv_id] = _Target(conv["agent_id"], unpack(conv["context"]))
                ids = iter(new_ids("message", sum(1 for m in messages if not m.id)))
                for m in messages:
                    if _plain(m):
                        plain.append(
                            (
                                next_rowid,
                                m.id or next(ids),
                                t.agent_id,
                                conv_id,
                                conv_id,
                                m.message_type,
                                m.role,
                                m.content,
                                m.created_at or stamp,
                            )
                        )
                    else:
                        rows.append((next_rowid, *_message_rows(conv_id, t.agent_id, [m])[0]))
                    if in_context:
                        t.context.append(next_rowid)
                    next_rowid += 1
                t.added += sum(1 for m in messages if m.message_type != "system_message")
            db.execute("INSERT INTO fts_deferred (one) VALUES (1)")
            db.executemany(INSERT_PLAIN, plain)
            db.executemany(INSERT_WITH_ROWID, rows)
            db.execute(
                "INSERT INTO messages_fts (rowid, search_text) SELECT rowid, search_text FROM messages "
                "WHERE rowid >= ? AND search_text IS NOT NULL",
                (first,),
            )
            db.execute("DELETE FROM fts_deferred")
            db.executemany(
                "UPDATE conversations SET context = ?, message_count = message_count + ? WHERE id = ?",
                [(pack(t.context), t.added, conv_id) for conv_id, t in targets.items()],
            )
            return len(plain) + len(rows)

        return await self.database.write(load)

    async def import_conversation(self, data: ImportedConversation) -> Conversation:
        """A new conversation written whole in one transaction: system message, messages (one
        `executemany` with explicit rowids, full-text indexed by one statement as in import_messages),
        the conversation with its context, then its runs."""
        conv_id = new_id("conv")
        now = now_iso()
        run_sql = (
            f"INSERT INTO runs (conversation_id, agent_id, {', '.join(RUN_COLUMNS)}) "
            f"VALUES (?, ?, {', '.join('?' * len(RUN_COLUMNS))})"
        )

        def load(db: sqlite3.Connection) -> None:
            if db.execute("SELECT 1 FROM agents WHERE id = ?", (data.agent_id,)).fetchone() is None:
                raise NotFoundError("agent", data.agent_id)
            system = insert_system(db, conv_id, data.agent_id, data.system_text, now)
            first = db.execute("SELECT max(rowid) FROM messages").fetchone()[0] + 1  # safe under the write lock
            rows = [(first + i, *v) for i, v in enumerate(_message_rows(conv_id, data.agent_id, data.messages))]
            rowids = [r[0] for r in rows]
            db.execute("INSERT INTO fts_deferred (one) VALUES (1)")  # indexed below in one statement (m002)
            db.executemany(INSERT_WITH_ROWID, rows)
            db.execute(
                "INSERT INTO messages_fts (rowid, search_text) SELECT rowid, search_text FROM messages "
                "WHERE rowid >= ? AND search_text IS NOT NULL",
                (first,),
            )
            db.execute("DELETE FROM fts_deferred")
            counted = sum(1 for m in data.messages if m.message_type != "system_message")
            db.execute(
                "INSERT INTO conversations (id, agent_id, summary, model, created_at, last_run_completion, "
                "system_rowid, context, message_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    conv_id,
                    data.agent_id,
                    data.summary,
                    data.model,
                    now,
                    data.last_run_completion,
                    system,
                    pack([system, *(rowids[i] for i in data.context)]),
                    counted,
                ),
            )
            db.executemany(run_sql, [(conv_id, data.agent_id, *(r.get(col) for col in RUN_COLUMNS)) for r in data.runs])

        await self.database.write(load)
        return await self.get_conversation(conv_id)
