"""One SQLite file behind two database threads: `write(fn)` and `read(fn)`.

Every unit of work is a plain function of a `sqlite3.Connection`, run start to end in a thread
that owns the connection: one hand-off to the thread and one back per unit, however many
statements it runs. Writes go to one writer thread (its queue serializes them, as SQLite does
anyway), each inside `BEGIN IMMEDIATE … COMMIT`, rolled back if `fn` raises. The transaction
begins and ends inside that one call in the writer thread, so a cancelled caller cannot cut it
in half: the awaiting task stops waiting, the thread finishes the unit (also one still queued
when its caller is cancelled: a unit handed in always runs whole). Reads go to a reader
thread with its own `query_only` connection (WAL lets it read while the writer writes), so a
read sees only committed data, never another caller's half-done write.
"""

from __future__ import annotations

import asyncio
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ..errors import StorageUnavailableError
from .schema import migrate

T = TypeVar("T")

OPEN_ATTEMPTS = 40  # about 16 s of backoff in all
WRITER_PRAGMAS = (
    "journal_mode=WAL",
    "synchronous=NORMAL",
    "foreign_keys=ON",
    "temp_store=MEMORY",
    "cache_size=-65536",
)
READER_PRAGMAS = ("busy_timeout=10000", "query_only=ON", "foreign_keys=ON", "temp_store=MEMORY", "cache_size=-65536")


