"""The PostgreSQL backend: `PostgresStore` implements the Store contract (storage/contract.py) over
one PostgreSQL database that several server processes (replicas) may share. Imported only when
`--db` is a postgresql:// URL (asyncpg stays off the SQLite path)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from ...errors import NotFoundError
from ...models import Conversation
from ...util import new_id, now_iso
from ..types import RUN_COLUMNS, ImportedConversation, NewMessage
from . import bulk
from .agents import PgAgentStore
from .base import Conn
from .conversations import INSERT_SYSTEM, insert_messages
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

    async def import_conversation(self, data: ImportedConversation) -> Conversation:
        """A new conversation written whole in one transaction (messages indexed for search as they go in)."""
        conv_id = new_id("conv")
        now = now_iso()
        marks = ", ".join(f"${i}" for i in range(3, len(RUN_COLUMNS) + 3))
        run_sql = f"INSERT INTO runs (conversation_id, agent_id, {', '.join(RUN_COLUMNS)}) VALUES ($1, $2, {marks})"

        async def load(c: Conn) -> None:
            if await c.fetchval("SELECT 1 FROM agents WHERE id = $1 FOR KEY SHARE", data.agent_id) is None:
                raise NotFoundError("agent", data.agent_id)
            system = await c.fetchval(INSERT_SYSTEM, new_id("message"), data.agent_id, conv_id, data.system_text, now)
            written = await insert_messages(c, conv_id, data.agent_id, data.messages)
            counted = sum(1 for m in data.messages if m.message_type != "system_message")
            await c.execute(
                "INSERT INTO conversations (id, agent_id, summary, model, created_at, last_run_completion, "
                "system_rowid, context, message_count) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                conv_id,
                data.agent_id,
                data.summary,
                data.model,
                now,
                data.last_run_completion,
                system,
                [system, *(written[i][0] for i in data.context)],
                counted,
            )
            if data.runs:
                await c.executemany(
                    run_sql, [(conv_id, data.agent_id, *(r.get(col) for col in RUN_COLUMNS)) for r in data.runs]
                )

        await self.database.write(load)
        return await self.get_conversation(conv_id)


__all__ = ["PostgresStore"]
