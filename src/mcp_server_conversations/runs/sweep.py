"""Runs whose process died are ended by the living: a run left `queued`/`running` by a killed process
(or replica) ends `interrupted`, its input out of the context, so a client polling get_run sees an end.

Every live process looks every `run_sweep_interval` seconds (one indexed query of the unfinished runs
it does not own, then a liveness check per owner, the store's presence), and once at start; so a dead process's
run ends within that interval of the death. A conversation's turn taken after such a death ends the
dead holder's run in the same transaction (storage/runs.py), whichever comes first."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from ..models import Run
from ..storage import DEAD_OWNER_END, Presence, Store

log = logging.getLogger("mcp_server_conversations.runs.sweep")


async def end_orphan(store: Store, run_id: str, conversation_id: str, fields: dict[str, Any]) -> Run | None:
    """End a run nobody runs (with `fields`), unless it has ended meanwhile (then None)."""
    return await store.finish_run(run_id, conversation_id, fields, abandon=True, unfinished_only=True)


async def end_dead_runs(store: Store, presence: Presence, *, alone: bool = False) -> int:
    """End the unfinished runs of processes that are gone; with `alone` (no other process has the
    database open), every unfinished run another process stored. Returns how many ended here."""
    ended = 0
    for run_id, conversation_id, owner in await store.unfinished_runs_elsewhere(presence.owner):
        if not alone and (owner is None or await presence.alive(owner)):
            continue  # a live process's run (or one too old to know its owner: left to the next lone start)
        if await end_orphan(store, run_id, conversation_id, DEAD_OWNER_END) is not None:
            ended += 1
            log.warning("run %s was left unfinished by a server process that stopped; marked interrupted", run_id)
    return ended


class Sweeper:
    """The periodic look, for the life of a runtime."""

    def __init__(self, store: Store, presence: Presence, interval: float) -> None:
        self.store = store
        self.presence = presence
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="dead runs sweep")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await end_dead_runs(self.store, self.presence)
            except Exception:  # the database is busy, full or closing: look again next time
                log.debug("could not look for runs of dead processes", exc_info=True)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
