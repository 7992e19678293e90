"""Agents and their memory blocks (PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ...errors import NotFoundError
from ...models import Agent, Block, BlockVersion, ChangedBy
from ...principals import LOCAL
from ...util import new_id, now_iso
from ..agents import AGENT_FIELDS, HISTORY_KEEP, JSON_FIELDS, PRINCIPAL_OF
from ..rows import agent_from_row, block_from_row, block_version_from_row
from .base import Conn, PgBase

BLOCKS_OF = "SELECT * FROM blocks WHERE agent_id = $1 ORDER BY created_at, seq"
DEFAULT_ID = "SELECT id FROM agents WHERE principal = $1 AND is_default = 1"


class PgAgentStore(PgBase):
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
        """`letta`: description, tags and model_settings, as Letta clients give them."""

        async def create(c: Conn) -> str:
            agent_id = await _insert_agent(
                c, name, model, system, context_window_limit, blocks, is_default, principal, changed_by
            )
            if letta:
                await _set_fields(c, agent_id, letta)
            return agent_id

        agent_id = await self.database.write(create)
        return await self.get_agent(agent_id)

    async def ensure_default_agent(
        self, *, name: str, system: str, blocks: list[dict[str, Any]], principal: str = LOCAL
    ) -> str:
        """The principal's default agent's id, made once: the unique index on (principal) of default
        agents settles a race."""

        async def ensure(c: Conn) -> str:
            found = await c.fetchval(DEFAULT_ID, principal)
            if found is not None:
                return str(found)
            agent_id = new_id("agent")
            made = await c.fetchval(
                "INSERT INTO agents (id, name, model, system, context_window_limit, is_default, created_at, principal) "
                "VALUES ($1, $2, NULL, $3, NULL, 1, $4, $5) ON CONFLICT (principal) WHERE is_default = 1 DO NOTHING "
                "RETURNING id",
                agent_id,
                name,
                system,
                now_iso(),
                principal,
            )
            if made is None:  # another caller made it since this one looked
                return str(await c.fetchval(DEFAULT_ID, principal))
            await _insert_blocks(c, agent_id, blocks)
            return agent_id

        return await self.database.write(ensure)

    async def get_agent(self, agent_id: str) -> Agent:
        agent = await self.database.read(lambda c: _read_agent(c, "id = $1", agent_id), snapshot=True)
        if agent is None:
            raise NotFoundError("agent", agent_id)
        return agent

    async def default_agent(self, principal: str = LOCAL) -> Agent | None:
        return await self.database.read(
            lambda c: _read_agent(c, "principal = $1 AND is_default = 1", principal), snapshot=True
        )

    async def default_agent_id(self, principal: str = LOCAL) -> str | None:
        row = await self._one(DEFAULT_ID, principal)
        return row["id"] if row else None

    async def list_agents(
        self, limit: int, after: tuple[str, str] | None, desc: bool = False, *, principal: str = LOCAL
    ) -> list[Agent]:
        cmp, direction = ("<", "DESC") if desc else (">", "ASC")

        async def read(c: Conn) -> list[Agent]:
            if after:
                rows = await c.fetch(
                    f"SELECT * FROM agents WHERE principal = $1 AND (created_at, id) {cmp} ($2, $3) "
                    f"ORDER BY created_at {direction}, id {direction} LIMIT $4",
                    principal,
                    after[0],
                    after[1],
                    limit,
                )
            else:
                rows = await c.fetch(
                    f"SELECT * FROM agents WHERE principal = $1 ORDER BY created_at {direction}, id {direction} "
                    "LIMIT $2",
                    principal,
                    limit,
                )
            blocks: dict[str, list[Block]] = {}
            for r in await c.fetch(
                "SELECT * FROM blocks WHERE agent_id = ANY($1::text[]) ORDER BY created_at, seq",
                [r["id"] for r in rows],
            ):
                blocks.setdefault(r["agent_id"], []).append(block_from_row(r))
            return [agent_from_row(r, blocks.get(r["id"], [])) for r in rows]

        return await self.database.read(read, snapshot=True)

    async def principal_of(self, kind: str, key: str) -> str | None:
        row = await self._one(PRINCIPAL_OF[kind], key)
        return str(row[0]) if row else None

    async def update_agent(self, agent_id: str, fields: dict[str, Any]) -> Agent:
        fields = {k: v for k, v in fields.items() if k in AGENT_FIELDS}

        async def update(c: Conn) -> None:
            if await c.fetchval("SELECT 1 FROM agents WHERE id = $1 FOR NO KEY UPDATE", agent_id) is None:
                raise NotFoundError("agent", agent_id)
            await _set_fields(c, agent_id, fields)

        await self.database.write(update)
        return await self.get_agent(agent_id)

    async def claim_default_conversation(self, agent_id: str, conversation_id: str) -> str:
        """Make `conversation_id` the agent's default conversation unless it has one that still exists;
        the default conversation's id either way (the agent's row lock settles a race)."""

        async def claim(c: Conn) -> str:
            current = await c.fetchrow(
                "SELECT default_conversation_id FROM agents WHERE id = $1 FOR NO KEY UPDATE", agent_id
            )
            if current is None:
                raise NotFoundError("agent", agent_id)
            kept = current["default_conversation_id"]
            if kept is not None and await c.fetchval(
                "SELECT 1 FROM conversations WHERE id = $1 AND agent_id = $2", kept, agent_id
            ):
                return str(kept)
            await c.execute("UPDATE agents SET default_conversation_id = $2 WHERE id = $1", agent_id, conversation_id)
            return conversation_id

        return await self.database.write(claim)

    async def delete_agent(self, agent_id: str) -> None:
        async def delete(c: Conn) -> None:
            if await c.fetchval("SELECT 1 FROM agents WHERE id = $1 FOR UPDATE", agent_id) is None:
                raise NotFoundError("agent", agent_id)
            await c.execute("DELETE FROM messages WHERE agent_id = $1", agent_id)
            await c.execute("DELETE FROM agents WHERE id = $1", agent_id)

        await self.database.write(delete)

    # -- blocks --

    async def get_block(self, agent_id: str, label: str) -> Block | None:
        row = await self._one("SELECT * FROM blocks WHERE agent_id = $1 AND label = $2", agent_id, label)
        return block_from_row(row) if row else None

    async def get_block_by_id(self, block_id: str) -> tuple[str, Block]:
        row = await self._one("SELECT * FROM blocks WHERE id = $1", block_id)
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
        """Create or update a block under row locks: the agent's row, so two first writes of a label
        (no block row to lock yet) take turns too, then the block's, so the value and version it reads
        are the ones it replaces (an agent's memory tool locks only the block)."""
        now = now_iso()

        async def upsert(c: Conn) -> Block:
            if await c.fetchval("SELECT 1 FROM agents WHERE id = $1 FOR NO KEY UPDATE", agent_id) is None:
                raise NotFoundError("agent", agent_id)
            row = await c.fetchrow(
                "SELECT * FROM blocks WHERE agent_id = $1 AND label = $2 FOR UPDATE", agent_id, label
            )
            current = block_from_row(row) if row else None
            new = check(current, fields)
            if current is None:
                row = await c.fetchrow(
                    "INSERT INTO blocks (id, agent_id, label, value, description, char_limit, read_only, "
                    "created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING *",
                    new_id("block"),
                    agent_id,
                    label,
                    new["value"],
                    new["description"],
                    new["limit"],
                    int(new["read_only"]),
                    now,
                )
                await _record(c, row["id"], 1, new["value"], now, changed_by, keep)
            else:
                version = current.version + (new["value"] != current.value)
                row = await c.fetchrow(
                    "UPDATE blocks SET value = $1, description = $2, char_limit = $3, read_only = $4, "
                    "updated_at = $5, version = $7 WHERE id = $6 RETURNING *",
                    new["value"],
                    new["description"],
                    new["limit"],
                    int(new["read_only"]),
                    now,
                    current.id,
                    version,
                )
                if version != current.version:
                    await _record(c, current.id, version, new["value"], now, changed_by, keep)
            return block_from_row(row)

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
        async def change(c: Conn) -> Block:
            row = await c.fetchrow(
                "SELECT * FROM blocks WHERE agent_id = $1 AND label = $2 FOR UPDATE", agent_id, label
            )
            current = block_from_row(row) if row else None
            value = edit(current)
            assert current is not None  # edit() raises for a missing block
            if value == current.value:
                return current
            now, version = now_iso(), current.version + 1
            await c.execute(
                "UPDATE blocks SET value = $1, updated_at = $2, version = $4 WHERE id = $3",
                value,
                now,
                current.id,
                version,
            )
            await _record(c, current.id, version, value, now, changed_by, keep)
            return current.model_copy(update={"value": value, "version": version})

        return await self.database.write(change)

    async def block_history(
        self, agent_id: str, label: str, *, limit: int, before: int | None
    ) -> tuple[Block, list[BlockVersion]] | None:
        async def read(c: Conn) -> tuple[Block, list[BlockVersion]] | None:
            row = await c.fetchrow("SELECT * FROM blocks WHERE agent_id = $1 AND label = $2", agent_id, label)
            if row is None:
                return None
            rows = await c.fetch(
                "SELECT * FROM block_versions WHERE block_id = $1 AND version < $2 ORDER BY version DESC LIMIT $3",
                row["id"],
                before if before is not None else row["version"] + 1,
                limit,
            )
            return block_from_row(row), [block_version_from_row(r) for r in rows]

        return await self.database.read(read, snapshot=True)

    async def block_version(
        self, agent_id: str, label: str, version: int
    ) -> tuple[Block, BlockVersion | None, int] | None:
        async def read(c: Conn) -> tuple[Block, BlockVersion | None, int] | None:
            row = await c.fetchrow("SELECT * FROM blocks WHERE agent_id = $1 AND label = $2", agent_id, label)
            if row is None:
                return None
            found = await c.fetchrow(
                "SELECT * FROM block_versions WHERE block_id = $1 AND version = $2", row["id"], version
            )
            oldest = await c.fetchval("SELECT min(version) FROM block_versions WHERE block_id = $1", row["id"])
            return block_from_row(row), block_version_from_row(found) if found else None, oldest or row["version"]

        return await self.database.read(read, snapshot=True)

    async def resource_changes(self, after: int | None, within: float) -> tuple[int, list[tuple[str, str]] | None]:
        """See Store.resource_changes: the conv_change notifications this process's listener received."""
        return await self.database.changes_since(after, within)


async def _record(
    c: Conn, block_id: str, version: int, value: str, at: str, changed_by: ChangedBy | None, keep: int
) -> None:
    """Store a block's new version and drop those past the newest `keep`."""
    await c.execute(
        "INSERT INTO block_versions (block_id, version, value, changed_at, changed_by) VALUES ($1, $2, $3, $4, $5)",
        block_id,
        version,
        value,
        at,
        json.dumps(changed_by) if changed_by else None,
    )
    if version > keep:
        await c.execute("DELETE FROM block_versions WHERE block_id = $1 AND version <= $2", block_id, version - keep)


async def _read_agent(c: Conn, where: str, *params: Any) -> Agent | None:
    row = await c.fetchrow(f"SELECT * FROM agents WHERE {where}", *params)
    if row is None:
        return None
    blocks = await c.fetch(BLOCKS_OF, row["id"])
    return agent_from_row(row, [block_from_row(b) for b in blocks])


async def _insert_agent(
    c: Conn,
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
    await c.execute(
        "INSERT INTO agents (id, name, model, system, context_window_limit, is_default, created_at, principal) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        agent_id,
        name,
        model,
        system,
        context_window_limit,
        int(is_default),
        now_iso(),
        principal,
    )
    await _insert_blocks(c, agent_id, blocks, changed_by)
    return agent_id


async def _set_fields(c: Conn, agent_id: str, fields: dict[str, Any]) -> None:
    fields = {k: json.dumps(v) if k in JSON_FIELDS and v is not None else v for k, v in fields.items()}
    if fields:
        sets = ", ".join(f"{k} = ${i}" for i, k in enumerate(fields, start=2))
        await c.execute(f"UPDATE agents SET {sets} WHERE id = $1", agent_id, *fields.values())


async def _insert_blocks(
    c: Conn, agent_id: str, blocks: list[dict[str, Any]], changed_by: ChangedBy | None = None
) -> None:
    if not blocks:
        return
    now = now_iso()
    ids = [new_id("block") for _ in blocks]
    await c.executemany(
        "INSERT INTO blocks (id, agent_id, label, value, description, char_limit, read_only, created_at, updated_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
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
            )
            for block_id, b in zip(ids, blocks, strict=True)
        ],
    )
    by = json.dumps(changed_by) if changed_by else None
    await c.executemany(
        "INSERT INTO block_versions (block_id, version, value, changed_at, changed_by) VALUES ($1, 1, $2, $3, $4)",
        [(block_id, b["value"], now, by) for block_id, b in zip(ids, blocks, strict=True)],
    )
