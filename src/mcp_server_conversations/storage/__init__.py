"""Storage: the only place SQL lives. `SQLiteStore` is the SQLite backend; a Postgres
backend would be a second class with the same methods."""

from __future__ import annotations

from .agents import AgentStore
from .bulk import BulkStore
from .forks import ForkStore
from .rows import NewMessage
from .runs import RunStore
from .search import SearchStore


class SQLiteStore(AgentStore, ForkStore, RunStore, SearchStore, BulkStore):
    """Agents, blocks, conversations, messages, runs and search over one SQLite file."""


__all__ = ["NewMessage", "SQLiteStore"]
