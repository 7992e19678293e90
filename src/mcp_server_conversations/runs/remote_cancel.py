"""cancel_run for a run another server process owns (two clients each spawning a stdio server on the
default database, or HTTP replicas): the request is stored on the run, and the owning process, which
looks for requests addressed to it every CANCEL_POLL seconds while it has runs, stops that run as if
it had been cancelled there. The asking process waits for the run's end and returns it, so cancel_run
answers the same whichever process is asked. A run whose process is gone (or that this process owns
but no longer runs) is ended where it is asked, at once (sweep.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping

from ..models import UNFINISHED, Run
from ..storage import Presence, Store
from ..util import backoff
from .state import RunState
from .sweep import end_orphan

log = logging.getLogger(__name__)

CANCEL_POLL = 0.25  # seconds between an owning process's looks for cancel requests, while it has runs
CANCEL_WAIT = 15.0  # seconds the asking process waits for the owner to end the run


class RemoteCancels:
    """Both sides of a cross-process cancel for one runtime."""

    def __init__(
        self, store: Store, presence: Presence, runs: Mapping[str, RunState], cancel: Callable[[RunState], None]
    ) -> None:
        self.store = store
        self.presence = presence
        self.runs = runs  # the runtime's runs in flight, by id
        self.cancel = cancel  # the runtime's own way to stop one
        self._watcher: asyncio.Task[None] | None = None

    # -- the owning side --

    def watch(self) -> None:
        """Look for requests while this process has runs (called when a run is admitted)."""
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.create_task(self._watch(), name="cancel requests")

    async def _watch(self) -> None:
        while self.runs:
            await self.store.wait_cancel_requests(self.presence.owner, CANCEL_POLL)
            try:
                asked = await self.store.cancel_requests(self.presence.owner)
            except Exception:  # the database is closing, or busy: look again next time
                log.debug("could not read cancel requests", exc_info=True)
                continue
            for run_id in asked:
                state = self.runs.get(run_id)
                if state is not None:
                    log.info("run %s: cancelled by another server process", run_id)
                    self.cancel(state)

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None

    # -- the asking side --

    async def cancel_elsewhere(self, run: Run) -> Run:
        """Stop a queued or running run this process does not own; returns it as it ended (or as it is,
        if its owner neither ended it within CANCEL_WAIT nor died)."""
        owner = await self.store.run_owner(run.id)
        if owner is None:  # stored before m007 by a server of an older version: it cannot be asked
            log.warning("run %s is %s in a process that cannot be asked to cancel it", run.id, run.status)
            return run
        if owner == self.presence.owner or not await self.presence.alive(owner):  # nobody runs it: never wait
            return await self._end_orphan(run)
        if not await self.store.request_cancel(run.id):
            return await self.store.get_run(run.id)  # it ended meanwhile
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CANCEL_WAIT
        for delay in backoff():
            if loop.time() >= deadline:
                break
            await self.store.wait_run_end(run.id, delay)
            now = await self.store.get_run(run.id, with_messages=False)
            if now.status not in UNFINISHED:
                return await self.store.get_run(run.id)
            if not await self.presence.alive(owner):
                return await self._end_orphan(now)
        log.warning("run %s: its process did not stop it within %.0f s", run.id, CANCEL_WAIT)
        return await self.store.get_run(run.id)

    async def _end_orphan(self, run: Run) -> Run:
        """A run whose process is gone: nothing runs it, so it ends cancelled here."""
        ended = await end_orphan(
            self.store, run.id, run.conversation_id, {"status": "cancelled", "stop_reason": "cancelled", "error": None}
        )
        return ended if ended is not None else await self.store.get_run(run.id)
