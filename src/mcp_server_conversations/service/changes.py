"""The change feed: what any process sharing the database changed, for MCP resource subscriptions.

One task per process reads the store's feed (storage: a polled table on SQLite, NOTIFY on PostgreSQL)
while anyone listens, and hands each batch to the listeners. Changes are level triggers ("this may
have changed, read it again"): a batch of None means some may have been missed, so everything may
have changed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from ..storage import Store

log = logging.getLogger(__name__)

Change = tuple[str, str]  # (kind, key): ("b", "agent_id:label"), ("t", conversation_id) or ("l", "")
Listener = Callable[[list[Change] | None], Awaitable[None]]
WAIT = 1.0  # seconds one read of the feed waits for a change before looking again
RETRY = 1.0  # seconds before reading again after the store failed (it is closing, or unavailable)


class ChangeFeed:
    """Fans the store's change feed out to listeners; reads it only while there are any."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._listeners: dict[object, Listener] = {}
        self._task: asyncio.Task[None] | None = None

    async def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` with every later batch of changes; returns the unsubscribe function. The
        feed's position is taken before this returns, so a change committed after it is delivered."""
        token = object()
        self._listeners[token] = listener
        if self._task is None or self._task.done():
            position, _ = await self.store.resource_changes(None, 0)
            if self._task is None or self._task.done():
                self._task = asyncio.create_task(self._run(position), name="resource changes")
        return lambda: self._listeners.pop(token, None) and None

    async def _run(self, position: int) -> None:
        while self._listeners:
            try:
                position, changes = await self.store.resource_changes(position, WAIT)
            except Exception:
                log.debug("could not read the change feed", exc_info=True)
                await asyncio.sleep(RETRY)
                continue
            if changes == []:
                continue
            for listener in list(self._listeners.values()):
                try:
                    await listener(changes)
                except Exception:
                    log.exception("a resource change listener failed")

    async def stop(self) -> None:
        self._listeners.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
