"""The SQLite store's base: its Database (storage/database.py) and small read helpers."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from . import presence
from .database import Database

Self = TypeVar("Self", bound="SQLiteBase")
Params = Sequence[Any] | dict[str, Any]


class SQLiteBase:
    """Every method is a unit of work (a plain function of a sqlite3.Connection) run through
    `Database.write` (one transaction) or `Database.read` (committed data only)."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.location = database.path
        self._presence: FilePresence | None = None
        self._embedding_claims: set[int] = set()  # message keys this process is embedding

    @classmethod
    async def open(cls: type[Self], path: str | Path) -> Self:
        return cls(await Database.open(path))

    @property
    def path(self) -> str:
        return self.database.path

    async def close(self) -> None:
        await self.database.close()

    async def ping(self) -> None:
        """A trivial read on each connection that fails if the database is unreachable (for /healthz)."""
        await self.database.ping()

    def presence(self) -> FilePresence:
        """This process's membership among the processes sharing the file (advisory file locks)."""
        if self._presence is None:
            self._presence = FilePresence(presence.Presence(self.database.path))
        return self._presence

    def _alive(self, owner: str) -> bool:
        """Whether the process named `owner` still runs, for units of work (a file lock: no waiting).
        Before presence() is asked for, no other process counts as alive."""
        return self._presence is not None and self._presence.locks.alive(owner)

    # One file has no notifications: waiters poll (they re-check after each wait).
    async def wait_turn(self, conversation_id: str, within: float) -> None:
        await asyncio.sleep(within)

    async def wait_cancel_requests(self, owner: str, within: float) -> None:
        await asyncio.sleep(within)

    async def wait_run_end(self, run_id: str, within: float) -> None:
        await asyncio.sleep(within)

    async def wait_start(self, conversation_id: str, principal: str, within: float) -> None:
        await asyncio.sleep(within)

    async def _one(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        """The first row of a query meant to return at most one (one trip to the reader)."""
        return await self.database.read(lambda db: db.execute(sql, params).fetchone())

    async def _all(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        return await self.database.read(lambda db: db.execute(sql, params).fetchall())

    async def _all_in(self, sql: str, ids: Iterable[Any]) -> list[sqlite3.Row]:
        ids = list(ids)
        return await self.database.read(lambda db: all_in(db, sql, ids))


def all_in(db: sqlite3.Connection, sql: str, ids: Sequence[Any], chunk: int = 900) -> list[sqlite3.Row]:
    """Run `sql` (with one `{ids}` placeholder) over ids in chunks under SQLite's variable limit."""
    out: list[sqlite3.Row] = []
    for i in range(0, len(ids), chunk):
        part = list(ids[i : i + chunk])
        out.extend(db.execute(sql.format(ids=",".join("?" * len(part))), part).fetchall())
    return out


class FilePresence:
    """The Presence of the contract over presence.Presence's file locks (which never wait)."""

    def __init__(self, locks: presence.Presence) -> None:
        self.locks = locks
        self.owner = locks.owner

    async def join(self) -> bool:
        return self.locks.join()

    async def alive(self, owner: str) -> bool:
        return self.locks.alive(owner)

    async def leave(self) -> None:
        self.locks.leave()
