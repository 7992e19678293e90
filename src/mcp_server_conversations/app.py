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
from .gateway import ModelGateway
from .runs.runtime import Runtime
from .service.changes import ChangeFeed
from .service.conversations import ConversationService
from .storage import Store, open_store

if TYPE_CHECKING:
    from .search.hybrid import EmbeddingIndex
    from .service.portability import PortabilityService

log = logging.getLogger("mcp_server_conversations")
STOP_WITHIN = 30.0  # seconds for runs and the indexer to stop at shutdown before the database closes anyway


@dataclass
class RestState:
    """What Letta's REST layer keeps between requests in this process."""

    recent_sends: dict[str, tuple[str, float]] = field(default_factory=dict)  # an SDK retry joins its first attempt
    run_feeds: dict[str, Any] = field(default_factory=dict)  # runs' streams kept for re-attaching (rest/sse.Feed)
    sse_keepalive: float = 15.0  # seconds of silence before a keepalive, under the SDKs' 60 s read timeout


@dataclass(frozen=True)
class App:
    """Everything a transport needs, built once in order by open_app."""

    settings: Settings
    store: Store
    service: ConversationService
    runtime: Runtime  # runs of send_message
    embeddings: EmbeddingIndex | None  # with --embedding-model: the hybrid search index
    changes: ChangeFeed  # what any process changed, for MCP resource subscriptions
    rest: RestState = field(default_factory=RestState)

    @property
    def portability(self) -> PortabilityService:
        """Export and import over the conversation service (stateless: made per use)."""
        from .service.portability import PortabilityService

        return PortabilityService(self.service)


@asynccontextmanager
async def open_app(settings: Settings) -> AsyncIterator[App]:
    """The composition root: open the database (migrating it), build the gateway, the search index
    and reranker, the services and the runtime over it in that order; stop and close them on exit."""
    store = await open_store(settings.resolved_db())
    try:
        gateway = ModelGateway(settings)
        embeddings = None
        if settings.embedding_model:
            from .search.hybrid import EmbeddingIndex  # numpy: only loaded when hybrid search is on

            embeddings = EmbeddingIndex(settings, store, gateway)
        reranker = None
        if settings.rerank_model:
            from .search.rerank import Reranker

            reranker = Reranker(settings, gateway)
        service = ConversationService(store, settings, hybrid=embeddings, reranker=reranker)
        app = App(settings, store, service, Runtime(settings, store, service, gateway), embeddings, ChangeFeed(store))
        log.info("database ready at %s", store.location)
        await app.runtime.start()
        try:
            if app.embeddings is not None:
                await app.embeddings.start()
            yield app
        finally:
            # Shielded: when the transport fails (the client stopped reading), this runs inside a
            # cancelled scope, and a close cut short would leave the database's connections open.
            with anyio.CancelScope(shield=True, deadline=anyio.current_time() + STOP_WITHIN):
                await app.changes.stop()
                if app.embeddings is not None:
                    await app.embeddings.stop()
                await app.runtime.stop()
    finally:
        with anyio.CancelScope(shield=True):
            await store.close()
