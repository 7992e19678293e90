"""Reading and stopping runs: get_run, wait_for_end, cancel_run and subscribe, over the runs this
process executes (their live state) and those of other processes (the database). Runtime (runtime.py)
starts and finishes runs; this is the part every transport reads them through."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import anyio

from ..models import UNFINISHED, Run
from ..service.conversations import ConversationService
from ..storage import Store
from ..util import backoff
from .events import RunEvent
from .pending_ends import PendingEnds
from .remote_cancel import RemoteCancels
from .state import RunState


class RunReads:
    """The runs' read and cancel side; Runtime sets these in its constructor."""

    store: Store
    service: ConversationService
    _runs: dict[str, RunState]
    _pending: PendingEnds
    _remote: RemoteCancels

    def _cancel(self, state: RunState) -> None:
        if state.cancel_requested or state.ending or state.done.is_set() or state.task is None:
            return  # a run storing its end has ended its work: a cancel now would undo a reported end
        state.cancel_requested = True
        state.task.cancel()

    async def get_run(self, run_id: str) -> Run:
        """The run with the messages it has produced so far (and partial_text while it streams)."""
        if (pending := self._pending.get(run_id)) is not None:
            return await self._mine(pending)
        await self.service.owners.check("run", run_id)
        run = await self.store.get_run(run_id)
        state = self._runs.get(run_id)
        if state is not None and not state.done.is_set() and run.status in UNFINISHED:
            usage = state.usage if state.usage.total_tokens else None  # tokens of the steps finished so far
            run = run.model_copy(update={"partial_text": state.partial_text, "usage": usage})
        return run

    async def wait_for_end(self, run_id: str) -> Run:
        """The run once it has ended, wherever it runs: a run of this process is awaited, another process's
        is read from the database until it ends."""
        state = self._runs.get(run_id)
        if state is not None:
            await state.done.wait()
            if state.replaced_by is not None:
                return await self.wait_for_end(state.replaced_by)
        else:
            for delay in backoff():
                if (pending := self._pending.get(run_id)) is not None:
                    return pending
                if (await self.store.get_run(run_id, with_messages=False)).status not in UNFINISHED:
                    break
                await self.store.wait_run_end(run_id, delay)
        return self._pending.get(run_id) or await self.store.get_run(run_id)

    async def _mine(self, run: Run) -> Run:
        """The run, if its agent is the acting principal's; else not found, as an unknown run."""
        await self.service.owners.check("agent", run.agent_id, report=("run", run.id))
        return run

    def runs_here(self, run_id: str) -> bool:
        """Whether this process runs the run now (its events reach listeners here)."""
        state = self._runs.get(run_id)
        return state is not None and not state.done.is_set()

    async def cancel_run(self, run_id: str) -> Run:
        """Stop a run (a queued one never calls the model); a finished run is returned as it ended."""
        if (pending := self._pending.get(run_id)) is not None:
            return await self._mine(pending)
        await self.service.owners.check("run", run_id)
        run = await self.store.get_run(run_id, with_messages=False)
        state = self._runs.get(run_id)
        if state is not None and not state.done.is_set():
            self._cancel(state)
            with anyio.CancelScope(shield=True):
                await state.done.wait()
        elif run.status in UNFINISHED:  # another process's run
            return await self._remote.cancel_elsewhere(run)
        return await self.get_run(run_id)

    async def subscribe(self, run_id: str) -> AsyncIterator[RunEvent]:
        """The run's events from now until `done` (just `done` when the run has ended, or when it runs in
        another process, whose events do not come here)."""
        state = self._runs.get(run_id)
        if state is None or state.done.is_set():
            yield RunEvent("done", run_id, run=self._pending.get(run_id) or await self.wait_for_end(run_id))
            return
        queue: asyncio.Queue[RunEvent] = asyncio.Queue()

        async def enqueue(event: RunEvent) -> None:
            queue.put_nowait(event)

        state.listeners.insert(0, enqueue)  # first: a slow listener never delays what a subscriber reads
        try:
            while True:
                event = await queue.get()
                yield event
                if event.kind == "done":
                    return
        finally:
            if enqueue in state.listeners:
                state.listeners.remove(enqueue)
