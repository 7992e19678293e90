"""Runs and turns (PostgreSQL). A conversation's turn is its `turns` row, claimed under the
conversation's row lock (so two replicas never both see it free); the dead holder of a turn is told
by its presence lock (`conv_owner_alive`), and the cross-replica queue order is `runs.seq`. Ends
and releases notify `conv_turn` / `conv_run_done`, cancel requests `conv_cancel` (delivered at commit)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from ...errors import DuplicateRunError, NotFoundError
from ...models import Message, Run
from ...util import now_iso
from ..rows import MESSAGE_COLUMNS, agent_from_row, block_from_row, message_from_row, run_from_row
from ..runs import DEAD_OWNER_END, RUN_FIELDS
from ..types import NewMessage, PromptRows, SendTarget
from .agents import BLOCKS_OF
from .base import Conn
from .conversations import PgConversationStore, append_rows, lock_conversation

RUN_MESSAGES = (
    f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE run_id = $1 AND message_type <> 'user_message' "
    "AND message_type <> 'system_message' ORDER BY rowid"
)


class PgRunStore(PgConversationStore):
    async def create_run(
        self, run_id: str, conversation_id: str, agent_id: str, *, status: str, idempotency_key: str | None,
        owner: str | None = None,
    ) -> Run:  # fmt: skip
        created_at = now_iso()
        await self.database.write(lambda c: _insert_run(
            c, conversation_id, idempotency_key,
            "INSERT INTO runs (id, conversation_id, agent_id, status, idempotency_key, created_at, owner) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7)",
            (run_id, conversation_id, agent_id, status, idempotency_key, created_at, owner),
        ))  # fmt: skip
        fields: dict[str, Any] = {"status": status}
        return Run(id=run_id, run_id=run_id, conversation_id=conversation_id, agent_id=agent_id, created_at=created_at,
                   **fields)  # fmt: skip

    async def start_run(
        self, run_id: str, conversation_id: str, agent_id: str, inputs: list[NewMessage], *, model: str,
        started_at: str, create: bool = False, idempotency_key: str | None = None, owner: str = "",
    ) -> tuple[Run, PromptRows] | None:  # fmt: skip
        async def run(c: Conn) -> tuple[Run, PromptRows] | None:
            await lock_conversation(c, conversation_id)
            if await _held_elsewhere(c, conversation_id, owner) or await _queued_earlier_elsewhere(
                c, conversation_id, run_id, owner
            ):
                return None
            await append_rows(c, conversation_id, inputs)
            await _claim(c, conversation_id, run_id, owner, started_at)
            if create:
                await _insert_run(
                    c, conversation_id, idempotency_key,
                    "INSERT INTO runs (id, conversation_id, agent_id, status, idempotency_key, created_at, model, "
                    "started_at, owner) VALUES ($1, $2, $3, 'running', $4, $5, $6, $5, $7)",
                    (run_id, conversation_id, agent_id, idempotency_key, started_at, model, owner),
                )  # fmt: skip
            else:
                await c.execute(
                    "UPDATE runs SET status = 'running', model = $1, started_at = $2, owner = $3 WHERE id = $4",
                    model, started_at, owner, run_id,
                )  # fmt: skip
            row = await c.fetchrow("SELECT * FROM runs WHERE id = $1", run_id)
            if row is None:
                raise NotFoundError("run", run_id)
            return run_from_row(row), await _prompt_rows(c, conversation_id, agent_id)

        return await self.database.write(run)

    async def get_run(self, run_id: str, *, with_messages: bool = True) -> Run:
        async def read(c: Conn) -> Run:
            row = await c.fetchrow("SELECT * FROM runs WHERE id = $1", run_id)
            if row is None:
                raise NotFoundError("run", run_id)
            messages: list[Message] = []
            if with_messages:
                context = await c.fetchval("SELECT context FROM conversations WHERE id = $1", row["conversation_id"])
                in_context = set(context or ())
                messages = [message_from_row(r, r["rowid"] in in_context) for r in await c.fetch(RUN_MESSAGES, run_id)]
            return run_from_row(row, messages)

        return await self.database.read(read, snapshot=with_messages)

    async def run_by_idempotency_key(self, conversation_id: str, key: str) -> str | None:
        row = await self._one(
            "SELECT id FROM runs WHERE conversation_id = $1 AND idempotency_key = $2", conversation_id, key
        )
        return row["id"] if row else None

    async def send_target(self, conversation_id: str, idempotency_key: str | None = None) -> SendTarget:
        row = await self._one(
            "SELECT c.agent_id, c.model, a.model, (SELECT r.id FROM runs r WHERE r.conversation_id = c.id "
            "AND r.idempotency_key = $2) FROM conversations c LEFT JOIN agents a ON a.id = c.agent_id WHERE c.id = $1",
            conversation_id, idempotency_key,
        )  # fmt: skip
        if row is None:
            raise NotFoundError("conversation", conversation_id)
        return SendTarget(row[0], row[1], row[2], row[3])

    async def prompt_rows(self, conversation_id: str, agent_id: str) -> PromptRows:
        return await self.database.read(lambda c: _prompt_rows(c, conversation_id, agent_id), snapshot=True)

    async def claim_turn(self, conversation_id: str, holder: str, owner: str) -> bool:
        async def claim(c: Conn) -> bool:
            await lock_conversation(c, conversation_id)
            if await _held_elsewhere(c, conversation_id, owner):
                return False
            await _claim(c, conversation_id, holder, owner, now_iso())
            return True

        return await self.database.write(claim)

    async def release_turn(self, conversation_id: str, holder: str) -> None:
        async def release(c: Conn) -> None:
            done = await c.execute(
                "DELETE FROM turns WHERE conversation_id = $1 AND run_id = $2", conversation_id, holder
            )
            if not done.endswith(" 0"):
                await c.execute("SELECT pg_notify('conv_turn', $1)", conversation_id)

        await self.database.write(release)

    async def clear_turns(self) -> None:
        await self.database.write(lambda c: c.execute("DELETE FROM turns"))

    async def unfinished_runs(self) -> list[tuple[str, str]]:
        rows = await self._all("SELECT id, conversation_id FROM runs WHERE status IN ('queued', 'running')")
        return [(r["id"], r["conversation_id"]) for r in rows]

    async def unfinished_runs_elsewhere(self, owner: str) -> list[tuple[str, str, str | None]]:
        rows = await self._all(
            "SELECT id, conversation_id, owner FROM runs WHERE status IN ('queued', 'running') "
            "AND owner IS DISTINCT FROM $1",
            owner,
        )
        return [(r["id"], r["conversation_id"], r["owner"]) for r in rows]

    async def run_owner(self, run_id: str) -> str | None:
        row = await self._one("SELECT owner FROM runs WHERE id = $1", run_id)
        return None if row is None else row["owner"]

    async def request_cancel(self, run_id: str) -> bool:
        async def ask(c: Conn) -> bool:
            owner = await c.fetchrow(
                "UPDATE runs SET cancel_requested = 1 WHERE id = $1 AND status IN ('queued', 'running') "
                "RETURNING owner",
                run_id,
            )
            if owner is None:
                return False
            if owner[0] is not None:
                await c.execute("SELECT pg_notify('conv_cancel', $1)", owner[0])
            return True

        return await self.database.write(ask)

    async def cancel_requests(self, owner: str) -> list[str]:
        rows = await self._all(
            "SELECT id FROM runs WHERE cancel_requested = 1 AND owner = $1 AND status IN ('queued', 'running')", owner
        )
        return [r["id"] for r in rows]

    async def finish_run(
        self, run_id: str, conversation_id: str, fields: dict[str, Any], *, abandon: bool,
        append: list[NewMessage] | None = None, unfinished_only: bool = False,
    ) -> Run | None:  # fmt: skip
        async def end(c: Conn) -> Run | None:
            if await c.fetchval("SELECT 1 FROM conversations WHERE id = $1 FOR NO KEY UPDATE", conversation_id) is None:
                if await c.fetchval("SELECT 1 FROM runs WHERE id = $1", run_id) is None:
                    return None
            before = (lambda: append_rows(c, conversation_id, append)) if append else None
            context = await _end_run(
                c, run_id, conversation_id, fields, abandon=abandon, unfinished_only=unfinished_only, before=before
            )
            if context is None:
                return None
            row = await c.fetchrow("SELECT * FROM runs WHERE id = $1", run_id)
            in_context = set(context)
            messages = [message_from_row(r, r[0] in in_context) for r in await c.fetch(RUN_MESSAGES, run_id)]
            return run_from_row(row, messages)

        return await self.database.write(end)


async def _insert_run(c: Conn, conversation_id: str, key: str | None, sql: str, params: tuple[Any, ...]) -> None:
    """Insert a run row; DuplicateRunError names the run that took its idempotency key meanwhile."""
    try:
        async with c.transaction():  # a savepoint: the unit goes on to report the taken key
            await c.execute(sql, *params)
    except asyncpg.UniqueViolationError:
        taken = None if key is None else await c.fetchval(
            "SELECT id FROM runs WHERE conversation_id = $1 AND idempotency_key = $2", conversation_id, key
        )  # fmt: skip
        if taken is None:
            raise
        raise DuplicateRunError(taken) from None
    except asyncpg.ForeignKeyViolationError:
        raise NotFoundError("conversation", conversation_id) from None


async def _end_run(
    c: Conn, run_id: str, conversation_id: str, fields: dict[str, Any], *, abandon: bool,
    unfinished_only: bool = False, before: Callable[[], Awaitable[Any]] | None = None,
) -> list[int] | None:  # fmt: skip
    """finish_run's writes inside the caller's transaction (the conversation's row locked): as SQLite's
    storage/runs.py _end_run. Returns the context after them, None if the run is not there to end."""
    fields = {k: v for k, v in fields.items() if k in RUN_FIELDS}
    completed_at = fields.get("completed_at") or now_iso()
    fields["completed_at"] = completed_at
    saved = None
    if abandon:  # the context as it was when the run compacted it, if it still holds the turn
        saved = await c.fetchval(
            "SELECT r.context_before FROM runs r JOIN turns t ON t.run_id = r.id AND t.conversation_id = $1 "
            "WHERE r.id = $2",
            conversation_id, run_id,
        )  # fmt: skip
    released = await c.execute("DELETE FROM turns WHERE conversation_id = $1 AND run_id = $2", conversation_id, run_id)
    sets = ", ".join(f"{k} = ${i}" for i, k in enumerate(fields, start=2)) + ", context_before = NULL"
    only = " AND status IN ('queued', 'running')" if unfinished_only else ""
    if (await c.execute(f"UPDATE runs SET {sets} WHERE id = $1{only}", run_id, *fields.values())).endswith(" 0"):
        return None
    if before is not None:
        await before()
    current = await c.fetchval("SELECT context FROM conversations WHERE id = $1", conversation_id)
    context = list(current) if current is not None else []
    if abandon:
        drop = {r[0] for r in await c.fetch("SELECT rowid FROM messages WHERE run_id = $1", run_id)}
        if (drop or saved is not None) and current is not None:
            context = [i for i in (context if saved is None else saved) if i not in drop]
            await c.execute("UPDATE conversations SET context = $1 WHERE id = $2", context, conversation_id)
        await c.execute("UPDATE messages SET is_err = 1 WHERE run_id = $1 AND message_type = 'user_message'", run_id)
    await c.execute("UPDATE conversations SET last_run_completion = $1 WHERE id = $2", completed_at, conversation_id)
    notify_turn = "" if released.endswith(" 0") else ", pg_notify('conv_turn', $2)"
    await c.execute(
        f"SELECT pg_notify('conv_run_done', $1){notify_turn}", run_id, *([conversation_id] if notify_turn else [])
    )
    return context


async def _held_elsewhere(c: Conn, conversation_id: str, owner: str) -> bool:
    """Whether another live process holds the turn; a dead holder's run ends here first."""
    row = await c.fetchrow(
        "SELECT owner, run_id, conv_owner_alive(owner) FROM turns WHERE conversation_id = $1", conversation_id
    )
    if row is None or row[0] == owner:
        return False
    if row[2]:
        return True
    await _end_run(c, row[1], conversation_id, DEAD_OWNER_END, abandon=True, unfinished_only=True)
    await c.execute("DELETE FROM turns WHERE conversation_id = $1", conversation_id)
    return False


async def _queued_earlier_elsewhere(c: Conn, conversation_id: str, run_id: str, owner: str) -> bool:
    """Whether another live process queued a run for the conversation before `run_id` (by runs.seq)."""
    return bool(await c.fetchval(
        "SELECT EXISTS (SELECT 1 FROM runs WHERE status = 'queued' AND conversation_id = $1 AND owner IS NOT NULL "
        "AND owner <> $2 AND seq < coalesce((SELECT seq FROM runs WHERE id = $3), 9223372036854775807) "
        "AND conv_owner_alive(owner))",
        conversation_id, owner, run_id,
    ))  # fmt: skip


async def _claim(c: Conn, conversation_id: str, holder: str, owner: str, at: str) -> None:
    await c.execute(
        "INSERT INTO turns (conversation_id, run_id, owner, claimed_at) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (conversation_id) DO UPDATE SET run_id = excluded.run_id, owner = excluded.owner, "
        "claimed_at = excluded.claimed_at",
        conversation_id, holder, owner, at,
    )  # fmt: skip


async def _prompt_rows(c: Conn, conversation_id: str, agent_id: str) -> PromptRows:
    agent = await c.fetchrow("SELECT * FROM agents WHERE id = $1", agent_id)
    if agent is None:
        raise NotFoundError("agent", agent_id)
    blocks = await c.fetch(BLOCKS_OF, agent_id)
    conv = await c.fetchrow(
        "SELECT c.context, m.content FROM conversations c LEFT JOIN messages m ON m.rowid = c.system_rowid "
        "WHERE c.id = $1",
        conversation_id,
    )
    if conv is None:
        raise NotFoundError("conversation", conversation_id)
    context = list(conv[0])
    rows = await c.fetch(
        "SELECT rowid, message_type, content, tool_calls, tool_call_id, run_id FROM messages "
        "WHERE rowid = ANY($1::bigint[])",
        context[1:],
    )
    by_rowid = {r[0]: tuple(r)[1:] for r in rows}
    context_rows = [by_rowid[i] for i in context[1:] if i in by_rowid]
    return PromptRows(agent_from_row(agent, [block_from_row(b) for b in blocks]), conv[1], context_rows)  # type: ignore[arg-type]
