"""Whole units of work in one hand-off to a connection's database thread.

aiosqlite runs each statement in its own thread and hands every result back through the event
loop: a small query costs far more in that round trip (a queue put, a thread wake-up, a loop
wake-up) than in SQLite. The send path's units of work (a run started with its input, a step's
messages, a run's end with its final read, a prompt's reads) are plain functions of a
sqlite3.Connection, run start to end in that thread in one trip instead of one trip per statement.

aiosqlite has no public call for "run this function in your thread"; `Connection._execute` is
what every one of its own methods goes through (unchanged since 0.1; pyproject pins <1).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from typing import TypeVar

import aiosqlite

T = TypeVar("T")


async def in_thread(conn: aiosqlite.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """`fn(connection)` in the connection's thread, in turn with its other queued statements."""
    return await conn._execute(fn, conn._conn)  # noqa: SLF001 - see the module docstring


def transaction(fn: Callable[[sqlite3.Connection], T]) -> Callable[[sqlite3.Connection], T]:
    """`fn` inside `BEGIN IMMEDIATE` … `COMMIT` (rolled back if it raises), for `in_thread`.

    The transaction begins and ends inside one call in the database thread, so nothing else on
    the connection runs between its statements, and a cancelled caller cannot leave it open: the
    call completes (committed) even if the task awaiting it is cancelled meanwhile."""

    def run(db: sqlite3.Connection) -> T:
        db.execute("BEGIN IMMEDIATE")
        try:
            result = fn(db)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return result

    return run


def snapshot(fn: Callable[[sqlite3.Connection], T]) -> Callable[[sqlite3.Connection], T]:
    """`fn`'s reads from one snapshot of the database (a read transaction), for `in_thread`: without
    it each statement sees the file as it is when that statement runs. Inside a transaction already
    open on the connection, `fn` simply runs in it."""

    def run(db: sqlite3.Connection) -> T:
        if db.in_transaction:
            return fn(db)
        db.execute("BEGIN")
        try:
            return fn(db)
        finally:
            db.execute("COMMIT")

    return run


async def write(lock: asyncio.Lock, conn: aiosqlite.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """`fn` as one write transaction on the writer connection, after the store's other writers
    (`lock` is the store's write lock: a multi-statement `write()` may have a transaction open)."""
    async with lock:
        return await in_thread(conn, transaction(fn))
