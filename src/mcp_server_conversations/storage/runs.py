"""Runs: one send_message each.

The send path's steps are one trip each to the database thread (storage/hop.py): what a send
needs to know about its conversation, a run started with its input, a model call's prompt, a
step's messages (append_messages), and a run's end with its final state."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import NotFoundError
from ..models import Message, Run
from ..util import now_iso
from . import hop
from .conversations import ConversationStore
from .rows import (
    BLOCKS_OF,
    MESSAGE_COLUMNS,
    NewMessage,
    agent_from_row,
    block_from_row,
    message_from_row,
    pack,
    run_from_row,
    unpack,
)  # fmt: skip

RUN_FIELDS = {
    "model", "status", "stop_reason", "prompt_tokens", "completion_tokens", "total_tokens", "error",
    "started_at", "completed_at",
}
CHUNK = 900  # SQLite's default limit on bound variables is 999


@dataclass(frozen=True, slots=True)
class SendTarget:
    """What a send needs to know about its conversation before it picks a model."""

    agent_id: str
    conversation_model: str | None
    agent_model: str | None
    existing_run: str | None  # the run an idempotency key already names


@dataclass(frozen=True, slots=True)
class PromptRows:
    """What one model call's prompt is built from, read together."""

    agent: Any  # models.Agent, with its memory blocks
    system_text: str | None  # the stored system message
    context: list[tuple[str, str | None, str | None, str | None, str | None]]
    # the in-context rows after the system message: (message_type, content, tool_calls as stored JSON,
    # tool_call_id, run_id), what prompt.rows_to_chat takes


