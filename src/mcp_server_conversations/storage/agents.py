"""Agents and their memory blocks."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any

from ..errors import NotFoundError
from ..models import Agent, Block
from ..principals import LOCAL
from ..util import new_id, now_iso
from .base import SQLiteBase, all_in
from .rows import BLOCKS_OF, agent_from_row, block_from_row

# Whose a thing is: its agent's principal (the one query per kind, shared by both backends).
PRINCIPAL_OF = {
    "agent": "SELECT principal FROM agents WHERE id = $1",
    "conversation": "SELECT a.principal FROM conversations c JOIN agents a ON a.id = c.agent_id WHERE c.id = $1",
    "run": "SELECT a.principal FROM runs r JOIN agents a ON a.id = r.agent_id WHERE r.id = $1",
    "block": "SELECT a.principal FROM blocks b JOIN agents a ON a.id = b.agent_id WHERE b.id = $1",
    "message": "SELECT a.principal FROM messages m JOIN agents a ON a.id = m.agent_id WHERE m.id = $1",
}
AGENT_FIELDS = {"name", "model", "system", "context_window_limit", "description", "tags", "model_settings"}
JSON_FIELDS = {"tags", "model_settings"}  # stored as JSON text
BLOCK_FIELDS = {"value": "value", "description": "description", "limit": "char_limit", "read_only": "read_only"}


class AgentStore(SQLiteBase):
    async def create_agent(
        self,
        *,
        name: str,
        model: str | None,
        system: str,
        context_window_limit: int | None,
        blocks: list[dict[str, Any]],
        is_default: bool = False,
        letta: dict[str, Any] | None = None,
        principal: str = LOCAL,
    ) -> Agent:
        """`letta`: description, tags and model_settings, as Letta clients give them."""

        def create(db: sqlite3.Connection) -> str:
            agent_id = _insert_agent(db, name, model, system, context_window_limit, blocks, is_default, principal)
            if letta:
                _set_fields(db, agent_id, letta)
            return agent_id

        agent_id = await self.database.write(create)
        return await self.get_agent(agent_id)

    async def ensure_default_agent(
        self, *, name: str, system: str, blocks: list[dict[str, Any]], principal: str = LOCAL
    ) -> str:
        """The principal's default agent's id, creating it if there is none. Check and insert share one
        write transaction, so concurrent first calls make exactly one."""

        def ensure(db: sqlite3.Connection) -> str:
            row = db.execute("SELECT id FROM agents WHERE principal = ? AND is_default = 1", (principal,)).fetchone()
            if row is not None:
                return str(row["id"])
            return _insert_agent(db, name, None, system, None, blocks, True, principal)

        return await self.database.write(ensure)

    async def get_agent(self, agent_id: str) -> Agent:
        agent = await self.database.read(lambda db: _read_agent(db, "id = ?", (agent_id,)), snapshot=True)
        if agent is None:
            raise NotFoundError("agent", agent_id)
        return agent

    async def default_agent(self, principal: str = LOCAL) -> Agent | None:
        """The principal's default agent with its blocks, None before its first use (or after it was deleted)."""
        return await self.database.read(
            lambda db: _read_agent(db, "principal = ? AND is_default = 1", (principal,)), snapshot=True
        )

    async def default_agent_id(self, principal: str = LOCAL) -> str | None:
        row = await self._one("SELECT id FROM agents WHERE principal = ? AND is_default = 1", (principal,))
        return row["id"] if row else None

    async def list_agents(
        self, limit: int, after: tuple[str, str] | None, desc: bool = False, *, principal: str = LOCAL
    ) -> list[Agent]:
        cmp, direction = ("<", "DESC") if desc else (">", "ASC")

        def read(db: sqlite3.Connection) -> list[Agent]:
            if after:
                rows = db.execute(
                    f"SELECT * FROM agents WHERE principal = ? AND (created_at, id) {cmp} (?, ?) "
                    f"ORDER BY created_at {direction}, id {direction} LIMIT ?",
                    (principal, after[0], after[1], limit),
                ).fetchall()
            else:
                rows = db.execute(
                    f"SELECT * FROM agents WHERE principal = ? ORDER BY created_at {direction}, id {direction} LIMIT ?",
                    (principal, limit),
                ).fetchall()
            blocks = _blocks_of(db, [r["id"] for r in rows])
            return [agent_from_row(r, blocks.get(r["id"], [])) for r in rows]

        return await self.database.read(read, snapshot=True)

    async def principal_of(self, kind: str, key: str) -> str | None:
        """The principal owning the agent, conversation, run, block or message `key`; None if there is none."""
        row = await self._one(PRINCIPAL_OF[kind].replace("$1", "?"), (key,))
        return str(row[0]) if row else None

    async def update_agent(self, agent_id: str, fields: dict[str, Any]) -> Agent:
        fields = {k: v for k, v in fields.items() if k in AGENT_FIELDS}

        def update(db: sqlite3.Connection) -> None:
            if db.execute("SELECT 1 FROM agents WHERE id = ?", (agent_id,)).fetchone() is None:
                raise NotFoundError("agent", agent_id)
            _set_fields(db, agent_id, fields)

        await self.database.write(update)
        return await self.get_agent(agent_id)

    async def claim_default_conversation(self, agent_id: str, conversation_id: str) -> str:
        """Make `conversation_id` the agent's default conversation unless it has one that still exists;
        the default conversation's id either way."""

        def claim(db: sqlite3.Connection) -> str:
            db.execute(
                "UPDATE agents SET default_conversation_id = ? WHERE id = ? AND (default_conversation_id IS NULL "
                "OR default_conversation_id NOT IN (SELECT id FROM conversations WHERE agent_id = ?))",
                (conversation_id, agent_id, agent_id),
            )
            row = db.execute("SELECT default_conversation_id FROM agents WHERE id = ?", (agent_id,)).fetchone()
            if row is None:
                raise NotFoundError("agent", agent_id)
            return str(row["default_conversation_id"])

        return await self.database.write(claim)

    async def delete_agent(self, agent_id: str) -> None:
        """Delete the agent with its blocks, conversations, messages and runs."""

        def delete(db: sqlite3.Connection) -> None:
            if db.execute("SELECT 1 FROM agents WHERE id = ?", (agent_id,)).fetchone() is None:
                raise NotFoundError("agent", agent_id)
            db.execute("DELETE FROM messages WHERE agent_id = ?", (agent_id,))
            db.execute("DELETE FROM agents WHERE id = ?", (agent_id,))

        await self.database.write(delete)

    # -- blocks --

    async def get_block(self, agent_id: str, label: str) -> Block | None:
        row = await self._one("SELECT * FROM blocks WHERE agent_id = ? AND label = ?", (agent_id, label))
        return block_from_row(row) if row else None

    async def get_block_by_id(self, block_id: str) -> tuple[str, Block]:
        """The block and its agent's id."""
        row = await self._one("SELECT * FROM blocks WHERE id = ?", (block_id,))
        if row is None:
            raise NotFoundError("block", block_id)
        return row["agent_id"], block_from_row(row)

    async def upsert_block(
        self,
        agent_id: str,
        label: str,
        fields: dict[str, Any],
        check: Callable[[Block | None, dict[str, Any]], dict[str, Any]],
    ) -> Block:
        """Create or update a block atomically; `check(current, fields)` validates and returns the
        full new values (value, description, limit, read_only) or raises."""
        now = now_iso()

        def upsert(db: sqlite3.Connection) -> Block:
            row = db.execute("SELECT * FROM blocks WHERE agent_id = ? AND label = ?", (agent_id, label)).fetchone()
            current = block_from_row(row) if row else None
            new = check(current, fields)
            if current is None:
                block_id = new_id("block")
                db.execute(
                    "INSERT INTO blocks (id, agent_id, label, value, description, char_limit, read_only, "
                    "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        block_id,
                        agent_id,
                        label,
                        new["value"],
                        new["description"],
                        new["limit"],
                        int(new["read_only"]),
                        now,
                        now,
                    ),
                )
            else:
                block_id = current.id
                db.execute(
                    "UPDATE blocks SET value = ?, description = ?, char_limit = ?, read_only = ?, updated_at = ? "
                    "WHERE id = ?",
                    (new["value"], new["description"], new["limit"], int(new["read_only"]), now, block_id),
                )
            return block_from_row(db.execute("SELECT * FROM blocks WHERE id = ?", (block_id,)).fetchone())

        return await self.database.write(upsert)

    async def edit_block_value(self, agent_id: str, label: str, edit: Callable[[Block | None], str]) -> Block:
        """Read-modify-write of a block's value in one transaction, so parallel edits never
        lose each other. `edit` gets the current block (None if missing) and may raise."""

        def change(db: sqlite3.Connection) -> Block:
            row = db.execute("SELECT * FROM blocks WHERE agent_id = ? AND label = ?", (agent_id, label)).fetchone()
            current = block_from_row(row) if row else None
            value = edit(current)
            assert current is not None  # edit() raises for a missing block
            db.execute("UPDATE blocks SET value = ?, updated_at = ? WHERE id = ?", (value, now_iso(), current.id))
            return current.model_copy(update={"value": value})

        return await self.database.write(change)


