"""Runs and turns (PostgreSQL). A conversation's turn is its `turns` row, claimed under the
conversation's row lock (so two replicas never both see it free); the dead holder of a turn is told
by its presence lock (`conv_owner_alive`), and the cross-replica queue order is `runs.seq`. Ends
and releases notify `conv_turn` / `conv_run_done` / `conv_slot` (fair.py), cancel requests
`conv_cancel` (delivered at commit)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from ...errors import DuplicateRunError, NotFoundError
from ...models import Message, Run
from ...principals import LOCAL
from ...util import now_iso
from ..rows import MESSAGE_COLUMNS, agent_from_row, block_from_row, message_from_row, run_from_row
from ..runs import DEAD_OWNER_END, RUN_FIELDS
from ..types import NewMessage, PromptRows, SendTarget
from .agents import BLOCKS_OF
from .base import Conn
from .conversations import PgConversationStore, append_rows, lock_conversation
from .fair import SLOT_CLASS, no_slot

RUN_MESSAGES = (
    f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE run_id = $1 AND message_type <> 'user_message' "
    "AND message_type <> 'system_message' ORDER BY rowid"
)


class PgRunStore(PgConversationStore):
    async def create_run(
        self,
        run_id: str,
        conversation_id: str,
        agent_id: str,
        *,
        status: str,
        idempotency_key: str | None,
        owner: str | None = None,
        principal: str = LOCAL,
    ) -> Run:
        created_at = now_iso()
        await self.database.write(
            lambda c: _insert_run(
                c,
                conversation_id,
                idempotency_key,
                "INSERT INTO runs (id, conversation_id, agent_id, status, idempotency_key, created_at, owner, "
                "principal) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                (run_id, conversation_id, agent_id, status, idempotency_key, created_at, owner, principal),
            )
        )
        fields: dict[str, Any] = {"status": status}
        return Run(
            id=run_id,
            run_id=run_id,
            conversation_id=conversation_id,
            agent_id=agent_id,
            created_at=created_at,
            **fields,
        )

    async def start_run(
        self,
        run_id: str,
        conversation_id: str,
        agent_id: str,
        inputs: list[NewMessage],
        *,
        model: str,
        started_at: str,
        create: bool = False,
        idempotency_key: str | None = None,
        owner: str = "",
        principal: str = LOCAL,
        max_running: int | None = None,
    ) -> tuple[Run, PromptRows] | None:
        """As SQLite's, in few round trips: the conversation locked, its turn and queue read in one statement
        (the principal's slot lock taken with them), its slots counted in one (fair.py), the input stored
        and the context extended in one, the turn claimed and the run started in one."""

        async def run(c: Conn) -> tuple[Run, PromptRows] | None:
            # The lock first, on its own: a statement that waited for the row lock would read the turn
            # and the queue from its snapshot taken before the wait, not what the holder committed.
            await lock_conversation(c, conversation_id)
            # The principal's slot lock rides along (the turn and queue read here are the locked row's);
            # the slots are counted by the next statement, which sees what the lock's last holder committed.
            slot_lock = ", pg_advisory_xact_lock($4, hashtext($5)) IS NULL AS slot_lock " if max_running else " "
            state = await c.fetchrow(
                "SELECT c.agent_id, t.owner, t.run_id, conv_owner_alive(t.owner) AS alive, "
                "EXISTS (SELECT 1 FROM runs r WHERE r.status = 'queued' AND r.conversation_id = c.id "
                "AND r.owner IS NOT NULL AND r.owner <> $2 "
                "AND r.seq < coalesce((SELECT seq FROM runs WHERE id = $3), 9223372036854775807) "
                f"AND conv_owner_alive(r.owner)) AS queued{slot_lock}"
                "FROM conversations c LEFT JOIN turns t ON t.conversation_id = c.id WHERE c.id = $1",
                conversation_id,
                owner,
                run_id,
                *((SLOT_CLASS, principal) if max_running else ()),
            )
            if state is None:
                raise NotFoundError("conversation", conversation_id)
            if state["owner"] is not None and state["owner"] != owner:
                if state["alive"]:
                    return None
                await _end_dead_holder(c, conversation_id, state["run_id"])
            if state["queued"]:
                return None
            if max_running and await no_slot(c, conversation_id, principal, max_running, owner):
                return None
            await append_rows(c, conversation_id, inputs, agent_id=state["agent_id"])
            claim = (
                "WITH claim AS (INSERT INTO turns (conversation_id, run_id, owner, claimed_at) VALUES ($2, $1, $3, $4) "
                "ON CONFLICT (conversation_id) DO UPDATE SET run_id = excluded.run_id, owner = excluded.owner, "
                "claimed_at = excluded.claimed_at) "
            )
            if create:
                row = await c.fetchrow(
                    claim + "INSERT INTO runs (id, conversation_id, agent_id, status, idempotency_key, created_at, "
                    "model, started_at, owner, principal) VALUES ($1, $2, $5, 'running', $6, $4, $7, $4, $3, $8) "
                    "ON CONFLICT (conversation_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING "
                    "RETURNING *",
                    run_id,
                    conversation_id,
                    owner,
                    started_at,
                    agent_id,
                    idempotency_key,
                    model,
                    principal,
                )
                if row is None:  # another process stored a run with this key since the caller looked
                    raise DuplicateRunError(
                        await c.fetchval(
                            "SELECT id FROM runs WHERE conversation_id = $1 AND idempotency_key = $2",
                            conversation_id,
                            idempotency_key,
                        )
                    )
            else:
                row = await c.fetchrow(
                    claim + "UPDATE runs SET status = 'running', model = $5, started_at = $4, owner = $3 "
                    "WHERE id = $1 RETURNING *",
                    run_id,
                    conversation_id,
                    owner,
                    started_at,
                    model,
                )
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

    async def list_runs(
        self,
        *,
        conversation_id: str | None,
        agent_id: str | None,
        statuses: list[str] | None,
        limit: int,
        desc: bool,
        principal: str | None = None,
    ) -> list[Run]:
        """Runs by creation (without their messages), filtered by conversation, agent, status and principal."""
        where: list[str] = ["TRUE"]
        params: list[Any] = []
        if principal is not None:
            params.append(principal)
            where.append(f"agent_id IN (SELECT id FROM agents WHERE principal = ${len(params)})")
        for column, value in (("conversation_id", conversation_id), ("agent_id", agent_id)):
            if value is not None:
                params.append(value)
                where.append(f"{column} = ${len(params)}")
        if statuses:
            params.append(list(statuses))
            where.append(f"status = ANY(${len(params)}::text[])")
        direction = "DESC" if desc else "ASC"
        params.append(limit)
        rows = await self._all(
            f"SELECT * FROM runs WHERE {' AND '.join(where)} ORDER BY created_at {direction}, id {direction} "
            f"LIMIT ${len(params)}",
            *params,
        )
        return [run_from_row(r) for r in rows]

    async def run_by_idempotency_key(self, conversation_id: str, key: str) -> str | None:
        row = await self._one(
            "SELECT id FROM runs WHERE conversation_id = $1 AND idempotency_key = $2", conversation_id, key
        )
        return row["id"] if row else None

    async def send_target(self, conversation_id: str, idempotency_key: str | None = None) -> SendTarget:
        row = await self._one(
            "SELECT c.agent_id, c.model, a.model, (SELECT r.id FROM runs r WHERE r.conversation_id = c.id "
            "AND r.idempotency_key = $2), a.principal FROM conversations c LEFT JOIN agents a ON a.id = c.agent_id "
            "WHERE c.id = $1",
            conversation_id,
            idempotency_key,
        )
        if row is None:
            raise NotFoundError("conversation", conversation_id)
        return SendTarget(row[0], row[1], row[2], row[3], row[4])

    async def prompt_rows(self, conversation_id: str, agent_id: str) -> PromptRows:
        return await self.database.read(lambda c: _prompt_rows(c, conversation_id, agent_id), snapshot=True)

    async def claim_turn(self, conversation_id: str, holder: str, owner: str) -> bool:
        async def claim(c: Conn) -> bool:
            await lock_conversation(c, conversation_id)  # on its own: see start_run
            state = await c.fetchrow(
                "SELECT t.owner, t.run_id, conv_owner_alive(t.owner) AS alive FROM conversations c "
                "LEFT JOIN turns t ON t.conversation_id = c.id WHERE c.id = $1",
                conversation_id,
            )
            if state["owner"] is not None and state["owner"] != owner:
                if state["alive"]:
                    return False
                await _end_dead_holder(c, conversation_id, state["run_id"])
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
        self,
        run_id: str,
        conversation_id: str,
        fields: dict[str, Any],
        *,
        abandon: bool,
        append: list[NewMessage] | None = None,
        unfinished_only: bool = False,
    ) -> Run | None:
        async def end(c: Conn) -> Run | None:
            conv = await c.fetchrow(
                "SELECT agent_id FROM conversations WHERE id = $1 FOR NO KEY UPDATE", conversation_id
            )
            if conv is None:  # its runs went with it
                return None
            before = (lambda: append_rows(c, conversation_id, append, agent_id=conv["agent_id"])) if append else None
            ended = await _end_run(
                c, run_id, conversation_id, fields, abandon=abandon, unfinished_only=unfinished_only, before=before
            )
            if ended is None:
                return None
            row, context = ended
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
        taken = (
            None
            if key is None
            else await c.fetchval(
                "SELECT id FROM runs WHERE conversation_id = $1 AND idempotency_key = $2", conversation_id, key
            )
        )
        if taken is None:
            raise
        raise DuplicateRunError(taken) from None
    except asyncpg.ForeignKeyViolationError:
        raise NotFoundError("conversation", conversation_id) from None


async def _end_run(
    c: Conn,
    run_id: str,
    conversation_id: str,
    fields: dict[str, Any],
    *,
    abandon: bool,
    unfinished_only: bool = False,
    before: Callable[[], Awaitable[Any]] | None = None,
) -> tuple[Any, list[int]] | None:
    """finish_run's writes inside the caller's transaction (the conversation's row locked), as SQLite's
    storage/runs.py _end_run: the run's row as it ended and the context after them, None if the run
    is not there to end. Waiters on the turn and on the run's end are notified (at commit)."""
    fields = {k: v for k, v in fields.items() if k in RUN_FIELDS}
    completed_at = fields.get("completed_at") or now_iso()
    fields["completed_at"] = completed_at
    saved = None
    if abandon:  # the context as it was when the run compacted it, if it still holds the turn
        saved = await c.fetchval(
            "SELECT r.context_before FROM runs r JOIN turns t ON t.run_id = r.id AND t.conversation_id = $1 "
            "WHERE r.id = $2",
            conversation_id,
            run_id,
        )
    sets = ", ".join(f"{k} = ${i}" for i, k in enumerate(fields, start=3)) + ", context_before = NULL"
    only = " AND status IN ('queued', 'running')" if unfinished_only else ""
    row = await c.fetchrow(
        "WITH released AS (DELETE FROM turns WHERE conversation_id = $2 AND run_id = $1 RETURNING 1) "
        f"UPDATE runs SET {sets} WHERE id = $1{only} RETURNING *, "
        "(SELECT count(*) FROM released) AS released_turn",
        run_id,
        conversation_id,
        *fields.values(),
    )
    if row is None:
        return None
    if before is not None:
        await before()
    if abandon:
        drop = {
            r[0]
            for r in await c.fetch(
                "UPDATE messages SET is_err = CASE WHEN message_type = 'user_message' THEN 1 ELSE is_err END "
                "WHERE run_id = $1 RETURNING rowid",
                run_id,
            )
        }
        if drop or saved is not None:
            await c.execute(
                "UPDATE conversations SET context = ARRAY(SELECT x FROM unnest(coalesce($2::bigint[], context)) "
                "WITH ORDINALITY AS u(x, o) WHERE NOT x = ANY($3::bigint[]) ORDER BY o) WHERE id = $1",
                conversation_id,
                saved,
                list(drop),
            )
    context = await c.fetchval(
        "UPDATE conversations SET last_run_completion = $2 WHERE id = $1 "
        "RETURNING context, pg_notify('conv_run_done', $3), CASE WHEN $4 THEN pg_notify('conv_turn', $1) END, "
        "pg_notify('conv_slot', $5)",
        conversation_id,
        completed_at,
        run_id,
        bool(row["released_turn"]),
        row["principal"],
    )
    return row, list(context or [])


async def _end_dead_holder(c: Conn, conversation_id: str, run_id: str) -> None:
    """The turn's holder is dead: its run ends interrupted (its rows out of the context), the turn is free."""
    await _end_run(c, run_id, conversation_id, DEAD_OWNER_END, abandon=True, unfinished_only=True)
    await c.execute("DELETE FROM turns WHERE conversation_id = $1", conversation_id)


async def _claim(c: Conn, conversation_id: str, holder: str, owner: str, at: str) -> None:
    await c.execute(
        "INSERT INTO turns (conversation_id, run_id, owner, claimed_at) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (conversation_id) DO UPDATE SET run_id = excluded.run_id, owner = excluded.owner, "
        "claimed_at = excluded.claimed_at",
        conversation_id,
        holder,
        owner,
        at,
    )


async def _prompt_rows(c: Conn, conversation_id: str, agent_id: str) -> PromptRows:
    head = await c.fetchrow(
        "SELECT a.*, c.context AS context_, (SELECT m.content FROM messages m WHERE m.rowid = c.system_rowid) "
        "AS system_ FROM agents a LEFT JOIN conversations c ON c.id = $2 WHERE a.id = $1",
        agent_id,
        conversation_id,
    )
    if head is None:
        raise NotFoundError("agent", agent_id)
    if head["context_"] is None:
        raise NotFoundError("conversation", conversation_id)
    blocks = await c.fetch(BLOCKS_OF, agent_id)
    context = list(head["context_"])
    rows = await c.fetch(
        "SELECT rowid, message_type, content, tool_calls, tool_call_id, run_id FROM messages "
        "WHERE rowid = ANY($1::bigint[])",
        context[1:],
    )
    by_rowid = {r[0]: tuple(r)[1:] for r in rows}
    context_rows = [by_rowid[i] for i in context[1:] if i in by_rowid]
    agent = agent_from_row(head, [block_from_row(b) for b in blocks])
    return PromptRows(agent, head["system_"], context_rows)
