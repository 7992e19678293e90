"""Storage: the only place SQL lives. `SQLiteStore` is the SQLite backend; a Postgres
backend would be a second class with the same methods."""

from __future__ import annotations

from .agents import AgentStore
from .bulk import BulkStore
from .forks import ForkStore
from .rows import NewMessage
from .runs import RunStore
from .vectors import VectorStore


class SQLiteStore(AgentStore, ForkStore, RunStore, VectorStore, BulkStore):
    """Agents, blocks, conversations, messages, runs, search and message embeddings over one SQLite file."""


__all__ = ["NewMessage", "SQLiteStore"]
