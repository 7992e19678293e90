"""The databases a benchmark runs on: a SQLite file, or a scratch PostgreSQL database created for
the run and dropped after it (`--backend sqlite,postgres`; PostgreSQL from BENCH_PG_URL, default
postgresql://postgres@127.0.0.1:5432/postgres, a database the user may CREATE DATABASE from)."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from mcp_server_conversations.config import Settings
from mcp_server_conversations.service.conversations import ConversationService
from mcp_server_conversations.storage import Store, open_store

PG_ADMIN = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
LABELS = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
# Every table the PostgreSQL schema creates (their heap, TOAST and indexes are the database's size).
PG_TABLES = ("agents", "blocks", "conversations", "messages", "runs", "turns", "message_embeddings")


@dataclass(frozen=True)
class Backend:
    name: str  # "sqlite" or "postgres"

    @property
    def label(self) -> str:
        return LABELS[self.name]

    @property
    def is_pg(self) -> bool:
        return self.name == "postgres"

    @asynccontextmanager
    async def scratch(self, workdir: Path, stem: str) -> AsyncIterator[str]:
        """A new, empty database for one benchmark: `workdir/stem.db`, or a PostgreSQL database
        named after `stem`, dropped on the way out whatever happened."""
        if not self.is_pg:
            path = workdir / f"{stem}.db"
            remove_sqlite(path)
            yield str(path)
            return
        import asyncpg

        name = f"bench_{stem}_{os.getpid()}_{secrets.token_hex(3)}"
        admin = await asyncpg.connect(PG_ADMIN, timeout=5)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        try:
            yield with_database(PG_ADMIN, name)
        finally:
            admin = await asyncpg.connect(PG_ADMIN, timeout=5)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await admin.close()

    async def size_bytes(self, location: str) -> int:
        """What the data takes on disk: the SQLite file (after its final checkpoint), or the sum of
        pg_total_relation_size (heap, TOAST, indexes) over our tables."""
        if not self.is_pg:
            return os.path.getsize(location)
        import asyncpg

        conn = await asyncpg.connect(location, timeout=5)
        try:
            return int(
                await conn.fetchval(
                    "SELECT sum(pg_total_relation_size(t::regclass)) FROM unnest($1::text[]) AS t", list(PG_TABLES)
                )
            )
        finally:
            await conn.close()


def parse(spec: str) -> list[Backend]:
    names = [s.strip() for s in spec.split(",") if s.strip()]
    bad = [n for n in names if n not in LABELS]
    if bad or not names:
        raise SystemExit(f"--backend: expected sqlite and/or postgres, got {spec!r}")
    return [Backend(n) for n in dict.fromkeys(names)]


def with_database(url: str, name: str) -> str:
    head, _, tail = url.rpartition("/")
    query = "?" + tail.split("?", 1)[1] if "?" in tail else ""
    return f"{head}/{name}{query}"


def remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)


async def open_service(location: str | Path) -> tuple[Store, ConversationService]:
    """The store (migrated) and the service the tools use, on a SQLite file or a PostgreSQL URL."""
    store = await open_store(location)
    db = location if isinstance(location, Path) or "://" in str(location) else Path(location)
    return store, ConversationService(store, Settings(db=db))


SQLITE = Backend("sqlite")