def _set_fields(db: sqlite3.Connection, agent_id: str, fields: dict[str, Any]) -> None:
    fields = {k: json.dumps(v) if k in JSON_FIELDS and v is not None else v for k, v in fields.items()}
    if fields:
        sets = ", ".join(f"{k} = ?" for k in fields)
        db.execute(f"UPDATE agents SET {sets} WHERE id = ?", (*fields.values(), agent_id))


def _read_agent(db: sqlite3.Connection, where: str, params: tuple[Any, ...]) -> Agent | None:
    """An agent and its blocks in one trip to the database thread (the caller gives the snapshot)."""
    row = db.execute(f"SELECT * FROM agents WHERE {where}", params).fetchone()
    if row is None:
        return None
    blocks = db.execute(BLOCKS_OF, (row["id"],))
    return agent_from_row(row, [block_from_row(b) for b in blocks])


def _insert_agent(
    db: sqlite3.Connection,
    name: str,
    model: str | None,
    system: str,
    context_window_limit: int | None,
    blocks: list[dict[str, Any]],
    is_default: bool,
    principal: str,
) -> str:
    agent_id = new_id("agent")
    now = now_iso()
    db.execute(
        "INSERT INTO agents (id, name, model, system, context_window_limit, is_default, created_at, principal) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (agent_id, name, model, system, context_window_limit, int(is_default), now, principal),
    )
    db.executemany(
        "INSERT INTO blocks (id, agent_id, label, value, description, char_limit, read_only, "
        "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                new_id("block"),
                agent_id,
                b["label"],
                b["value"],
                b.get("description"),
                b["limit"],
                int(bool(b.get("read_only"))),
                now,
                now,
            )
            for b in blocks
        ],
    )
    return agent_id


def _blocks_of(db: sqlite3.Connection, agent_ids: list[str]) -> dict[str, list[Block]]:
    out: dict[str, list[Block]] = {}
    for r in all_in(db, "SELECT * FROM blocks WHERE agent_id IN ({ids}) ORDER BY created_at, rowid", agent_ids):
        out.setdefault(r["agent_id"], []).append(block_from_row(r))
    return out