class _Worker:
    """One thread and the connection only it uses, serving units of work in the order handed in.

    A plain thread and queue rather than an executor: a trip costs one queue put, one thread
    wake-up and one loop wake-up, and nothing else (an executor adds its own futures and locks)."""

    def __init__(self, name: str) -> None:
        self.conn: sqlite3.Connection | None = None
        self.stopped = False
        self._queue: queue.SimpleQueue[tuple[asyncio.Future[Any], Callable[[], Any]] | None] = queue.SimpleQueue()
        threading.Thread(target=self._serve, name=name, daemon=True).start()

    def _serve(self) -> None:
        while (item := self._queue.get()) is not None:
            future, fn = item
            try:
                result = fn()
            except BaseException as e:  # handed back to the caller, whatever it is
                outcome: tuple[Callable[..., None], object] = (_fail, e)
            else:
                outcome = (_succeed, result)
            try:
                future.get_loop().call_soon_threadsafe(outcome[0], future, outcome[1])
            except RuntimeError:  # the loop closed without closing the database: nobody waits
                pass

    def _submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        if self.stopped:
            raise RuntimeError("the database is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put((future, fn))
        return future

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn(connection)` in the thread. Once handed in it runs to its end even if the awaiting
        task is cancelled meanwhile: the task stops waiting, the unit of work is not cut short."""

        def run() -> T:
            if self.conn is None:
                raise RuntimeError("the database is closed")
            try:
                return fn(self.conn)
            except sqlite3.Error as e:
                translated = _translate(e)
                if translated is e:
                    raise
                raise translated from e

        return await self._submit(run)

    async def start(self, connect: Callable[[], sqlite3.Connection]) -> None:
        def open_() -> None:
            self.conn = connect()

        await self._submit(open_)

    async def stop(self, before: Callable[[sqlite3.Connection], object] | None = None) -> None:
        """Close the connection after the units handed in before, then end the thread."""
        if self.stopped:
            return

        def close() -> None:
            conn, self.conn = self.conn, None
            if conn is None:
                return
            try:
                if before is not None:
                    before(conn)
            except Exception:  # closing must not fail on a busy or broken file
                pass
            finally:
                conn.close()

        closed = self._submit(close)
        self.stopped = True
        self._queue.put(None)
        await closed


def _succeed(future: asyncio.Future[T], result: T) -> None:
    if not future.done():  # its caller was cancelled meanwhile
        future.set_result(result)


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


class Database:
    """The writer and reader threads of one SQLite file (one thread for both with `:memory:`)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._writer = _Worker("sqlite-writer")
        self._reader = self._writer if path == ":memory:" else _Worker("sqlite-reader")
        self.trips = 0  # units of work handed to the database threads (bench and tests count a send's)
        self.writes = 0  # write units committed: whether anything was written since a last look

    @classmethod
    async def open(cls, path: str | Path) -> Database:
        """Open (creating the file owner-only), switch to WAL and apply pending migrations."""
        path = str(path)
        if path != ":memory:":
            p = Path(path)
            p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)  # new directories: owner-only too
            if not p.exists():
                # Create the file owner-only before SQLite opens it.
                fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o600)
                os.close(fd)
            os.chmod(p, 0o600)
        db = cls(path)
        try:
            await db._writer.start(lambda: _connect_writer(path))
            if db._reader is not db._writer:
                await db._reader.start(lambda: _connect(path, READER_PRAGMAS))
        except BaseException:
            await db.close()
            raise
        return db

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn(connection)` as one write transaction, after the writes queued before it."""
        self.trips += 1
        return await self._writer.call(lambda conn: self._committed(transaction(conn, fn)))

    def _committed(self, result: T) -> T:
        self.writes += 1  # in the writer thread, its only writer
        return result

    async def read(self, fn: Callable[[sqlite3.Connection], T], *, snapshot: bool = False) -> T:
        """`fn(connection)` on the read connection; with `snapshot`, all its statements read one
        snapshot of the database (otherwise each sees the file as it is when it runs)."""
        self.trips += 1
        return await self._reader.call((lambda conn: in_snapshot(conn, fn)) if snapshot else fn)

    async def on_writer(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn(connection)` on the writer connection outside any transaction: for its settings
        (PRAGMAs such as a bulk load's checkpoint interval), never for data."""
        self.trips += 1
        return await self._writer.call(fn)

    async def ping(self) -> None:
        """A trivial read on each connection (outside any transaction): fails if the file is unreachable."""
        for worker in {id(w): w for w in (self._writer, self._reader)}.values():
            await worker.call(lambda conn: conn.execute("SELECT count(*) FROM sqlite_master").fetchone())

    async def close(self) -> None:
        try:
            if self._reader is not self._writer:
                await self._reader.stop()
        finally:
            await self._writer.stop(before=lambda conn: conn.execute("PRAGMA optimize"))


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


def _translate(error: sqlite3.Error) -> BaseException:
    """The exception a caller of storage sees for a SQLite error raised by any unit of work: the one
    place SQLite's resource failures become StorageUnavailableError. Anything else (a constraint, an
    FTS query's syntax, a bug) stays what it is."""
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        primary = code & 0xFF
        return StorageUnavailableError(str(error) or UNAVAILABLE[primary]) if primary in UNAVAILABLE else error
    text = str(error)
    hit = any(k in text for k in ("disk is full", "disk I/O", "locked", "readonly", "unable to open"))
    return StorageUnavailableError(text) if hit else error


def transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """`fn` inside `BEGIN IMMEDIATE` … `COMMIT`, rolled back if it (or COMMIT) raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


def in_snapshot(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """`fn`'s reads from one snapshot (a read transaction)."""
    conn.execute("BEGIN")
    try:
        return fn(conn)
    finally:
        conn.execute("COMMIT")


def _connect(path: str, pragmas: tuple[str, ...]) -> sqlite3.Connection:
    # isolation_level=None: no implicit transactions, each unit of work says BEGIN itself.
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.row_factory = sqlite3.Row
        for pragma in pragmas:
            conn.execute(f"PRAGMA {pragma}")
    except BaseException:
        conn.close()
        raise
    return conn


def _connect_writer(path: str) -> sqlite3.Connection:
    """The writer connection, after the switch to WAL and pending migrations (safe to repeat)."""
    conn = _connect(path, ("busy_timeout=10000",))
    try:
        for attempt in range(OPEN_ATTEMPTS):
            try:
                for pragma in WRITER_PRAGMAS:
                    conn.execute(f"PRAGMA {pragma}")
                migrate(conn)
                break
            except sqlite3.OperationalError as e:
                # Processes opening a blank file together race on the switch to WAL and on the
                # first DDL; SQLite answers "locked" at once there instead of waiting.
                if "locked" not in str(e) and "busy" not in str(e) or attempt == OPEN_ATTEMPTS - 1:
                    raise
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                time.sleep(0.02 * (attempt + 1))
    except BaseException:
        conn.close()
        raise
    return conn
