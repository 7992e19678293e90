"""The PostgreSQL store's base: its Database (db.py), presence, wake-ups and small read helpers."""

from __future__ import annotations

from typing import Any, TypeVar

import asyncpg

from .db import Database, PgPresence

Self = TypeVar("Self", bound="PgBase")
Conn = asyncpg.Connection


class PgBase:
    """Every method is a unit of work (an async function of a pooled connection) run through
    `Database.write` (one transaction) or `Database.read` (committed data only)."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.location = database.location
        self._presence: PgPresence | None = None

    @classmethod
    async def open(cls: type[Self], url: str) -> Self:
        return cls(await Database.open(url))

    async def close(self) -> None:
        if self._presence is not None:
            await self._presence.leave()
        await self.database.close()

    async def ping(self) -> None:
        await self.database.ping()

    def presence(self) -> PgPresence:
        if self._presence is None:
            self._presence = PgPresence(self.database)
        return self._presence

    async def wait_turn(self, conversation_id: str, within: float) -> None:
        await self.database.wait("conv_turn", conversation_id, within)

    async def wait_cancel_requests(self, owner: str, within: float) -> None:
        await self.database.wait("conv_cancel", owner, within)

    async def wait_run_end(self, run_id: str, within: float) -> None:
        await self.database.wait("conv_run_done", run_id, within)

    def data_changes(self) -> int:
        return self.database.writes

    async def _one(self, sql: str, *params: Any) -> asyncpg.Record | None:
        return await self.database.read(lambda c: c.fetchrow(sql, *params))

    async def _all(self, sql: str, *params: Any) -> list[asyncpg.Record]:
        return await self.database.read(lambda c: c.fetch(sql, *params))
