"""Runs: one send_message each.

The send path's steps are one trip each to the database thread (storage/database.py): what a send
needs to know about its conversation, a run started with its input, a model call's prompt, a
step's messages (append_messages), and a run's end with its final state."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from ..errors import DuplicateRunError, NotFoundError
from ..models import Message, Run
from ..principals import LOCAL
from ..util import now_iso
from .conversations import ConversationStore, append_rows
from .fair import no_slot
from .rows import (
    BLOCKS_OF,
    MESSAGE_COLUMNS,
    agent_from_row,
    block_from_row,
    message_from_row,
    pack,
    run_from_row,
    unpack,
)
from .types import NewMessage, PromptRows, SendTarget

RUN_FIELDS = {
    "model",
    "status",
    "stop_reason",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "error",
    "started_at",
    "completed_at",
}
CHUNK = 900  # SQLite's default limit on bound variables is 999
# How a run ends whose process died before it could end it (ended by any live process, or at a start).
DEAD_OWNER_END = {
    "status": "interrupted",
    "stop_reason": "interrupted",
    "error": "the server process that ran it stopped before it finished",
}


class RunStore(ConversationStore):
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
        """Store a run (queued). DuplicateRunError if `idempotency_key` already names a run of the conversation."""
        created_at = now_iso()
        await self.database.write(
            lambda db: _insert_run(
                db,
                conversation_id,
                idempotency_key,
                (
                    "INSERT INTO runs (id, conversation_id, agent_id, status, idempotency_key, created_at, owner, "
                    "principal) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                ),
                (run_id, conversation_id, agent_id, status, idempotency_key, created_at, owner, principal),
            )
        )
        fields: dict[str, Any] = {"status": status}  # validated by Run
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
        """The run claims its conversation's turn for `owner` (this process), becomes `running` with `model`,
        and its input enters the conversation, in one transaction; with `create` the run row is made here (a
        send to an idle conversation, which is never queued), otherwise it is the queued row create_run made.
        Returns the run as it is now and, read in the same trip, what its first model call's prompt is built
        from — or None, writing nothing, while another live process's run holds the turn, or while
        `principal` has `max_running` runs running or an earlier run waiting for a slot (fair.py).
        DuplicateRunError (nothing written) if `idempotency_key` already names a run of the conversation."""
        owner_alive = self._alive

        def run(db: sqlite3.Connection) -> tuple[Run, PromptRows] | None:
            if _held_elsewhere(db, conversation_id, owner, owner_alive) or _queued_earlier_elsewhere(
                db, conversation_id, run_id, owner, owner_alive
            ):
                return None
            if max_running is not None and no_slot(db, conversation_id, principal, max_running, owner, owner_alive):
                return None
            append_rows(db, conversation_id, inputs)  # first write: NotFoundError if the conversation is gone
            _claim(db, conversation_id, run_id, owner, started_at)
            if create:
                _insert_run(
                    db,
                    conversation_id,
                    idempotency_key,
                    (
                        "INSERT INTO runs (id, conversation_id, agent_id, status, idempotency_key, created_at, model, "
                        "started_at, owner, principal) VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?)"
                    ),
                    (
                        run_id,
                        conversation_id,
                        agent_id,
                        idempotency_key,
                        started_at,
                        model,
                        started_at,
                        owner,
                        principal,
                    ),
                )
            else:
                db.execute(
                    "UPDATE runs SET status = 'running', model = ?, started_at = ?, owner = ? WHERE id = ?",
                    (model, started_at, owner, run_id),
                )
            row = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise NotFoundError("run", run_id)
            return run_from_row(row), _prompt_rows(db, conversation_id, agent_id)

        return await self.database.write(run)

    async def get_run(self, run_id: str, *, with_messages: bool = True) -> Run:

        def read(db: sqlite3.Connection) -> Run:
            row = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise NotFoundError("run", run_id)
            messages = _run_messages(db, run_id, row["conversation_id"]) if with_messages else []
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
        where, params = ["1"], []
        if principal is not None:
            where.append("agent_id IN (SELECT id FROM agents WHERE principal = ?)")
            params.append(principal)
        for column, value in (("conversation_id", conversation_id), ("agent_id", agent_id)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if statuses:
            where.append(f"status IN ({','.join('?' * len(statuses))})")
            params += statuses
        direction = "DESC" if desc else "ASC"
        rows = await self._all(
            f"SELECT * FROM runs WHERE {' AND '.join(where)} ORDER BY created_at {direction}, id {direction} LIMIT ?",
            (*params, limit),
        )
        return [run_from_row(r) for r in rows]

    async def run_by_idempotency_key(self, conversation_id: str, key: str) -> str | None:
        row = await self._one(
            "SELECT id FROM runs WHERE conversation_id = ? AND idempotency_key = ?", (conversation_id, key)
        )
        return row["id"] if row else None

    async def send_target(self, conversation_id: str, idempotency_key: str | None = None) -> SendTarget:
        """The conversation's agent and models, and the run `idempotency_key` names if any (one trip)."""

        def read(db: sqlite3.Connection) -> SendTarget:
            row = db.execute(
                "SELECT c.agent_id, c.model, a.model, a.principal FROM conversations c "
                "LEFT JOIN agents a ON a.id = c.agent_id WHERE c.id = ?",
                (conversation_id,),
            ).fetchone()
            if row is None:
                raise NotFoundError("conversation", conversation_id)
            existing = None
            if idempotency_key is not None:
                key = db.execute(
                    "SELECT id FROM runs WHERE conversation_id = ? AND idempotency_key = ?",
                    (conversation_id, idempotency_key),
                ).fetchone()
                existing = key[0] if key else None
            return SendTarget(row[0], row[1], row[2], existing, row[3])

        return await self.database.read(read)

    async def prompt_rows(self, conversation_id: str, agent_id: str) -> PromptRows:
        """The agent with its blocks, the stored system message and the in-context rows (one trip)."""
        return await self.database.read(lambda db: _prompt_rows(db, conversation_id, agent_id))

    async def claim_turn(self, conversation_id: str, holder: str, owner: str) -> bool:
        """Take the conversation's turn for `holder` (not a run: a compaction) unless another live process
        holds it; the same claim start_run makes for a run. NotFoundError if there is no such conversation."""
        owner_alive = self._alive

        def claim(db: sqlite3.Connection) -> bool:
            if db.execute("SELECT 1 FROM conversations WHERE id = ?", (conversation_id,)).fetchone() is None:
                raise NotFoundError("conversation", conversation_id)
            if _held_elsewhere(db, conversation_id, owner, owner_alive):
                return False
            _claim(db, conversation_id, holder, owner, now_iso())
            return True

        return await self.database.write(claim)

    async def release_turn(self, conversation_id: str, holder: str) -> None:
        await self.database.write(
            lambda db: db.execute(
                "DELETE FROM turns WHERE conversation_id = ? AND run_id = ?", (conversation_id, holder)
            )
        )

    async def clear_turns(self) -> None:
        """Forget every claimed turn (at a start that finds no other live process: their owners are gone)."""
        await self.database.write(lambda db: db.execute("DELETE FROM turns"))

    async def unfinished_runs(self) -> list[tuple[str, str]]:
        """(run_id, conversation_id) of runs queued or running (in some process, or left by a dead one)."""
        rows = await self._all("SELECT id, conversation_id FROM runs WHERE status IN ('queued', 'running')")
        return [(r["id"], r["conversation_id"]) for r in rows]

    async def unfinished_runs_elsewhere(self, owner: str) -> list[tuple[str, str, str | None]]:
        """(run_id, conversation_id, owner) of runs queued or running that process `owner` does not own
        (owner is null for runs stored before m007)."""
        rows = await self._all(
            "SELECT id, conversation_id, owner FROM runs WHERE status IN ('queued', 'running') AND owner IS NOT ?",
            (owner,),
        )
        return [(r["id"], r["conversation_id"], r["owner"]) for r in rows]

    async def run_owner(self, run_id: str) -> str | None:
        """The process that stored the run (None for runs stored before m007, or no such run)."""
        row = await self._one("SELECT owner FROM runs WHERE id = ?", (run_id,))
        return None if row is None else row["owner"]

    async def request_cancel(self, run_id: str) -> bool:
        """Ask the process owning the run to stop it; False if the run has already ended."""
        return await self.database.write(
            lambda db: (
                db.execute(
                    "UPDATE runs SET cancel_requested = 1 WHERE id = ? AND status IN ('queued', 'running')", (run_id,)
                ).rowcount
                > 0
            )
        )

    async def cancel_requests(self, owner: str) -> list[str]:
        """Runs of `owner` still queued or running that another process asked to cancel."""
        rows = await self._all(
            "SELECT id FROM runs WHERE cancel_requested = 1 AND owner = ? AND status IN ('queued', 'running')",
            (owner,),
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
        """End a run in one transaction: the run's final fields; for a run that did not complete (`abandon`),
        every row it wrote leaves the context window (and what its compaction evicted comes back) and its user
        input is marked is_err, so the context is as it was before the run; then the conversation's
        last_run_completion. `append`: messages to store with the end (a completed run's last step: one
        transaction for both). Returns the run as it ended, with its messages, read in the same trip (None if
        there is no such run: it was never stored, or its conversation was deleted meanwhile; with
        `unfinished_only`, also if it had already ended, as when two processes end a dead process's run at
        once)."""

        def end(db: sqlite3.Connection) -> Run | None:
            context = _end_run(
                db,
                run_id,
                conversation_id,
                fields,
                abandon=abandon,
                unfinished_only=unfinished_only,
                before=(lambda: append_rows(db, conversation_id, append)) if append else None,
            )
            if context is None:
                return None
            row = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
            in_context = set(context)
            messages = [
                message_from_row(r, r[0] in in_context)
                for r in db.execute(
                    f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE run_id = ? AND message_type != 'user_message' "
                    "AND message_type != 'system_message' ORDER BY rowid",
                    (run_id,),
                )
            ]
            return run_from_row(row, messages)

        return await self.database.write(end)


def _run_messages(db: sqlite3.Connection, run_id: str, conversation_id: str) -> list[Message]:
    """What the run produced, in order; the user's input is not repeated."""
    rows = db.execute(
        f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE run_id = ? AND message_type != 'user_message' "
        "AND message_type != 'system_message' ORDER BY rowid",
        (run_id,),
    ).fetchall()
    conv = db.execute("SELECT context FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
    context = set(unpack(conv["context"])) if conv else set()
    return [message_from_row(r, r["rowid"] in context) for r in rows]


def _context_before_compaction(db: sqlite3.Connection, conversation_id: str, run_id: str) -> bytes | None:
    """The context as it was when the run compacted it, if it did and still holds the conversation's turn
    (then nothing but the run has changed the context since)."""
    row = db.execute(
        "SELECT r.context_before FROM runs r JOIN turns t ON t.run_id = r.id AND t.conversation_id = ? WHERE r.id = ?",
        (conversation_id, run_id),
    ).fetchone()
    return None if row is None else row[0]


def _insert_run(db: sqlite3.Connection, conversation_id: str, key: str | None, sql: str, params: tuple) -> None:
    """Insert a run row; when its idempotency key is taken (another process stored a run with it since
    this one looked), DuplicateRunError names that run."""
    try:
        db.execute(sql, params)
    except sqlite3.IntegrityError:
        taken = (
            None
            if key is None
            else db.execute(
                "SELECT id FROM runs WHERE conversation_id = ? AND idempotency_key = ?", (conversation_id, key)
            ).fetchone()
        )
        if taken is None:
            raise
        raise DuplicateRunError(taken[0]) from None


def _end_run(
    db: sqlite3.Connection,
    run_id: str,
    conversation_id: str,
    fields: dict[str, Any],
    *,
    abandon: bool,
    unfinished_only: bool = False,
    before: Callable[[], Any] | None = None,
) -> list[int] | None:
    """finish_run's writes, inside the caller's transaction: the run's turn released and its end stored;
    returns the conversation's context after them (None if the run is not there to end). `before`:
    writes made first when the run is there (a completed run's last step)."""
    fields = {k: v for k, v in fields.items() if k in RUN_FIELDS}
    completed_at = fields.get("completed_at") or now_iso()
    fields["completed_at"] = completed_at
    sets = ", ".join(f"{k} = ?" for k in fields) + ", context_before = NULL"  # kept only while in flight
    saved = _context_before_compaction(db, conversation_id, run_id) if abandon else None
    db.execute("DELETE FROM turns WHERE conversation_id = ? AND run_id = ?", (conversation_id, run_id))
    only = " AND status IN ('queued', 'running')" if unfinished_only else ""
    if db.execute(f"UPDATE runs SET {sets} WHERE id = ?{only}", (*fields.values(), run_id)).rowcount == 0:
        return None
    if before is not None:
        before()
    conv = db.execute("SELECT context FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
    context = unpack(conv[0]) if conv is not None else []
    if abandon:
        drop = {r[0] for r in db.execute("SELECT rowid FROM messages WHERE run_id = ?", (run_id,))}
        if (drop or saved is not None) and conv is not None:
            context = [i for i in (context if saved is None else unpack(saved)) if i not in drop]
            db.execute("UPDATE conversations SET context = ? WHERE id = ?", (pack(context), conversation_id))
        db.execute("UPDATE messages SET is_err = 1 WHERE run_id = ? AND message_type = 'user_message'", (run_id,))
    db.execute("UPDATE conversations SET last_run_completion = ? WHERE id = ?", (completed_at, conversation_id))
    return context


def _held_elsewhere(db: sqlite3.Connection, conversation_id: str, owner: str, alive: Callable[[str], bool]) -> bool:
    """Whether another live process holds the conversation's turn. A dead holder's claim does not count,
    and its run ends here (interrupted, its input out of the context) before anyone takes the turn."""
    row = db.execute("SELECT owner, run_id FROM turns WHERE conversation_id = ?", (conversation_id,)).fetchone()
    if row is None or row[0] == owner:
        return False
    if alive(row[0]):
        return True
    _end_run(db, row[1], conversation_id, DEAD_OWNER_END, abandon=True, unfinished_only=True)
    db.execute("DELETE FROM turns WHERE conversation_id = ?", (conversation_id,))
    return False


def _queued_earlier_elsewhere(
    db: sqlite3.Connection, conversation_id: str, run_id: str, owner: str, alive: Callable[[str], bool]
) -> bool:
    """Whether another live process queued a run for the conversation before `run_id` (before now, if
    `run_id` is not stored yet) that still waits: across processes, as within one, the turn goes to the
    runs in the order they were queued (the runs' rowid order)."""
    rows = db.execute(
        "SELECT DISTINCT owner FROM runs WHERE status = 'queued' AND conversation_id = ? AND owner IS NOT NULL "
        "AND owner != ? AND rowid < coalesce((SELECT rowid FROM runs WHERE id = ?), 9223372036854775807)",
        (conversation_id, owner, run_id),
    ).fetchall()
    return any(alive(r[0]) for r in rows)


def _claim(db: sqlite3.Connection, conversation_id: str, holder: str, owner: str, at: str) -> None:
    db.execute(
        "INSERT INTO turns (conversation_id, run_id, owner, claimed_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (conversation_id) DO UPDATE SET run_id = excluded.run_id, owner = excluded.owner, "
        "claimed_at = excluded.claimed_at",
        (conversation_id, holder, owner, at),
    )


def _prompt_rows(db: sqlite3.Connection, conversation_id: str, agent_id: str) -> PromptRows:
    agent = db.execute("SELECT * FROM agents WHERE id = ?", (agent_id,)).fetchone()
    if agent is None:
        raise NotFoundError("agent", agent_id)
    blocks = db.execute(BLOCKS_OF, (agent_id,)).fetchall()
    conv = db.execute(
        "SELECT c.context, m.content FROM conversations c LEFT JOIN messages m ON m.rowid = c.system_rowid "
        "WHERE c.id = ?",
        (conversation_id,),
    ).fetchone()
    if conv is None:
        raise NotFoundError("conversation", conversation_id)
    context = unpack(conv[0])
    by_rowid: dict[int, Any] = {}
    for i in range(0, len(context), CHUNK):
        part = context[i : i + CHUNK]
        cur = db.execute(
            "SELECT rowid, message_type, content, tool_calls, tool_call_id, run_id FROM messages "
            f"WHERE rowid IN ({','.join('?' * len(part))})",
            part,
        )
        for r in cur:
            by_rowid[r[0]] = r
    rows = [tuple(by_rowid[i])[1:] for i in context[1:] if i in by_rowid]
    return PromptRows(agent_from_row(agent, [block_from_row(b) for b in blocks]), conv[1], rows)
