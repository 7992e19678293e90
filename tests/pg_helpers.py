"""PostgreSQL for the suite: one fresh database per test session (per xdist worker), emptied before
each test.

The server comes from CONVERSATIONS_TEST_PG_DSN (a URL of any database the user may CREATE DATABASE
from), else from a 1 s probe of 127.0.0.1:5432 as user postgres. When none answers, the postgres
half of the suite is skipped with the reason printed, but fails under CONVERSATIONS_TEST_PG_REQUIRED=1."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
# Read once at import: each test's environment has CONVERSATIONS_* removed (conftest's _isolated_env).
GIVEN_DSN = os.environ.get("CONVERSATIONS_TEST_PG_DSN")
REQUIRED = os.environ.get("CONVERSATIONS_TEST_PG_REQUIRED") == "1"
# Tables' rows, children before parents so no cascade fires, and identity columns, as the schema has them.
_TABLES_SQL = """
WITH RECURSIVE t AS (
    SELECT c.oid, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND c.relname <> 'schema_migrations'
), depth(oid, d) AS (
    SELECT oid, 0 FROM t
    UNION ALL
    SELECT k.conrelid, depth.d + 1 FROM depth
    JOIN pg_constraint k ON k.contype = 'f' AND k.confrelid = depth.oid AND k.conrelid <> k.confrelid
    WHERE depth.d < 32
)
SELECT t.relname FROM t JOIN depth USING (oid) GROUP BY t.relname ORDER BY max(depth.d) DESC, t.relname
"""
_IDENTITIES_SQL = """
SELECT table_name, column_name FROM information_schema.columns
WHERE table_schema = current_schema() AND is_identity = 'YES' ORDER BY 1, 2
"""


def base_dsn() -> tuple[str | None, str]:
    """(a DSN to create databases from, or None; why there is none)."""
    if GIVEN_DSN:
        return GIVEN_DSN, ""
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
    except OSError as e:
        return None, f"no PostgreSQL at 127.0.0.1:5432 ({e}) and CONVERSATIONS_TEST_PG_DSN is not set"
    return DEFAULT_DSN, ""


def with_database(dsn: str, name: str) -> str:
    head, _, tail = dsn.rpartition("/")
    query = ""
    if "?" in tail:
        tail, query = tail.split("?", 1)
        query = "?" + query
    return f"{head}/{name}{query}"


def run_sync(coro_fn: Any) -> Any:
    """Run an async function to completion from sync code, also inside a running event loop."""
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["value"] = asyncio.run(coro_fn())
        except BaseException as e:  # handed to the caller
            out["error"] = e

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


class TestDatabase:
    """The session's database: created (and migrated) once, emptied per test, dropped at the end. Every
    table but schema_migrations is emptied, so a table a later migration adds needs nothing here."""

    __test__ = False  # not a test class

    def __init__(self, dsn: str) -> None:
        self.admin = dsn
        self.name = f"conv_test_{os.getpid()}_{secrets.token_hex(4)}"
        self.url = with_database(dsn, self.name)
        self._empty_sql = ""

    def create(self) -> None:
        import asyncpg

        from mcp_server_conversations.storage.postgres.db import Database

        async def make() -> None:
            conn = await asyncpg.connect(self.admin, timeout=5)
            try:
                await conn.execute(f'CREATE DATABASE "{self.name}"')
            finally:
                await conn.close()
            db = await Database.open(self.url)
            await db.close()
            conn = await asyncpg.connect(self.url, timeout=5)
            try:
                # No test crashes the PostgreSQL server, so a commit need not wait for the disk (other
                # sessions see it at once all the same).
                await conn.execute(f'ALTER DATABASE "{self.name}" SET synchronous_commit = off')
                tables = [r[0] for r in await conn.fetch(_TABLES_SQL)]
                identities = await conn.fetch(_IDENTITIES_SQL)
            finally:
                await conn.close()
            # DELETE, not TRUNCATE: a test leaves a few rows, and TRUNCATE replaces every table's files,
            # which costs far more. Identities restart so each test sees a fresh database's keys.
            self._empty_sql = ";".join(
                [f'DELETE FROM "{t}"' for t in tables]
                + [f"SELECT setval(pg_get_serial_sequence('\"{t}\"', '{c}'), 1, false)" for t, c in identities]
            )

        run_sync(make)

    def empty(self) -> None:
        """Close what earlier tests left connected and empty every table (identities restarted)."""
        import asyncpg

        async def wipe() -> None:
            conn = await asyncpg.connect(self.url, timeout=5)
            try:
                await conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
                await conn.execute(self._empty_sql)
            finally:
                await conn.close()

        run_sync(wipe)

    def drop(self) -> None:
        import asyncpg

        async def gone() -> None:
            conn = await asyncpg.connect(self.admin, timeout=5)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            finally:
                await conn.close()

        run_sync(gone)

    def execute(self, sql: str, params: tuple = ()) -> None:
        self.rows(sql, params)

    def rows(self, sql: str, params: tuple = ()) -> list[Any]:
        """A query with SQLite's `?` placeholders, run on this database."""
        import asyncpg

        # The few SQLite spellings the tests' own queries use.
        sql = sql.replace("search_text IS NOT NULL", "search_tsv IS NOT NULL")
        sql = sql.replace("length(vector)", "octet_length(vector)")
        parts = sql.split("?")
        pg_sql = parts[0] + "".join(f"${i}{p}" for i, p in enumerate(parts[1:], start=1))

        async def fetch() -> list[Any]:
            conn = await asyncpg.connect(self.url, timeout=5)
            try:
                return list(await conn.fetch(pg_sql, *params))
            finally:
                await conn.close()

        return run_sync(fetch)


@contextmanager
def tables_locked(url: str, tables: str = "conversations") -> Iterator[None]:
    """Hold an EXCLUSIVE lock on `tables` from another connection: readers go on, every writer locking
    a row of them waits (PostgreSQL's counterpart of holding SQLite's write lock)."""
    import asyncpg

    locked, release = threading.Event(), threading.Event()
    failed: list[BaseException] = []

    async def hold() -> None:
        conn = await asyncpg.connect(url, timeout=5)
        try:
            async with conn.transaction():
                await conn.execute(f"LOCK TABLE {tables} IN EXCLUSIVE MODE")
                locked.set()
                await asyncio.to_thread(release.wait, 30)
        finally:
            await conn.close()

    def target() -> None:
        try:
            asyncio.run(hold())
        except BaseException as e:  # reported below
            failed.append(e)
            locked.set()

    t = threading.Thread(target=target)
    t.start()
    locked.wait(10)
    if failed:
        raise failed[0]
    try:
        yield
    finally:
        release.set()
        t.join()
