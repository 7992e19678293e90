"""Forking and deleting conversations: the two operations that share message rows."""

from __future__ import annotations

import sqlite3
from array import array
from collections.abc import Container, Sequence

from ..errors import NotFoundError, ValidationError
from ..models import Conversation
from ..util import new_id, now_iso
from .conversations import ConversationStore, insert_system
from .rows import pack, unpack


class ForkStore(ConversationStore):
    async def fork_conversation(self, src_id: str, message_id: str | None, system_text: str) -> Conversation:
        """A new conversation whose context is the source's in-context messages (through
        `message_id` inclusive) behind a fresh system message. Rows are shared, not copied.
        While a run of the source is in flight, that is the context as of its last ended turn."""
        fork_id = new_id("conv")
        now = now_iso()

        def fork(db: sqlite3.Connection) -> None:
            src = db.execute("SELECT * FROM conversations WHERE id = ?", (src_id,)).fetchone()
            if src is None:
                raise NotFoundError("conversation", src_id)
            # The packed rowids stay a C array throughout: a 10,000-message context costs no Python loops.
            body = array("q", _settled_context(db, src_id, src["context"]))
            if src["system_rowid"] in body:
                body.remove(src["system_rowid"])
            if message_id is not None:
                row = db.execute("SELECT rowid FROM messages WHERE id = ?", (message_id,)).fetchone()
                if row is None or row["rowid"] not in body:
                    raise ValidationError(
                        "message_id",
                        f"message {message_id} is not in the context window of conversation {src_id}; "
                        "pick one of its in-context messages (list_messages shows in_context)",
                    )
                body = body[: body.index(row["rowid"]) + 1]
            counted = len(body) - _system_rows_among(db, body)
            rowid = insert_system(db, fork_id, src["agent_id"], system_text, now)
            inherited = body.tobytes()
            db.execute(
                "INSERT INTO conversations (id, agent_id, summary, model, created_at, forked_from_conversation_id, "
                "forked_from_message_id, inherited, message_count, system_rowid, context) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    fork_id,
                    src["agent_id"],
                    src["summary"],
                    src["model"],
                    now,
                    src_id,
                    message_id,
                    inherited,
                    counted,
                    rowid,
                    pack([rowid]) + inherited,
                ),
            )

        await self.database.write(fork)
        return await self.get_conversation(fork_id)

    async def delete_conversation(self, conv_id: str) -> None:
        """Delete a conversation and its rows, except rows a fork still holds: those stay,
        reported from now on under one of the forks that hold them."""

        def delete(db: sqlite3.Connection) -> None:
            conv = db.execute("SELECT agent_id FROM conversations WHERE id = ?", (conv_id,)).fetchone()
            if conv is None:
                raise NotFoundError("conversation", conv_id)
            holders: dict[int, str] = {}
            cur = db.execute(
                "SELECT id, inherited FROM conversations WHERE agent_id = ? AND id != ? AND length(inherited) > 0",
                (conv["agent_id"], conv_id),
            )
            for row in cur.fetchall():
                for rowid in unpack(row["inherited"]):
                    holders.setdefault(rowid, row["id"])
            rows = db.execute(  # its own rows that stayed home, and rows it took over (m005)
                "SELECT rowid FROM messages WHERE conversation_id = ?1 AND home_conversation_id = ?1 UNION ALL "
                "SELECT rowid FROM messages INDEXED BY messages_home_moved "
                "WHERE home_conversation_id = ?1 AND home_conversation_id != conversation_id",
                (conv_id,),
            ).fetchall()
            homed = [r[0] for r in rows]
            drop = [r for r in homed if r not in holders]
            for i in range(0, len(drop), 900):
                part = drop[i : i + 900]
                db.execute(f"DELETE FROM messages WHERE rowid IN ({','.join('?' * len(part))})", part)
            moves: dict[str, list[int]] = {}
            for r in homed:
                if r in holders:
                    moves.setdefault(holders[r], []).append(r)
            for new_home, rowids in moves.items():
                for i in range(0, len(rowids), 900):
                    part = rowids[i : i + 900]
                    db.execute(
                        f"UPDATE messages SET home_conversation_id = ? WHERE rowid IN ({','.join('?' * len(part))})",
                        (new_home, *part),
                    )
            db.execute("DELETE FROM conversations WHERE id = ?", (conv_id,))

        await self.database.write(delete)


def _system_rows_among(db: sqlite3.Connection, rowids: Sequence[int]) -> int:
    """How many of `rowids` are system messages: the system rows in their rowid range come
    from the partial index (m004), so the cost follows the conversations made meanwhile,
    not the length of the context."""
    if not rowids:
        return 0
    found = db.execute(
        "SELECT rowid FROM messages INDEXED BY messages_system_rows "
        "WHERE message_type = 'system_message' AND rowid BETWEEN ? AND ?",
        (min(rowids), max(rowids)),
    ).fetchall()
    wanted: Container[int] = set(rowids) if len(found) > 16 else rowids
    return sum(1 for (rowid,) in found if rowid in wanted)


def _settled_context(db: sqlite3.Connection, conv_id: str, context: bytes) -> bytes:
    """The conversation's context without the turn in flight, if any: less every row of a run not ended
    yet, and as it was before that run's compaction if it made one."""
    inflight = "SELECT id FROM runs WHERE conversation_id = ? AND status IN ('queued', 'running')"
    before = db.execute(
        f"SELECT context_before FROM runs WHERE id IN ({inflight}) AND context_before IS NOT NULL "
        "ORDER BY rowid LIMIT 1",  # the earliest: a later one could hold a dead process's half turn
        (conv_id,),
    ).fetchone()
    if before is not None:
        context = before[0]
    rows = db.execute(f"SELECT rowid FROM messages WHERE run_id IN ({inflight})", (conv_id,)).fetchall()
    if not rows:
        return context
    drop = {r[0] for r in rows}
    return array("q", (i for i in array("q", context) if i not in drop)).tobytes()
