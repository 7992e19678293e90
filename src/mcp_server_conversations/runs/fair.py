"""Fair use per principal, the runtime's side: a run starts only when it holds its conversation's turn AND
one of its principal's `--max-runs-per-principal` slots. The store decides both in the run's start
transaction (storage/fair.py: counted across every process on the database, slots going in send order
conversation by conversation); a run that may not start yet stays `queued` (cancellable like any queued
run) and looks again when woken: here by a run of its principal ending in this process, from other
processes by the store's wake-ups (PostgreSQL notifications; polling on SQLite).

A run waiting for a slot holds its conversation's turn in this process only, which later runs of that
conversation would wait for anyway; running runs never wait for slots, so slots always come free."""

from __future__ import annotations

import asyncio
import contextlib

from ..storage import Store


class SlotWaits:
    """Wakes this process's runs waiting for a slot when a run of their principal ends here."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._freed: dict[str, asyncio.Event] = {}

    async def wait(self, conversation_id: str, principal: str, within: float) -> None:
        """Until the conversation's turn may be free or a slot of `principal` may have come free (here or in
        another process), or `within` seconds."""
        freed = self._freed.setdefault(principal, asyncio.Event())
        here = asyncio.ensure_future(freed.wait())
        elsewhere = asyncio.ensure_future(self.store.wait_start(conversation_id, principal, within))
        try:
            await asyncio.wait((here, elsewhere), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (here, elsewhere):
                task.cancel()
            for task in (here, elsewhere):
                with contextlib.suppress(asyncio.CancelledError, Exception):  # a failed wait only ends the wait
                    await task

    def ended(self, principal: str) -> None:
        """A run of `principal` ended here (a running one frees a slot; a queued one may have been the
        earliest waiting): every waiter of that principal looks again."""
        freed = self._freed.pop(principal, None)
        if freed is not None:
            freed.set()
