"""Forking and deleting conversations (PostgreSQL): the two operations that share message rows.
A fork locks its source's row (FOR SHARE), a delete its own (FOR UPDATE), so rows a fork is taking
are never deleted under it."""

from __future__ import annotations

from ...errors import NotFoundError, ValidationError
from ...models import Conversation
from ...util import new_id, now_iso
from .base import Conn
from .conversations import INSERT_SYSTEM, PgConversationStore


class PgForkStore(PgConversationStore):
    async def fork_conversation(self, src_id: str, message_id: str | None, system_text: str) -> Conversation:
        fork_id = new_id("conv")
        now = now_iso()

        async def fork(c: Conn) -> None:
            src = await c.fetchrow("SELECT * FROM conversations WHERE id = $1 FOR SHARE", src_id)
            if src is None:
                raise NotFoundError("conversation", src_id)
            body = await _settled_context(c, src_id, list(src["context"]))
            if src["system_rowid"] in body:
                body.remove(src["system_rowid"])
            if message_id is not None:
                rowid = await c.fetchval("SELECT rowid FROM messages WHERE id = $1", message_id)
                if rowid is None or rowid not in body:
                    raise ValidationError(
                        "message_id",
                        f"message {message_id} is not in the context window of conversation {src_id}; "
                        "pick one of its in-context messages (list_messages shows in_context)",
                    )
                body = body[: body.index(rowid) + 1]
            systems = 0
            if body:
                systems = await c.fetchval(
                    "SELECT count(*) FROM messages WHERE message_type = 'system_message' AND rowid BETWEEN $1 AND $2 "
                    "AND rowid = ANY($3::bigint[])",
                    min(body),
                    max(body),
                    body,
                )
            system_rowid = await c.fetchval(
                INSERT_SYSTEM, new_id("message"), src["agent_id"], fork_id, system_text, now
            )
            await c.execute(
                "INSERT INTO conversations (id, agent_id, summary, model, created_at, forked_from_conversation_id, "
                "forked_from_message_id, inherited, message_count, system_rowid, context) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                fork_id,
                src["agent_id"],
                src["summary"],
                src["model"],
                now,
                src_id,
                message_id,
                body,
                len(body) - systems,
                system_rowid,
                [system_rowid, *body],
            )

        await self.database.write(fork)
        return await self.get_conversation(fork_id)

    async def delete_conversation(self, conv_id: str) -> None:
        async def delete(c: Conn) -> None:
            conv = await c.fetchrow("SELECT agent_id FROM conversations WHERE id = $1 FOR UPDATE", conv_id)
            if conv is None:
                raise NotFoundError("conversation", conv_id)
            holders: dict[int, str] = {}
            for row in await c.fetch(
                "SELECT id, inherited FROM conversations WHERE agent_id = $1 AND id <> $2 "
                "AND cardinality(inherited) > 0 ORDER BY created_at, id",
                conv["agent_id"],
                conv_id,
            ):
                for rowid in row["inherited"]:
                    holders.setdefault(rowid, row["id"])
            homed = [
                r[0]
                for r in await c.fetch(
                    "SELECT rowid FROM messages WHERE conversation_id = $1 AND home_conversation_id = $1 UNION ALL "
                    "SELECT rowid FROM messages WHERE home_conversation_id = $1 "
                    "AND home_conversation_id <> conversation_id",
                    conv_id,
                )
            ]
            await c.execute(
                "DELETE FROM messages WHERE rowid = ANY($1::bigint[])", [r for r in homed if r not in holders]
            )
            moves: dict[str, list[int]] = {}
            for r in homed:
                if r in holders:
                    moves.setdefault(holders[r], []).append(r)
            for new_home, rowids in moves.items():
                await c.execute(
                    "UPDATE messages SET home_conversation_id = $1 WHERE rowid = ANY($2::bigint[])", new_home, rowids
                )
            await c.execute("DELETE FROM conversations WHERE id = $1", conv_id)

        await self.database.write(delete)


async def _settled_context(c: Conn, conv_id: str, context: list[int]) -> list[int]:
    """The context without the turn in flight: less every row of a run not ended yet, and as it was
    before that run's compaction if it made one (the earliest such run)."""
    inflight = "SELECT id FROM runs WHERE conversation_id = $1 AND status IN ('queued', 'running')"
    before = await c.fetchval(
        f"SELECT context_before FROM runs WHERE id IN ({inflight}) AND context_before IS NOT NULL ORDER BY seq LIMIT 1",
        conv_id,
    )
    if before is not None:
        context = list(before)
    drop = {r[0] for r in await c.fetch(f"SELECT rowid FROM messages WHERE run_id IN ({inflight})", conv_id)}
    return [i for i in context if i not in drop] if drop else context
