"""Storage: the only place SQL lives. Layers above type against `Store` (storage/contract.py) and
get one from `open_store`; `SQLiteStore` is the SQLite backend."""

from __future__ import annotations

from pathlib import Path

from ..config import is_database_url
from .agents import AgentStore
from .bulk import BulkStore
from .contract import Presence, Store
from .fair import FairUseStore
from .forks import ForkStore
from .runs import DEAD_OWNER_END, RunStore
from .tokens import TokenStore
from .transfer import copy_store
from .types import (
    MESSAGE_TYPES,
    HistoryKey,
    ImportedConversation,
    NewMessage,
    PendingMessage,
    PromptRows,
    SendTarget,
    TokenInfo,
)
from .vectors import VectorStore


class SQLiteStore(AgentStore, ForkStore, RunStore, VectorStore, BulkStore, TokenStore, FairUseStore):
    """Agents, blocks, conversations, messages, runs, search, message embeddings, named tokens and fair-use
    counters over one SQLite file."""


async def open_store(location: str | Path) -> Store:
    """The store for `location` (a SQLite file path, ":memory:", or a postgresql:// URL), migrated and ready."""
    if is_database_url(location):
        from .postgres import PostgresStore  # asyncpg: only loaded for a PostgreSQL database

        return await PostgresStore.open(str(location))
    return await SQLiteStore.open(location)


__all__ = [
    "DEAD_OWNER_END",
    "MESSAGE_TYPES",
    "HistoryKey",
    "ImportedConversation",
    "NewMessage",
    "PendingMessage",
    "Presence",
    "PromptRows",
    "SQLiteStore",
    "SendTarget",
    "Store",
    "TokenInfo",
    "copy_store",
    "open_store",
]
