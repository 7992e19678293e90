"""Agents and their memory blocks."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from typing import Any

from ..errors import NotFoundError
from ..models import Agent, Block, BlockVersion, ChangedBy
from ..principals import LOCAL
from ..util import new_id, now_iso
from .base import SQLiteBase, all_in
from .rows import BLOCKS_OF, agent_from_row, block_from_row, block_version_from_row

HISTORY_KEEP = 1000  # versions kept per block unless the caller says (--memory-history-limit)
CHANGES_POLL = 0.2  # seconds between looks at the change feed while a subscription waits

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
        changed_by: ChangedBy | None = None,
    ) -> Agent:
        """`letta`: description, tags and model_settings, as Letta clients give them. Each block starts its
        history at version 1, `changed_by` what made it."""

        def create(db: sqlite3.Connection) -> str:
            agent_id = _insert_agent(
                db, name, model, system, context_window_limit, blocks, is_default, principal, changed_by
            )
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
        *,
        changed_by: ChangedBy | None = None,
        keep: int = HISTORY_KEEP,
    ) -> Block:
        """Create or update a block atomically; `check(current, fields)` validates and returns the
        full new values (value, description, limit, read_only) or raises. A new value is a new version."""
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
                _record(db, block_id, 1, new["value"], now, changed_by, keep)
            else:
                block_id = current.id
                version = current.version + (new["value"] != current.value)
                db.execute(
                    "UPDATE blocks SET value = ?, description = ?, char_limit = ?, read_only = ?, updated_at = ?, "
                    "version = ? WHERE id = ?",
                    (new["value"], new["description"], new["limit"], int(new["read_only"]), now, version, block_id),
                )
                if version != current.version:
                    _record(db, block_id, version, new["value"], now, changed_by, keep)
            return block_from_row(db.execute("SELECT * FROM blocks WHERE id = ?", (block_id,)).fetchone())

        return await self.database.write(upsert)

    async def edit_block_value(
        self,
        agent_id: str,
        label: str,
        edit: Callable[[Block | None], str],
        *,
        changed_by: ChangedBy | None = None,
        keep: int = HISTORY_KEEP,
    ) -> Block:
        """Read-modify-write of a block's value in one transaction, so parallel edits never
        lose each other. `edit` gets the current block (None if missing) and may raise."""

        def change(db: sqlite3.Connection) -> Block:
            row = db.execute("SELECT * FROM blocks WHERE agent_id = ? AND label = ?", (agent_id, label)).fetchone()
            current = block_from_row(row) if row else None
            value = edit(current)
            assert current is not None  # edit() raises for a missing block
            if value == current.value:
                return current
            now, version = now_iso(), current.version + 1
            db.execute(
                "UPDATE blocks SET value = ?, updated_at = ?, version = ? WHERE id = ?",
                (value, now, version, current.id),
            )
            _record(db, current.id, version, value, now, changed_by, keep)
            return current.model_copy(update={"value": value, "version": version})

        return await self.database.write(change)

    async def block_history(
        self, agent_id: str, label: str, *, limit: int, before: int | None
    ) -> tuple[Block, list[BlockVersion]] | None:
        """The block and up to `limit` of its versions below `before` (all if None), newest first."""

        def read(db: sqlite3.Connection) -> tuple[Block, list[BlockVersion]] | None:
            row = db.execute("SELECT * FROM blocks WHERE agent_id = ? AND label = ?", (agent_id, label)).fetchone()
            if row is None:
                return None
            rows = db.execute(
                "SELECT * FROM block_versions WHERE block_id = ? AND version < ? ORDER BY version DESC LIMIT ?",
                (row["id"], before if before is not None else row["version"] + 1, limit),
            )
            return block_from_row(row), [block_version_from_row(r) for r in rows]

        return await self.database.read(read, snapshot=True)

    async def block_version(
        self, agent_id: str, label: str, version: int
    ) -> tuple[Block, BlockVersion | None, int] | None:
        """The block, its `version` (None if never made or pruned) and its oldest kept version."""

        def read(db: sqlite3.Connection) -> tuple[Block, BlockVersion | None, int] | None:
            row = db.execute("SELECT * FROM blocks WHERE agent_id = ? AND label = ?", (agent_id, label)).fetchone()
            if row is None:
                return None
            found = db.execute(
                "SELECT * FROM block_versions WHERE block_id = ? AND version = ?", (row["id"], version)
            ).fetchone()
            oldest = db.execute("SELECT min(version) FROM block_versions WHERE block_id = ?", (row["id"],)).fetchone()
            return block_from_row(row), block_version_from_row(found) if found else None, oldest[0] or row["version"]

        return await self.database.read(read, snapshot=True)

    async def resource_changes(self, after: int | None, within: float) -> tuple[int, list[tuple[str, str]] | None]:
        """See Store.resource_changes: rows of `resource_changes` past `after`, polled every CHANGES_POLL s."""

        def read(db: sqlite3.Connection) -> tuple[int, list[tuple[str, str]] | None]:
            if after is None:
                return int(db.execute("SELECT coalesce(max(seq), 0) FROM resource_changes").fetchone()[0]), []
            rows = db.execute(
                "SELECT seq, kind, key FROM resource_changes WHERE seq > ? ORDER BY seq LIMIT 1001", (after,)
            ).fetchall()
            if not rows:
                return after, []
            if len(rows) > 1000 or rows[0][0] != after + 1:  # too many, or some were pruned unread: all may have
                last = int(db.execute("SELECT max(seq) FROM resource_changes").fetchone()[0])
                return last, None
            return rows[-1][0], [(r[1], r[2]) for r in rows]

        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            position, changes = await self.database.read(read)
            if changes != [] or after is None or loop.time() >= deadline:
                return position, changes
            await asyncio.sleep(min(CHANGES_POLL, max(0.0, deadline - loop.time())))


def _record(
    db: sqlite3.Connection,
    block_id: str,
    version: int,
    value: str,
    at: str,
    changed_by: ChangedBy | None,
    keep: int,
) -> None:
    """Store a block's new version and drop those past the newest `keep`."""
    db.execute(
        "INSERT INTO block_versions (block_id, version, value, changed_at, changed_by) VALUES (?, ?, ?, ?, ?)",
        (block_id, version, value, at, json.dumps(changed_by) if changed_by else None),
    )
    if version > keep:
        db.execute("DELETE FROM block_versions WHERE block_id = ? AND version <= ?", (block_id, version - keep))


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
    changed_by: ChangedBy | None = None,
) -> str:
    agent_id = new_id("agent")
    now = now_iso()
    ids = [new_id("block") for _ in blocks]
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
                block_id,
                agent_id,
                b["label"],
                b["value"],
                b.get("description"),
                b["limit"],
                int(bool(b.get("read_only"))),
                now,
                now,
            )
            for block_id, b in zip(ids, blocks, strict=True)
        ],
    )
    if not blocks:
        return agent_id
    by = json.dumps(changed_by) if changed_by else None
    db.executemany(
        "INSERT INTO block_versions (block_id, version, value, changed_at, changed_by) VALUES (?, 1, ?, ?, ?)",
        [(block_id, b["value"], now, by) for block_id, b in zip(ids, blocks, strict=True)],
    )
    return agent_id


def _blocks_of(db: sqlite3.Connection, agent_ids: list[str]) -> dict[str, list[Block]]:
    out: dict[str, list[Block]] = {}
    for r in all_in(db, "SELECT * FROM blocks WHERE agent_id IN ({ids}) ORDER BY created_at, rowid", agent_ids):
        out.setdefault(r["agent_id"], []).append(block_from_row(r))
    return out
