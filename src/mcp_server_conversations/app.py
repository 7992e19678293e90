"""The application object: one store and the services over it, opened once per process
(per connection for in-memory test clients) and shared by the MCP and REST layers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from .config import Settings
from .runtime import Runtime
from .service import ConversationService
from .storage import Store, open_store

if TYPE_CHECKING:
    from .embeddings import EmbeddingIndex

log = logging.getLogger("mcp_server_conversations")
STOP_WITHIN = 30.0  # seconds for runs and the indexer to stop at shutdown before the database closes anyway


@dataclass
class App:
    settings: Settings
    store: Store
    service: ConversationService
    extras: dict[str, Any] = field(default_factory=dict)
    runtime: Runtime = field(default=None)  # type: ignore[assignment]  # set by open_app: runs of send_message
    embeddings: EmbeddingIndex | None = None  # set by open_app with --embedding-model: the hybrid search index


@asynccontextmanager
async def open_app(settings: Settings) -> AsyncIterator[App]:
    """Open the database (migrating it) and build the services; close them on exit."""
    store = await open_store(settings.resolved_db())
    try:
        service = ConversationService(store, settings)
        app = App(settings=settings, store=store, service=service, runtime=Runtime(settings, store, service))
        log.info("database ready at %s", store.location)
        await app.runtime.start()
        try:
            if settings.embedding_model:
                from .embeddings import EmbeddingIndex  # numpy: only loaded when hybrid search is on

                app.embeddings = service.hybrid = EmbeddingIndex(settings, store, app.runtime.gateway)
                await app.embeddings.start()
            yield app
        finally:
            # Shielded: when the transport fails (the client stopped reading), this runs inside a
            # cancelled scope, and a close cut short would leave the database's connections open.
            with anyio.CancelScope(shield=True, deadline=anyio.current_time() + STOP_WITHIN):
                if app.embeddings is not None:
                    await app.embeddings.stop()
                await app.runtime.stop()
    finally:
        with anyio.CancelScope(shield=True):
            await store.close()
