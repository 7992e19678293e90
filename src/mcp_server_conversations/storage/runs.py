"""Runs: one send_message each."""

from __future__ import annotations

from typing import Any

from ..errors import NotFoundError
from ..models import Message, Run
from ..util import now_iso
from .base import SQLiteBase
from .rows import MESSAGE_COLUMNS, message_from_row, pack, run_from_row, unpack

RUN_FIELDS = {
    "model", "status", "stop_reason", "prompt_tokens", "completion_tokens", "total_tokens", "error",
    "started_at", "completed_at",
}


class RunStore(SQLiteBase):
    async def create_run(
        self, run_id: str, conversation_id: str, agent_id: str, *, status: str, idempotency_key: str | None
    ) -> Run:
        async with self.write() as db:
            await db.execute(
                "INSERT INTO runs (id, conversation_id, agent_id, status, idempotency_key, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, conversation_id, agent_id, status, idempotency_key, now_iso()),
            )
        return await self.get_run(run_id, with_messages=False)

    async def update_run(self, run_id: str, fields: dict[str, Any]) -> None:
        fields = {k: v for k, v in fields.items() if k in RUN_FIELDS}
        if not fields:
            return
        sets = ", ".join(f"{k} = ?" for k in fields)
        async with self.write() as db:
            await db.execute(f"UPDATE runs SET {sets} WHERE id = ?", (*fields.values(), run_id))

    async def get_run(self, run_id: str, *, with_messages: bool = True) -> Run:
        row = await self.one("SELECT * FROM runs WHERE id = ?", (run_id,))
        if row is None:
            raise NotFoundError("run", run_id)
        messages = await self.run_messages(run_id, row["conversation_id"]) if with_messages else []
        return run_from_row(row, messages)

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

    async def unfinished_runs(self) -> list[tuple[str, str]]:
        """(run_id, conversation_id) of runs left queued or running (the process died)."""
        rows = await self.all("SELECT id, conversation_id FROM runs WHERE status IN ('queued', 'running')")
        return [(r["id"], r["conversation_id"]) for r in rows]

    async def finish_run(
        self, run_id: str, conversation_id: str, fields: dict[str, Any], *, abandon: bool
    ) -> None:
        """End a run in one transaction: for a run that did not complete (`abandon`), every row it wrote
        leaves the context window and its user input is marked is_err, so the context is as it was before
        the run; then the conversation's last_run_completion and the run's final fields. The run row is
        written last: reads share the store's one connection and can see a transaction in progress, so
        whoever sees the run ended also sees the context cleaned."""
        fields = {k: v for k, v in fields.items() if k in RUN_FIELDS}
        completed_at = fields.get("completed_at") or now_iso()
        fields["completed_at"] = completed_at
        sets = ", ".join(f"{k} = ?" for k in fields)
        async with self.write() as db:
            if abandon:
                cur = await db.execute("SELECT rowid FROM messages WHERE run_id = ?", (run_id,))
                drop = {r["rowid"] for r in await cur.fetchall()}
                cur = await db.execute("SELECT context FROM conversations WHERE id = ?", (conversation_id,))
                conv = await cur.fetchone()
                if drop and conv is not None:
                    context = [i for i in unpack(conv["context"]) if i not in drop]
                    await db.execute(
                        "UPDATE conversations SET context = ? WHERE id = ?", (pack(context), conversation_id)
                    )
                await db.execute(
                    "UPDATE messages SET is_err = 1 WHERE run_id = ? AND message_type = 'user_message'", (run_id,)
                )
            await db.execute(
                "UPDATE conversations SET last_run_completion = ? WHERE id = ?", (completed_at, conversation_id)
            )
            await db.execute(f"UPDATE runs SET {sets} WHERE id = ?", (*fields.values(), run_id))

    async def mark_run_started(self, run_id: str, *, model: str, started_at: str) -> None:
        """queued -> running, with the model this run uses (the store keeps it for get_run)."""
        await self.update_run(run_id, {"status": "running", "model": model, "started_at": started_at})
