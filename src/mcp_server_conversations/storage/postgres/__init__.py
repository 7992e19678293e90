"""The PostgreSQL backend: `PostgresStore` implements the Store contract (storage/contract.py) over
one PostgreSQL database that several server processes (replicas) may share. Imported only when
`--db` is a postgresql:// URL (asyncpg stays off the SQLite path)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from ..types import NewMessage
from . import bulk
from .agents import PgAgentStore
from .forks import PgForkStore
from .runs import PgRunStore
from .vectors import PgVectorStore


class PostgresStore(PgAgentStore, PgRunStore, PgForkStore, PgVectorStore):
    """Agents, blocks, conversations, messages, runs, search and message embeddings in PostgreSQL."""

    @asynccontextmanager
    async def bulk_load(self) -> AsyncIterator[None]:
        """For loading many `import_messages` batches in a row: at the end the planner's statistics
        are brought up to date (ANALYZE), so searches plan for the new rows without waiting for
        autovacuum to notice them."""
        yield
        await self.database.read(lambda c: c.execute("ANALYZE messages, conversations"))

    async def import_messages(self, batches: Sequence[tuple[str, list[NewMessage]]], *, in_context: bool = True) -> int:
        """Append each batch to its conversation, all in one transaction, without reading them back
        (by COPY: storage/postgres/bulk.py)."""
        if not any(messages for _, messages in batches):
            return 0
        return await self.database.write(lambda c: bulk.import_messages(c, batches, in_context))


__all__ = ["PostgresStore"]
