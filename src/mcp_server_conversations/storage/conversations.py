"""Conversations and their messages: history, context window, forks and deletion."""

from __future__ import annotations

import sqlite3
from typing import Any

from ..errors import NotFoundError, ValidationError
from ..models import Conversation, Message, ToolCall
from ..util import new_id, now_iso
from .base import SQLiteBase, all_in
from .rows import MESSAGE_COLUMNS, conversation_from_row, message_from_row, message_values, pack, unpack
from .types import MESSAGE_TYPES, HistoryKey, NewMessage

CONV_COLUMNS = (
    "id, agent_id, summary, model, created_at, last_run_completion, forked_from_conversation_id, "
    "forked_from_message_id, message_count"
)
INSERT_MESSAGE = (
    "INSERT INTO messages (id, agent_id, conversation_id, home_conversation_id, message_type, role, content, "
    "reasoning, tool_calls, tool_call_id, status, model, run_id, is_err, created_at, search_extra) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_SYSTEM = (
    "INSERT INTO messages (id, agent_id, conversation_id, home_conversation_id, message_type, role, content, "
    "created_at) VALUES (?, ?, ?, ?, 'system_message', 'system', ?, ?)"
)


class ConversationStore(SQLiteBase):
    # -- conversations --

    async def create_conversation(
        self, agent_id: str, *, model: str | None, summary: str | None, system_text: str
    ) -> Conversation:
        conv_id = new_id("conv")
        now = now_iso()

        def insert(db: sqlite3.Connection) -> None:  # system message first: the conversation row is written whole
            rowid = int(
                db.execute(INSERT_SYSTEM, (new_id("message"), agent_id, conv_id, conv_id, system_text, now)).lastrowid
                or 0
            )
            db.execute(
                "INSERT INTO conversations (id, agent_id, summary, model, created_at, system_rowid, context) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (conv_id, agent_id, summary, model, now, rowid, pack([rowid])),
            )

        await self.database.write(insert)  # one trip to the database thread
        return Conversation(
            id=conv_id,
            agent_id=agent_id,
            summary=summary,
            model=model,
            created_at=now,
            last_run_completion=None,
            forked_from=None,
            message_count=0,
        )

    async def get_conversation(self, conv_id: str) -> Conversation:
        row = await self._one(f"SELECT {CONV_COLUMNS} FROM conversations WHERE id = ?", (conv_id,))
        if row is None:
            raise NotFoundError("conversation", conv_id)
        return conversation_from_row(row)

    async def update_conversation(self, conv_id: str, fields: dict[str, Any]) -> Conversation:
        fields = {k: v for k, v in fields.items() if k in ("model", "summary", "last_run_completion")}

        def update(db: sqlite3.Connection) -> Conversation:
            if db.execute("SELECT 1 FROM conversations WHERE id = ?", (conv_id,)).fetchone() is None:
                raise NotFoundError("conversation", conv_id)
            if fields:
                sets = ", ".join(f"{k} = ?" for k in fields)
                db.execute(f"UPDATE conversations SET {sets} WHERE id = ?", (*fields.values(), conv_id))
            return conversation_from_row(
                db.execute(f"SELECT {CONV_COLUMNS} FROM conversations WHERE id = ?", (conv_id,)).fetchone()
            )

        return await self.database.write(update)

    async def list_conversations(
        self, agent_id: str, *, order_by: str, desc: bool, limit: int, after: list[Any] | None
    ) -> list[Conversation]:
        """Keyset pagination; ties broken by id; never-run conversations sort last in both orders.

        Each part (with a value, then without) is read in its index's order, so a page costs its
        own rows rather than a sort of all the agent's conversations (bench/: list_conversations)."""
        col = "created_at" if order_by == "created_at" else "last_run_completion"
        cmp, direction = ("<", "DESC") if desc else (">", "ASC")
        in_nulls = after is not None and after[0] is None

        def read(db: sqlite3.Connection) -> list[Conversation]:
            rows: list[Any] = []
            if not in_nulls:
                where, params = ["agent_id = ?", f"{col} IS NOT NULL"], [agent_id]
                if after is not None:
                    where.append(f"({col}, id) {cmp} (?, ?)")
                    params += [after[0], after[1]]
                rows = db.execute(
                    f"SELECT {CONV_COLUMNS} FROM conversations WHERE {' AND '.join(where)} "
                    f"ORDER BY {col} {direction}, id {direction} LIMIT ?",
                    (*params, limit),
                ).fetchall()
            if len(rows) < limit and col == "last_run_completion":
                where, params = ["agent_id = ?", f"{col} IS NULL"], [agent_id]
                if in_nulls and after is not None:
                    where.append(f"id {cmp} ?")
                    params.append(after[1])
                rows += db.execute(
                    f"SELECT {CONV_COLUMNS} FROM conversations WHERE {' AND '.join(where)} "
                    f"ORDER BY id {direction} LIMIT ?",
                    (*params, limit - len(rows)),
                ).fetchall()
            return [conversation_from_row(r) for r in rows]

        return await self.database.read(read, snapshot=True)

    # -- messages and context --

    async def append_messages(
        self, conv_id: str, messages: list[NewMessage], *, in_context: bool = True
    ) -> list[Message]:
        """Store messages written by this conversation and (by default) append them to its context.
        One transaction in one trip to the database thread; the messages are returned as written."""
        if not messages:
            return []
        return await self.database.write(lambda db: append_rows(db, conv_id, messages, in_context))

    async def context_messages(self, conv_id: str) -> list[Message]:
        """The context window in prompt order: the system message first."""

        def read(db: sqlite3.Connection) -> list[Message]:
            context = unpack(_conversation_state(db, conv_id)["context"])
            return _messages_by_rowids(db, context, set(context))

        return await self.database.read(read, snapshot=True)

    async def set_system_text(self, conv_id: str, text: str) -> None:
        """Refresh the stored system message with the prompt compiled for this call. Usually it
        has not changed: one read then, instead of a write transaction on every model call."""
        current = await self._one(
            "SELECT content FROM messages WHERE rowid = (SELECT system_rowid FROM conversations WHERE id = ?)",
            (conv_id,),
        )
        if current is not None and current[0] == text:
            return
        await self.database.write(
            lambda db: db.execute(
                "UPDATE messages SET content = ? WHERE rowid = (SELECT system_rowid FROM conversations WHERE id = ?) "
                "AND content IS NOT ?",
                (text, conv_id, text),
            )
        )

    async def replace_context_prefix(self, conv_id: str, evicted_ids: list[str], summary: NewMessage) -> Message:
        """Compaction: store `summary`, and in the context replace the evicted messages by it
        (placed right after the system message). The evicted rows stay in history and search.
        A run's compaction (`summary.run_id`) keeps the context as it was on the run, the first
        time, for a fork taken before the run ends."""

        def replace(db: sqlite3.Connection) -> Message:
            conv = db.execute("SELECT agent_id, context FROM conversations WHERE id = ?", (conv_id,)).fetchone()
            if conv is None:
                raise NotFoundError("conversation", conv_id)
            rows = all_in(db, "SELECT rowid FROM messages WHERE id IN ({ids})", evicted_ids)
            drop = {r["rowid"] for r in rows}
            (params,) = _message_rows(conv_id, conv["agent_id"], [summary])
            c = db.execute(
                "INSERT INTO messages (id, agent_id, conversation_id, home_conversation_id, message_type, role, "
                "content, reasoning, tool_calls, tool_call_id, status, model, run_id, is_err, created_at, "
                "search_extra) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                params,
            )
            summary_rowid = int(c.lastrowid or 0)
            if summary.run_id is not None:
                db.execute(
                    "UPDATE runs SET context_before = coalesce(context_before, ?) WHERE id = ?",
                    (conv["context"], summary.run_id),
                )
            context = unpack(conv["context"])
            kept = [i for i in context[1:] if i not in drop]
            new_context = context[:1] + [summary_rowid] + kept
            db.execute(
                "UPDATE conversations SET context = ?, message_count = message_count + 1 WHERE id = ?",
                (pack(new_context), conv_id),
            )
            (msg,) = _messages_by_rowids(db, [summary_rowid], {summary_rowid})
            return msg

        return await self.database.write(replace)

    # -- history (list_messages) --

    async def list_history(
        self,
        conv_id: str,
        *,
        limit: int,
        after: HistoryKey | None,
        desc: bool,
        types: set[str] | None,
        include_system: bool,
        stop: HistoryKey | None = None,
    ) -> tuple[list[Message], HistoryKey | None]:
        """One page of the whole history and the key to continue after it (None at the end).
        With `stop`, the page ends before that key (Letta's `before` cursor)."""
        want = set(types) if types else None
        if not include_system:
            want = (want or set(MESSAGE_TYPES)) - {"system_message"}

        def read(db: sqlite3.Connection) -> tuple[set[int], list[tuple[HistoryKey, Any]]]:
            conv = db.execute("SELECT * FROM conversations WHERE id = ?", (conv_id,)).fetchone()
            if conv is None:
                raise NotFoundError("conversation", conv_id)
            inherited = unpack(conv["inherited"])
            picked: list[tuple[HistoryKey, Any]] = []
            need = limit + 1
            for section in (2, 1, 0) if desc else (0, 1, 2):
                if len(picked) >= need:
                    break
                if after is not None and (section > after[0] if desc else section < after[0]):
                    continue
                start = after[1] if after is not None and after[0] == section else None
                picked += _section(db, conv, section, inherited, start, desc, want, need - len(picked))
            return set(unpack(conv["context"])), picked

        # One trip to the database thread: the conversation and its messages read from one snapshot.
        context, picked = await self.database.read(read, snapshot=True)
        if stop is not None:
            picked = [p for p in picked if (p[0] > stop if desc else p[0] < stop)]
        page = picked[:limit]
        next_key = page[-1][0] if len(picked) > limit else None
        return [message_from_row(r, r["rowid"] in context) for _, r in page], next_key

    async def get_message(self, message_id: str) -> Message:
        """A stored message by id, whichever conversation wrote it (in_context False: no conversation
        is asked about). NotFoundError if there is none."""
        row = await self._one(f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?", (message_id,))
        if row is None:
            raise NotFoundError("message", message_id)
        return message_from_row(row, False)

    async def history_key_of(self, conv_id: str, message_id: str) -> HistoryKey:
        """Where a message sits in a conversation's history (for cursors by message id)."""

        def read(db: sqlite3.Connection) -> HistoryKey:
            conv = _conversation_state(db, conv_id)
            row = db.execute("SELECT rowid, conversation_id FROM messages WHERE id = ?", (message_id,)).fetchone()
            if row is None:
                raise ValidationError("message_id", f"message {message_id} is not in conversation {conv_id}")
            if row["rowid"] == conv["system_rowid"]:
                return (0, 0)
            if row["conversation_id"] == conv_id:
                return (2, row["rowid"])
            inherited = unpack(conv["inherited"])
            if row["rowid"] in inherited:
                return (1, inherited.index(row["rowid"]))
            raise ValidationError("message_id", f"message {message_id} is not in conversation {conv_id}")

        return await self.database.read(read, snapshot=True)


def append_rows(
    db: sqlite3.Connection, conv_id: str, messages: list[NewMessage], in_context: bool = True
) -> list[Message]:
    """append_messages' statements, inside a transaction the caller holds (in the database thread)."""
    conv = db.execute("SELECT agent_id, context FROM conversations WHERE id = ?", (conv_id,)).fetchone()
    if conv is None:
        raise NotFoundError("conversation", conv_id)
    rows = _message_rows(conv_id, conv[0], messages)
    rowids = [int(db.execute(INSERT_MESSAGE, params).lastrowid or 0) for params in rows]
    counted = sum(1 for m in messages if m.message_type != "system_message")
    if in_context:
        db.execute(
            "UPDATE conversations SET context = ?, message_count = message_count + ? WHERE id = ?",
            (pack(unpack(conv[1]) + rowids), counted, conv_id),
        )
    else:
        db.execute("UPDATE conversations SET message_count = message_count + ? WHERE id = ?", (counted, conv_id))
    return [_written(m, params, in_context) for m, params in zip(messages, rows, strict=True)]


def _message_rows(conv_id: str, agent_id: str, messages: list[NewMessage]) -> list[tuple[Any, ...]]:
    return [message_values(conv_id, agent_id, m) for m in messages]


def insert_system(db: sqlite3.Connection, conv_id: str, agent_id: str, text: str, now: str) -> int:
    cur = db.execute(INSERT_SYSTEM, (new_id("message"), agent_id, conv_id, conv_id, text, now))
    return int(cur.lastrowid or 0)


def _conversation_state(db: sqlite3.Connection, conv_id: str) -> sqlite3.Row:
    row: sqlite3.Row | None = db.execute("SELECT * FROM conversations WHERE id = ?", (conv_id,)).fetchone()
    if row is None:
        raise NotFoundError("conversation", conv_id)
    return row


def _messages_by_rowids(db: sqlite3.Connection, rowids: list[int], in_context_of: set[int]) -> list[Message]:
    rows = all_in(db, f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE rowid IN ({{ids}})", rowids)
    by_id = {r["rowid"]: r for r in rows}
    return [message_from_row(by_id[i], i in in_context_of) for i in rowids if i in by_id]


def _written(m: NewMessage, params: tuple[Any, ...], in_context: bool) -> Message:
    """The Message a row of `_message_rows` stored (what reading it back would give)."""
    fields: dict[str, Any] = {  # validated by Message (NewMessage's type, role and status are plain str)
        "message_type": m.message_type,
        "role": m.role,
        "status": m.status,
    }
    return Message(
        id=params[0],
        conversation_id=params[2],
        agent_id=params[1],
        content=m.content,
        created_at=params[14],
        run_id=m.run_id,
        is_err=m.is_err,
        in_context=in_context,
        model=m.model,
        reasoning=m.reasoning,
        tool_call_id=m.tool_call_id,
        tool_calls=[ToolCall(**c) for c in m.tool_calls] if m.tool_calls else None,
        **fields,
    )


def _section(
    db: sqlite3.Connection,
    conv: Any,
    section: int,
    inherited: list[int],
    start: int | None,
    desc: bool,
    want: set[str] | None,
    need: int,
) -> list[tuple[HistoryKey, Any]]:
    """Up to `need` rows of one part of a conversation's history, in the database thread: 0 the
    system message, 1 a fork's inherited messages (by index), 2 its own messages (by rowid)."""
    type_sql, type_params = "", []
    if want is not None:
        type_sql = f" AND message_type IN ({','.join('?' * len(want))})"
        type_params = sorted(want)
    if section == 0:
        if start is not None or conv["system_rowid"] is None or (want is not None and "system_message" not in want):
            return []
        rows = db.execute(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE rowid = ?{type_sql}", (conv["system_rowid"], *type_params)
        ).fetchall()
        return [((0, 0), r) for r in rows]
    if section == 2:
        op, direction = ("<", "DESC") if desc else (">", "ASC")
        bound = start if start is not None else (2**62 if desc else 0)
        rows = db.execute(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? AND rowid {op} ? "
            f"AND rowid IS NOT ?{type_sql} ORDER BY rowid {direction} LIMIT ?",
            (conv["id"], bound, conv["system_rowid"], *type_params, need),
        ).fetchall()
        return [((2, r["rowid"]), r) for r in rows]
    # inherited rows, walked by index in chunks (under SQLite's variable limit)
    idx = list(range(len(inherited)))
    if desc:
        idx = [i for i in reversed(idx) if start is None or i < start]
    else:
        idx = [i for i in idx if start is None or i > start]
    out: list[tuple[HistoryKey, Any]] = []
    for c in range(0, len(idx), 500):
        chunk = idx[c : c + 500]
        ids = [inherited[i] for i in chunk]
        rows = db.execute(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE rowid IN ({','.join('?' * len(ids))})", ids
        ).fetchall()
        by_rowid = {r["rowid"]: r for r in rows}
        for i in chunk:
            r = by_rowid.get(inherited[i])
            if r is not None and (want is None or r["message_type"] in want):
                out.append(((1, i), r))
                if len(out) >= need:
                    return out
    return out
