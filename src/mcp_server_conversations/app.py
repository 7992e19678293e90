"""The application object: one store and the services over it, opened once per process
(per connection for in-memory test clients) and shared by the MCP and REST layers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from .config import Settings
from .service import ConversationService
from .storage import SQLiteStore

log = logging.getLogger("mcp_server_conversations")


@dataclass
class App:
    settings: Settings
    store: SQLiteStore
    service: ConversationService
    extras: dict[str, Any] = field(default_factory=dict)


@asynccontextmanager
async def open_app(settings: Settings) -> AsyncIterator[App]:
    """Open the database (migrating it) and build the services; close them on exit."""
    store = await SQLiteStore.open(settings.resolved_db())
    try:
        app = App(settings=settings, store=store, service=ConversationService(store, settings))
        log.info("database ready at %s", settings.resolved_db())
        yield app
    finally:
        await store.close()