class RunStore(ConversationStore):
    async def create_run(
        self, run_id: str, conversation_id: str, agent_id: str, *, status: str, idempotency_key: str | None,
        owner: str | None = None,
    ) -> Run:
        created_at = now_iso()
        await hop.write(self._write_lock, self.db, lambda db: db.execute(
            "INSERT INTO runs (id, conversation_id, agent_id, status, idempotency_key, created_at, owner) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (run_id, conversation_id, agent_id, status, idempotency_key, created_at, owner),
        ))  # fmt: skip
        return Run(id=run_id, run_id=run_id, conversation_id=conversation_id, agent_id=agent_id, status=status,
                   created_at=created_at)  # fmt: skip

    async def start_run(
        self, run_id: str, conversation_id: str, agent_id: str, inputs: list[NewMessage], *, model: str,
        started_at: str, create: bool = False, idempotency_key: str | None = None, owner: str = "",
        owner_alive: Callable[[str], bool] = lambda _: False,
    ) -> tuple[Run, PromptRows] | None:
        """The run claims its conversation's turn for `owner` (this process), becomes `running` with `model`,
        and its input enters the conversation, in one transaction; with `create` the run row is made here (a
        send to an idle conversation, which is never queued), otherwise it is the queued row create_run made.
        Returns the run as it is now and, read in the same trip, what its first model call's prompt is built
        from — or None, writing nothing, while another live process's run holds the turn."""

        def run(db: sqlite3.Connection) -> tuple[Run, PromptRows] | None:
            if _held_elsewhere(db, conversation_id, owner, owner_alive) or _queued_earlier_elsewhere(
                db, conversation_id, run_id, owner, owner_alive
            ):
                return None
            self.append_rows(db, conversation_id, inputs)  # first write: NotFoundError if the conversation is gone
            _claim(db, conversation_id, run_id, owner, started_at)
            if create:
                db.execute(
                    "INSERT INTO runs (id, conversation_id, agent_id, status, idempotency_key, created_at, model, "
                    "started_at, owner) VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?)",
                    (run_id, conversation_id, agent_id, idempotency_key, started_at, model, started_at, owner),
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

        return await hop.write(self._write_lock, self.db, run)

    async def get_run(self, run_id: str, *, with_messages: bool = True) -> Run:
        row = await self.one("SELECT * FROM runs WHERE id = ?", (run_id,))
        if row is None:
            raise NotFoundError("run", run_id)
        messages = await self.run_messages(run_id, row["conversation_id"]) if with_messages else []
        return run_from_row(row, messages)

    async def list_runs(
        self, *, conversation_id: str | None, agent_id: str | None, statuses: list[str] | None, limit: int,
        desc: bool,
    ) -> list[Run]:
        """Runs by creation (without their messages), filtered by conversation, agent and status."""
        where, params = ["1"], []
        for column, value in (("conversation_id", conversation_id), ("agent_id", agent_id)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if statuses:
            where.append(f"status IN ({','.join('?' * len(statuses))})")
            params += statuses
        direction = "DESC" if desc else "ASC"
        rows = await self.all(
            f"SELECT * FROM runs WHERE {' AND '.join(where)} ORDER BY created_at {direction}, id {direction} LIMIT ?",
            (*params, limit),
        )
        return [run_from_row(r) for r in rows]

    async def run_by_idempotency_key(self, conversation_id: str, key: str) -> str | None:
        row = await self.one(
            "SELECT id FROM runs WHERE conversation_id = ? AND idempotency_key = ?", (conversation_id, key)
        )
        return row["id"] if row else None

    async def run_messages(self, run_id: str, conversation_id: str) -> list[Message]:
        """What the run produced, in order; the user's input is not repeated."""
        rows = await self.all(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE run_id = ? AND message_type != 'user_message' "
            "AND message_type != 'system_message' ORDER BY rowid",
            (run_id,),
        )
        conv = await self.one("SELECT context FROM conversations WHERE id = ?", (conversation_id,))
        context = set(unpack(conv["context"])) if conv else set()
        return [message_from_row(r, r["rowid"] in context) for r in rows]

    async def send_target(self, conversation_id: str, idempotency_key: str | None = None) -> SendTarget:
        """The conversation's agent and models, and the run `idempotency_key` names if any (one trip)."""

        def read(db: sqlite3.Connection) -> SendTarget:
            row = db.execute(
                "SELECT c.agent_id, c.model, a.model FROM conversations c LEFT JOIN agents a ON a.id = c.agent_id "
                "WHERE c.id = ?",
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
            return SendTarget(row[0], row[1], row[2], existing)

        return await hop.in_thread(self._reads(), read)

    async def prompt_rows(self, conversation_id: str, agent_id: str) -> PromptRows:
        """The agent with its blocks, the stored system message and the in-context rows (one trip)."""
        return await hop.in_thread(self._reads(), lambda db: _prompt_rows(db, conversation_id, agent_id))

    async def claim_turn(
        self, conversation_id: str, holder: str, owner: str, owner_alive: Callable[[str], bool]
    ) -> bool:
        """Take the conversation's turn for `holder` (not a run: a compaction) unless another live process
        holds it; the same claim start_run makes for a run. NotFoundError if there is no such conversation."""

        def claim(db: sqlite3.Connection) -> bool:
            if db.execute("SELECT 1 FROM conversations WHERE id = ?", (conversation_id,)).fetchone() is None:
                raise NotFoundError("conversation", conversation_id)
            if _held_elsewhere(db, conversation_id, owner, owner_alive):
                return False
            _claim(db, conversation_id, holder, owner, now_iso())
            return True

        return await hop.write(self._write_lock, self.db, claim)

    async def release_turn(self, conversation_id: str, holder: str) -> None:
        await hop.write(self._write_lock, self.db, lambda db: db.execute(
            "DELETE FROM turns WHERE conversation_id = ? AND run_id = ?", (conversation_id, holder)
        ))  # fmt: skip

    async def clear_turns(self) -> None:
        """Forget every claimed turn (at a start that finds no other live process: their owners are gone)."""
        await hop.write(self._write_lock, self.db, lambda db: db.execute("DELETE FROM turns"))

    async def unfinished_runs(self) -> list[tuple[str, str]]:
        """(run_id, conversation_id) of runs queued or running (in some process, or left by a dead one)."""
        return [(run_id, conv) for run_id, conv, _ in await self.unfinished_runs_by_owner()]

    async def unfinished_runs_by_owner(self) -> list[tuple[str, str, str | None]]:
        """(run_id, conversation_id, owner) of runs queued or running; owner is null for runs stored before m007."""
        rows = await self.all("SELECT id, conversation_id, owner FROM runs WHERE status IN ('queued', 'running')")
        return [(r["id"], r["conversation_id"], r["owner"]) for r in rows]

    async def run_owner(self, run_id: str) -> str | None:
        """The process that stored the run (None for runs stored before m007, or no such run)."""
        row = await self.one("SELECT owner FROM runs WHERE id = ?", (run_id,))
        return None if row is None else row["owner"]

    async def request_cancel(self, run_id: str) -> bool:
        """Ask the process owning the run to stop it; False if the run has already ended."""
        return await hop.write(self._write_lock, self.db, lambda db: db.execute(
            "UPDATE runs SET cancel_requested = 1 WHERE id = ? AND status IN ('queued', 'running')", (run_id,)
        ).rowcount > 0)  # fmt: skip

    async def cancel_requests(self, owner: str) -> list[str]:
        """Runs of `owner` still queued or running that another process asked to cancel."""
        rows = await self.all(
            "SELECT id FROM runs WHERE cancel_requested = 1 AND owner = ? AND status IN ('queued', 'running')",
            (owner,),
        )
        return [r["id"] for r in rows]

    async def finish_run(
        self, run_id: str, conversation_id: str, fields: dict[str, Any], *, abandon: bool,
        append: list[NewMessage] | None = None,
    ) -> Run | None:
        """End a run in one transaction: the run's final fields; for a run that did not complete (`abandon`),
        every row it wrote leaves the context window and its user input is marked is_err, so the context is
        as it was before the run; then the conversation's last_run_completion. `append`: messages to store
        with the end (a completed run's last step: one transaction for both). Returns the run as it ended,
        with its messages, read in the same trip (None if there is no such run: it was never stored, or
        its conversation was deleted meanwhile)."""
        fields = {k: v for k, v in fields.items() if k in RUN_FIELDS}
        completed_at = fields.get("completed_at") or now_iso()
        fields["completed_at"] = completed_at
        sets = ", ".join(f"{k} = ?" for k in fields)

        def end(db: sqlite3.Connection) -> Run | None:
            db.execute("DELETE FROM turns WHERE conversation_id = ? AND run_id = ?", (conversation_id, run_id))
            if db.execute(f"UPDATE runs SET {sets} WHERE id = ?", (*fields.values(), run_id)).rowcount == 0:
                return None
            if append:
                self.append_rows(db, conversation_id, append)
            conv = db.execute("SELECT context FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
            context = unpack(conv[0]) if conv is not None else []
            if abandon:
                drop = {r[0] for r in db.execute("SELECT rowid FROM messages WHERE run_id = ?", (run_id,))}
                if drop and conv is not None:
                    context = [i for i in context if i not in drop]
                    db.execute("UPDATE conversations SET context = ? WHERE id = ?", (pack(context), conversation_id))
                db.execute(
                    "UPDATE messages SET is_err = 1 WHERE run_id = ? AND message_type = 'user_message'", (run_id,)
                )
            db.execute(
                "UPDATE conversations SET last_run_completion = ? WHERE id = ?", (completed_at, conversation_id)
            )
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

        return await hop.write(self._write_lock, self.db, end)


def _held_elsewhere(db: sqlite3.Connection, conversation_id: str, owner: str, alive: Callable[[str], bool]) -> bool:
    """Whether another live process holds the conversation's turn (a dead holder's claim does not count)."""
    row = db.execute("SELECT owner FROM turns WHERE conversation_id = ?", (conversation_id,)).fetchone()
    return row is not None and row[0] != owner and alive(row[0])


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
