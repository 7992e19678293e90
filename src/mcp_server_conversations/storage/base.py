"""The SQLite connection: open (owner-only file, WAL, foreign keys, migrations) and transactions."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import aiosqlite
import anyio

from ..errors import StorageUnavailableError
from .schema import migrate

OPEN_ATTEMPTS = 40  # about 16 s of backoff in all

# SQLite's primary result codes that say the server's storage, not the request, is at fault.
UNAVAILABLE = {
    5: "database is busy",  # SQLITE_BUSY: the busy timeout ran out
    6: "database is locked",  # SQLITE_LOCKED
    7: "out of memory",  # SQLITE_NOMEM
    8: "database is read-only",  # SQLITE_READONLY
    10: "disk I/O error",  # SQLITE_IOERR
    13: "database or disk is full",  # SQLITE_FULL
    14: "database file cannot be opened",  # SQLITE_CANTOPEN
    15: "database lock protocol error",  # SQLITE_PROTOCOL
}

# The write transaction the current task is inside, if any: its reads must see its own rows.
_in_write: ContextVar[aiosqlite.Connection | None] = ContextVar("conversations_in_write", default=None)


class SQLiteBase:
    """Two aiosqlite connections to one file: `db` writes, serialized by an asyncio lock, each in
    `BEGIN IMMEDIATE`, so a use case commits whole or not at all; `reader` serves every read made
    outside a write transaction. A read therefore sees only committed rows (never another task's
    half-done turn), and it neither waits behind writes in the writer's thread nor holds them up
    (WAL lets the two run at once)."""

    def __init__(self, db: aiosqlite.Connection, path: str, reader: aiosqlite.Connection | None = None) -> None:
        self.db = db
        self.reader = reader or db
        self.path = path
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str | Path) -> SQLiteBase:
        path = str(path)
        if path != ":memory:":
            p = Path(path)
            p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)  # new directories: owner-only too
            if not p.exists():
                # Create the file owner-only before SQLite opens it.
                fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o600)
                os.close(fd)
            os.chmod(p, 0o600)
        db = await aiosqlite.connect(path, isolation_level=None)
        try:
            db.row_factory = aiosqlite.Row
            await db.execute("PRAGMA busy_timeout=10000")
            for attempt in range(OPEN_ATTEMPTS):
                try:
                    await cls._prepare(db)
                    break
                except sqlite3.OperationalError as e:
                    # Processes opening a blank file together race on the switch to WAL and on
                    # the first DDL; SQLite answers "locked" at once there instead of waiting.
                    if "locked" not in str(e) and "busy" not in str(e) or attempt == OPEN_ATTEMPTS - 1:
                        raise
                    if db.in_transaction:
                        await db.rollback()
                    await asyncio.sleep(0.02 * (attempt + 1))
            reader = None if path == ":memory:" else await cls._open_reader(path)
        except BaseException:
            await db.close()
            raise
        for conn in {id(c): c for c in (db, reader or db)}.values():
            _map_errors(conn)
        return cls(db, path, reader)

    @staticmethod
    async def _open_reader(path: str) -> aiosqlite.Connection:
        """The read connection (after migrations): `query_only`, so it can never write by mistake."""
        reader = await aiosqlite.connect(path, isolation_level=None)
        try:
            reader.row_factory = aiosqlite.Row
            for pragma in (
                "busy_timeout=10000", "query_only=ON", "foreign_keys=ON", "temp_store=MEMORY", "cache_size=-65536"
            ):
                await reader.execute(f"PRAGMA {pragma}")
        except BaseException:
            await reader.close()
            raise
        return reader

    @staticmethod
    async def _prepare(db: aiosqlite.Connection) -> None:
        """Pragmas, then pending migrations (safe to repeat)."""
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.execute("PRAGMA foreign_keys=ON")
        await db.execute("PRAGMA temp_store=MEMORY")
        await db.execute("PRAGMA cache_size=-65536")
        await migrate(db)

    async def close(self) -> None:
        try:
            await self.db.execute("PRAGMA optimize")
        except Exception:  # closing must not fail on a busy or broken file
            pass
        try:
            if self.reader is not self.db:
                await self.reader.close()
        finally:
            await self.db.close()

    async def ping(self) -> None:
        """A trivial read on each connection that fails if the database is unreachable (for /healthz)."""
        for conn in {id(c): c for c in (self.db, self.reader)}.values():
            await conn.execute_fetchall("SELECT count(*) FROM sqlite_master")

    @asynccontextmanager
    async def write(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction; rolled back if the body raises (or is cancelled).

        BEGIN sits inside the try and COMMIT/ROLLBACK run to completion before the lock is
        let go, even under cancellation: otherwise a cancelled writer could leave a transaction
        open on the shared connection for the next writer to fail in or commit by accident."""
        async with self._write_lock:
            token = _in_write.set(self.db)
            try:
                await self.db.execute("BEGIN IMMEDIATE")
                yield self.db
            except BaseException:
                await self._settle(self.db.rollback)
                raise
            else:
                try:
                    await self._settle(self.db.commit)
                except BaseException:
                    await self._settle(self.db.rollback)  # a failed COMMIT leaves the transaction open
                    raise
            finally:
                _in_write.reset(token)

    @staticmethod
    async def _settle(op: Callable[[], Awaitable[None]]) -> None:
        """Run `op` to the end whatever cancellation arrives meanwhile (anyio scopes are
        shielded; a plain task.cancel() is held back and re-raised once `op` is done)."""
        task = asyncio.ensure_future(op())
        cancelled = False
        with anyio.CancelScope(shield=True):
            while not task.done():
                try:
                    await asyncio.wait({task})
                except asyncio.CancelledError:
                    cancelled = True
        if cancelled:
            raise asyncio.CancelledError
        task.result()

    # Reads take one trip to aiosqlite's thread (execute_fetchall) rather than three
    # (execute, fetch, close): each trip is a thread hand-off that dominates a small query.
    def _reads(self) -> aiosqlite.Connection:
        """Inside this task's write transaction its own connection, else the read connection."""
        return _in_write.get() or self.reader

    async def one(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> aiosqlite.Row | None:
        """The first row of a query meant to return at most one."""
        rows = await self._reads().execute_fetchall(sql, params)
        return next(iter(rows), None)

    async def all(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[aiosqlite.Row]:
        return list(await self._reads().execute_fetchall(sql, params))

    async def all_in(self, sql: str, ids: Iterable[Any], chunk: int = 900) -> list[aiosqlite.Row]:
        """Run `sql` (with one `{ids}` placeholder) over ids in chunks under SQLite's variable limit."""
        ids = list(ids)
        out: list[aiosqlite.Row] = []
        for i in range(0, len(ids), chunk):
            part = ids[i : i + chunk]
            marks = ",".join("?" * len(part))
            out.extend(await self.all(sql.format(ids=marks), part))
        return out


def unavailable(e: BaseException) -> StorageUnavailableError | None:
    """The error tree's form of SQLite's resource failures; None for anything else (a constraint,
    an FTS query's syntax, a bug), which stays what it is."""
    if not isinstance(e, sqlite3.DatabaseError):
        return None
    code = getattr(e, "sqlite_errorcode", None)
    if code is not None:
        return StorageUnavailableError(str(e) or UNAVAILABLE[code & 0xFF]) if code & 0xFF in UNAVAILABLE else None
    text = str(e)
    hit = any(k in text for k in ("disk is full", "disk I/O", "locked", "readonly", "unable to open"))
    return StorageUnavailableError(text) if hit else None


def _map_errors(conn: aiosqlite.Connection) -> None:
    """Every statement and every hop (storage/hop.py) on `conn` goes through its `_execute`: the one
    place SQLite's resource failures become StorageUnavailableError."""
    execute = conn._execute  # noqa: SLF001 - see storage/hop.py

    async def mapped(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return await execute(fn, *args, **kwargs)
        except sqlite3.DatabaseError as e:
            mapped_error = unavailable(e)
            if mapped_error is None:
                raise
            raise mapped_error from e

    conn._execute = mapped  # type: ignore[method-assign]  # noqa: SLF001
