"""Conversations and their messages (PostgreSQL): history, context window, compaction.

Every write touching a conversation first locks its row (`FOR NO KEY UPDATE`: inserts of runs and
turns referencing it are not blocked), then allocates message keys: so within a conversation keys
increase in commit order, which history cursors rely on, and two writers never interleave."""

from __future__ import annotations

from typing import Any

from ...errors import NotFoundError, ValidationError
from ...models import Conversation, Message, ToolCall
from ...util import new_id, now_iso
from ..rows import MESSAGE_COLUMNS, MESSAGE_FIELDS, conversation_from_row, message_from_row, message_values
from ..types import MESSAGE_TYPES, HistoryKey, NewMessage
from .base import Conn, PgBase
from .text import indexed_text

CONV_COLUMNS = (
    "id, agent_id, summary, model, created_at, last_run_completion, forked_from_conversation_id, "
    "forked_from_message_id, message_count"
)
COLUMNS = MESSAGE_FIELDS
TYPES = ["text"] * 13 + ["int", "text", "text", "text"]
# Rows of many messages in one statement: one array per column, unnested in input order.
INSERT_MESSAGES = (
    f"INSERT INTO messages ({', '.join(COLUMNS)}, search_tsv) "
    f"SELECT {', '.join('u.' + c for c in COLUMNS)}, to_tsvector('conv', u.norm) "
    f"FROM unnest({', '.join(f'${i}::{t}[]' for i, t in enumerate(TYPES, start=1))}) "
    f"WITH ORDINALITY AS u({', '.join(COLUMNS)}, norm, ord) ORDER BY u.ord RETURNING rowid, id"
)
INSERT_SYSTEM = (
    "INSERT INTO messages (id, agent_id, conversation_id, home_conversation_id, message_type, role, content, "
    "created_at) VALUES ($1, $2, $3, $3, 'system_message', 'system', $4, $5) RETURNING rowid"
)


