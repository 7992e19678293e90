"""The PostgreSQL backend: `PostgresStore` implements the Store contract (storage/contract.py) over
one PostgreSQL database that several server processes (replicas) may share. Imported only when
`--db` is a postgresql:// URL (asyncpg stays off the SQLite path)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from ..types import NewMessage
from .agents import PgAgentStore
from .base import Conn
from .conversations import insert_messages, lock_conversation
from .fair import PgFairUseStore
from .forks import PgForkStore
from .runs import PgRunStore
from .tokens import PgTokenStore
from .vectors import PgVectorStore


class PostgresStore(PgAgentStore, PgRunStore, PgForkStore, PgVectorStore, PgTokenStore, PgFairUseStore):
    """Agents, blocks, conversations, messages, runs, search, message embeddings, named tokens and fair-use
    counters in PostgreSQL."""

    @asynccontextmanager
    async def bulk_load(self) -> AsyncIterator[None]:
        """Nothing to widen on a server database (imports run as ordinary transactions)."""
        yield

    async def import_messages(self, batches: Sequence[tuple[str, list[NewMessage]]], *, in_context: bool = True) -> int:
        """Append each batch to its conversation, all in one transaction, without reading them back."""
        if not any(messages for _, messages in batches):
            return 0

        async def load(c: Conn) -> int:
            stored = 0
            for conv_id, messages in batches:
                if not messages:
                    continue
                conv = await lock_conversation(c, conv_id)
                written = await insert_messages(c, conv_id, conv["agent_id"], messages)
                counted = sum(1 for m in messages if m.message_type != "system_message")
                added = [rowid for rowid, _ in written] if in_context else []
                await c.execute(
                    "UPDATE conversations SET context = context || $1::bigint[], message_count = message_count + $2 "
                    "WHERE id = $3",
                    added,
                    counted,
                    conv_id,
                )
                stored += len(messages)
            return stored

        return await self.database.write(load)


__all__ = ["PostgresStore"]