class PgConversationStore(PgBase):
    async def create_conversation(
        self, agent_id: str, *, model: str | None, summary: str | None, system_text: str
    ) -> Conversation:
        conv_id = new_id("conv")
        now = now_iso()

        async def insert(c: Conn) -> None:
            if await c.fetchval("SELECT 1 FROM agents WHERE id = $1 FOR KEY SHARE", agent_id) is None:
                raise NotFoundError("agent", agent_id)
            rowid = await c.fetchval(INSERT_SYSTEM, new_id("message"), agent_id, conv_id, system_text, now)
            await c.execute(
                "INSERT INTO conversations (id, agent_id, summary, model, created_at, system_rowid, context) "
                "VALUES ($1, $2, $3, $4, $5, $6, ARRAY[$6::bigint])",
                conv_id,
                agent_id,
                summary,
                model,
                now,
                rowid,
            )

        await self.database.write(insert)
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
        row = await self._one(f"SELECT {CONV_COLUMNS} FROM conversations WHERE id = $1", conv_id)
        if row is None:
            raise NotFoundError("conversation", conv_id)
        return conversation_from_row(row)

    async def update_conversation(self, conv_id: str, fields: dict[str, Any]) -> Conversation:
        fields = {k: v for k, v in fields.items() if k in ("model", "summary", "last_run_completion")}

        async def update(c: Conn) -> Conversation:
            if fields:
                sets = ", ".join(f"{k} = ${i}" for i, k in enumerate(fields, start=2))
                row = await c.fetchrow(
                    f"UPDATE conversations SET {sets} WHERE id = $1 RETURNING {CONV_COLUMNS}", conv_id, *fields.values()
                )
            else:
                row = await c.fetchrow(f"SELECT {CONV_COLUMNS} FROM conversations WHERE id = $1", conv_id)
            if row is None:
                raise NotFoundError("conversation", conv_id)
            return conversation_from_row(row)

        return await self.database.write(update)

    async def list_conversations(
        self, agent_id: str, *, order_by: str, desc: bool, limit: int, after: list[Any] | None
    ) -> list[Conversation]:
        col = "created_at" if order_by == "created_at" else "last_run_completion"
        cmp, direction = ("<", "DESC") if desc else (">", "ASC")
        in_nulls = after is not None and after[0] is None

        async def read(c: Conn) -> list[Conversation]:
            rows: list[Any] = []
            if not in_nulls:
                where, params = ["agent_id = $1", f"{col} IS NOT NULL"], [agent_id]
                if after is not None:
                    where.append(f"({col}, id) {cmp} ($2, $3)")
                    params += [after[0], after[1]]
                rows = list(
                    await c.fetch(
                        f"SELECT {CONV_COLUMNS} FROM conversations WHERE {' AND '.join(where)} "
                        f"ORDER BY {col} {direction}, id {direction} LIMIT ${len(params) + 1}",
                        *params,
                        limit,
                    )
                )
            if len(rows) < limit and col == "last_run_completion":
                where, params = ["agent_id = $1", f"{col} IS NULL"], [agent_id]
                if in_nulls and after is not None:
                    where.append(f"id {cmp} $2")
                    params.append(after[1])
                rows += await c.fetch(
                    f"SELECT {CONV_COLUMNS} FROM conversations WHERE {' AND '.join(where)} "
                    f"ORDER BY id {direction} LIMIT ${len(params) + 1}",
                    *params,
                    limit - len(rows),
                )
            return [conversation_from_row(r) for r in rows]

        return await self.database.read(read, snapshot=True)

    # -- messages and context --

    async def append_messages(
        self, conv_id: str, messages: list[NewMessage], *, in_context: bool = True
    ) -> list[Message]:
        if not messages:
            return []
        return await self.database.write(lambda c: append_rows(c, conv_id, messages, in_context))

    async def context_messages(self, conv_id: str) -> list[Message]:
        async def read(c: Conn) -> list[Message]:
            context = await c.fetchval("SELECT context FROM conversations WHERE id = $1", conv_id)
            if context is None:
                raise NotFoundError("conversation", conv_id)
            return await messages_by_rowids(c, context, set(context))

        return await self.database.read(read, snapshot=True)

    async def set_system_text(self, conv_id: str, text: str) -> None:
        current = await self._one(
            "SELECT content FROM messages WHERE rowid = (SELECT system_rowid FROM conversations WHERE id = $1)", conv_id
        )
        if current is not None and current[0] == text:
            return
        await self.database.write(
            lambda c: c.execute(
                "UPDATE messages SET content = $1 WHERE rowid = (SELECT system_rowid FROM conversations WHERE id = $2) "
                "AND content IS DISTINCT FROM $1",
                text,
                conv_id,
            )
        )

    async def replace_context_prefix(self, conv_id: str, evicted_ids: list[str], summary: NewMessage) -> Message:
        async def replace(c: Conn) -> Message:
            conv = await lock_conversation(c, conv_id)
            drop = {r[0] for r in await c.fetch("SELECT rowid FROM messages WHERE id = ANY($1::text[])", evicted_ids)}
            ((summary_rowid, _),) = await insert_messages(c, conv_id, conv["agent_id"], [summary])
            if summary.run_id is not None:
                await c.execute(
                    "UPDATE runs SET context_before = coalesce(context_before, $1) WHERE id = $2",
                    conv["context"],
                    summary.run_id,
                )
            context = list(conv["context"])
            new_context = context[:1] + [summary_rowid] + [i for i in context[1:] if i not in drop]
            await c.execute(
                "UPDATE conversations SET context = $1, message_count = message_count + 1 WHERE id = $2",
                new_context,
                conv_id,
            )
            (msg,) = await messages_by_rowids(c, [summary_rowid], {summary_rowid})
            return msg

        return await self.database.write(replace)

    # -- history --

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
        want = set(types) if types else None
        if not include_system:
            want = (want or set(MESSAGE_TYPES)) - {"system_message"}

        async def read(c: Conn) -> tuple[set[int], list[tuple[HistoryKey, Any]]]:
            conv = await c.fetchrow("SELECT * FROM conversations WHERE id = $1", conv_id)
            if conv is None:
                raise NotFoundError("conversation", conv_id)
            picked: list[tuple[HistoryKey, Any]] = []
            need = limit + 1
            for section in (2, 1, 0) if desc else (0, 1, 2):
                if len(picked) >= need:
                    break
                if after is not None and (section > after[0] if desc else section < after[0]):
                    continue
                start = after[1] if after is not None and after[0] == section else None
                picked += await _section(c, conv, section, start, desc, want, need - len(picked))
            return set(conv["context"]), picked

        context, picked = await self.database.read(read, snapshot=True)
        if stop is not None:
            picked = [p for p in picked if (p[0] > stop if desc else p[0] < stop)]
        page = picked[:limit]
        next_key = page[-1][0] if len(picked) > limit else None
        return [message_from_row(r, r["rowid"] in context) for _, r in page], next_key

    async def get_message(self, message_id: str) -> Message:
        """A stored message by id, in_context False; NotFoundError if there is none."""
        row = await self._one(f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1", message_id)
        if row is None:
            raise NotFoundError("message", message_id)
        return message_from_row(row, False)

    async def history_key_of(self, conv_id: str, message_id: str) -> HistoryKey:
        async def read(c: Conn) -> HistoryKey:
            conv = await c.fetchrow("SELECT system_rowid, inherited FROM conversations WHERE id = $1", conv_id)
            if conv is None:
                raise NotFoundError("conversation", conv_id)
            row = await c.fetchrow("SELECT rowid, conversation_id FROM messages WHERE id = $1", message_id)
            if row is None:
                raise ValidationError("message_id", f"message {message_id} is not in conversation {conv_id}")
            if row["rowid"] == conv["system_rowid"]:
                return (0, 0)
            if row["conversation_id"] == conv_id:
                return (2, row["rowid"])
            inherited = list(conv["inherited"])
            if row["rowid"] in inherited:
                return (1, inherited.index(row["rowid"]))
            raise ValidationError("message_id", f"message {message_id} is not in conversation {conv_id}")

        return await self.database.read(read, snapshot=True)


async def lock_conversation(c: Conn, conv_id: str) -> Any:
    """The conversation's row, locked for the rest of the transaction (NotFoundError if none)."""
    conv = await c.fetchrow(
        "SELECT agent_id, context, system_rowid FROM conversations WHERE id = $1 FOR NO KEY UPDATE", conv_id
    )
    if conv is None:
        raise NotFoundError("conversation", conv_id)
    return conv


async def insert_messages(c: Conn, conv_id: str, agent_id: str, messages: list[NewMessage]) -> list[tuple[int, Any]]:
    """Insert the messages in order; (rowid, row values) of each, in input order."""
    if not messages:
        return []
    rows = message_rows(conv_id, agent_id, messages)
    columns = [list(col) for col in zip(*rows, strict=True)]
    returned = await c.fetch(INSERT_MESSAGES, *columns)
    by_id = {r["id"]: r["rowid"] for r in returned}
    return [(by_id[row[0]], row) for row in rows]


async def append_rows(
    c: Conn, conv_id: str, messages: list[NewMessage], in_context: bool = True, *, agent_id: str | None = None
) -> list[Message]:
    """append_messages' statements, inside a transaction the caller holds: with `agent_id` the caller
    has locked the conversation's row already. The rows and the conversation's context and count are
    written by one statement."""
    if agent_id is None:
        agent_id = (await lock_conversation(c, conv_id))["agent_id"]
    if not messages:
        return []
    rows = message_rows(conv_id, agent_id, messages)
    columns = [list(col) for col in zip(*rows, strict=True)]
    counted = sum(1 for m in messages if m.message_type != "system_message")
    n = len(columns)
    returned = await c.fetch(
        f"WITH ins AS ({INSERT_MESSAGES}), upd AS (UPDATE conversations SET context = CASE WHEN ${n + 2} "
        f"THEN context || (SELECT array_agg(rowid ORDER BY rowid) FROM ins) ELSE context END, "
        f"message_count = message_count + ${n + 3} WHERE id = ${n + 1}) SELECT rowid, id FROM ins",
        *columns,
        conv_id,
        in_context,
        counted,
    )
    assert len(returned) == len(rows)
    return [_written(m, row, in_context) for m, row in zip(messages, rows, strict=True)]


def message_rows(conv_id: str, agent_id: str, messages: list[NewMessage]) -> list[tuple[Any, ...]]:
    """Each message's column values (COLUMNS, then its normalized search text)."""
    return [(*message_values(conv_id, agent_id, m), indexed_text(m)) for m in messages]


async def messages_by_rowids(c: Conn, rowids: list[int], in_context_of: set[int]) -> list[Message]:
    rows = await c.fetch(f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE rowid = ANY($1::bigint[])", list(rowids))
    by_id = {r["rowid"]: r for r in rows}
    return [message_from_row(by_id[i], i in in_context_of) for i in rowids if i in by_id]


def _written(m: NewMessage, row: tuple[Any, ...], in_context: bool) -> Message:
    fields: dict[str, Any] = {"message_type": m.message_type, "role": m.role, "status": m.status}
    return Message(
        id=row[0],
        conversation_id=row[2],
        agent_id=row[1],
        content=m.content,
        created_at=row[14],
        run_id=m.run_id,
        is_err=m.is_err,
        in_context=in_context,
        model=m.model,
        reasoning=m.reasoning,
        tool_call_id=m.tool_call_id,
        tool_calls=[ToolCall(**t) for t in m.tool_calls] if m.tool_calls else None,
        **fields,
    )


async def _section(
    c: Conn, conv: Any, section: int, start: int | None, desc: bool, want: set[str] | None, need: int
) -> list[tuple[HistoryKey, Any]]:
    """Up to `need` rows of one part of the history: 0 the system message, 1 a fork's inherited
    messages (by index), 2 its own messages (by key)."""
    types = sorted(want) if want is not None else None
    if section == 0:
        if start is not None or conv["system_rowid"] is None or (want is not None and "system_message" not in want):
            return []
        row = await c.fetchrow(f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE rowid = $1", conv["system_rowid"])
        return [((0, 0), row)] if row is not None else []
    if section == 2:
        op, direction = ("<", "DESC") if desc else (">", "ASC")
        bound = start if start is not None else (2**62 if desc else 0)
        rows = await c.fetch(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = $1 AND rowid {op} $2 "
            "AND rowid IS DISTINCT FROM $3 AND ($4::text[] IS NULL OR message_type = ANY($4::text[])) "
            f"ORDER BY rowid {direction} LIMIT $5",
            conv["id"],
            bound,
            conv["system_rowid"],
            types,
            need,
        )
        return [((2, r["rowid"]), r) for r in rows]
    inherited = list(conv["inherited"])
    idx = list(range(len(inherited)))
    idx = (
        [i for i in reversed(idx) if start is None or i < start]
        if desc
        else [i for i in idx if start is None or i > start]
    )
    out: list[tuple[HistoryKey, Any]] = []
    for k in range(0, len(idx), 500):
        chunk = idx[k : k + 500]
        rows = await c.fetch(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE rowid = ANY($1::bigint[])", [inherited[i] for i in chunk]
        )
        by_rowid = {r["rowid"]: r for r in rows}
        for i in chunk:
            r = by_rowid.get(inherited[i])
            if r is not None and (want is None or r["message_type"] in want):
                out.append(((1, i), r))
                if len(out) >= need:
                    return out
    return out
