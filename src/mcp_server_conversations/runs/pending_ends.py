"""Run ends the database would not take (disk full, I/O error, busy timeout).

A run's end is written with its final state; the write is retried a few times (END_RETRIES), and if
the database still refuses it, the run ends in memory all the same: `failed`, with a cause saying
its end could not be stored yet. Its turn is released here, get_run and cancel_run answer with that
end at once, and the end is stored (the run's input leaving the context, as for any failed run) by a
background retry as soon as the database accepts writes, or first thing when the conversation's next
run or compaction starts, so that never builds a prompt with the stranded input."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import anyio

from ..errors import ConversationsError, StorageUnavailableError
from ..models import Run
from ..storage import NewMessage, Store
from ..util import backoff, now_iso
from .events import RunEvent
from .state import RunState

log = logging.getLogger("mcp_server_conversations.runs.pending_ends")

END_RETRIES = (0.05, 0.25, 1.0)  # seconds between attempts at a run's end before it is held in memory
END_WINDOW = 2.0  # seconds after which no new attempt starts (a busy timeout makes each attempt long)
RETRY_FIRST, RETRY_MAX = 0.25, 5.0  # the background retry's backoff, doubling


def stored_cause(error: ConversationsError | None) -> str | None:
    """A run's stored cause; the server's own storage failures lead with their kind, as provider errors do."""
    if isinstance(error, StorageUnavailableError):
        return f"{type(error).__name__}: {error.message}"
    return error.message if error is not None else None


def unstored_end(detail: str) -> dict[str, Any]:
    """The fields of a run whose end could not be stored when it ended."""
    return {
        "status": "failed",
        "stop_reason": "error",
        "completed_at": now_iso(),
        "error": f"StorageUnavailableError: the run ended but the server could not store its end ({detail}); "
        "it is stored once the database accepts writes, its input out of the context",
    }


class PendingEnds:
    """Ends held in memory until stored, by run id."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._ends: dict[str, tuple[Run, dict[str, Any]]] = {}
        self._task: asyncio.Task[None] | None = None

    async def finish(
        self,
        run_id: str,
        conversation_id: str,
        fields: dict[str, Any],
        *,
        abandon: bool,
        append: list[NewMessage] | None,
    ) -> Run | None:
        """store.finish_run, retried while the database refuses (END_RETRIES, within END_WINDOW), then
        its error."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + END_WINDOW
        for delay in END_RETRIES:
            try:
                return await self.store.finish_run(
                    run_id, conversation_id, fields, abandon=abandon, append=append, unfinished_only=True
                )
            except StorageUnavailableError as e:
                if loop.time() + delay > deadline:
                    raise
                log.warning("run %s: its end could not be stored (%s); retrying", run_id, e.detail)
                await asyncio.sleep(delay)
        return await self.store.finish_run(
            run_id, conversation_id, fields, abandon=abandon, append=append, unfinished_only=True
        )

    async def end_in_memory(self, state: RunState, e: StorageUnavailableError) -> None:
        """The run's end could not be stored: it ends failed here, its end held until it is stored."""
        log.error("run %s: its end could not be stored yet (%s)", state.run_id, e.detail)
        state.error = e
        state.status = "failed"
        state.partial.clear()
        if state.created is None:  # never stored: nothing to end in the database
            return
        try:
            run = await self.store.get_run(state.run_id)
        except Exception:  # reads failing too: end it from what is known here
            run = state.created
        state.final = self.hold(run, unstored_end(e.detail))
        await state.emit(RunEvent("done", state.run_id, run=state.final))

    def get(self, run_id: str) -> Run | None:
        """The in-memory end of a run whose end is not stored yet."""
        held = self._ends.get(run_id)
        return held[0] if held else None

    def hold(self, run: Run, fields: dict[str, Any]) -> Run:
        """Keep `run`'s end (`fields`) until it is stored; returns the run as it ended."""
        ended = run.model_copy(
            update={
                **{k: v for k, v in fields.items() if k in Run.model_fields},
                "partial_text": None,
                "messages": [m.model_copy(update={"in_context": False}) for m in run.messages],
            }
        )
        self._ends[run.id] = (ended, fields)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._retry(), name="pending run ends")
        return ended

    async def flush(self, conversation_id: str) -> None:
        """Store the conversation's pending ends now; StorageUnavailableError if the database still refuses."""
        for run_id in [r for r, (run, _) in self._ends.items() if run.conversation_id == conversation_id]:
            await self._store(run_id)

    async def _store(self, run_id: str) -> None:
        held = self._ends.get(run_id)
        if held is None:
            return
        run, fields = held
        await self.store.finish_run(run_id, run.conversation_id, fields, abandon=True, unfinished_only=True)
        self._ends.pop(run_id, None)
        log.info("run %s: its end is stored", run_id)

    async def _retry(self) -> None:
        delays = backoff(RETRY_FIRST, RETRY_MAX)  # longer apart while the database keeps refusing
        delay = next(delays)
        while self._ends:
            await asyncio.sleep(delay)
            for run_id in list(self._ends):
                try:
                    await self._store(run_id)
                except StorageUnavailableError:
                    delay = next(delays)
                    break
                except Exception:  # e.g. its conversation is gone: nothing left to store it in
                    log.exception("run %s: its end could not be stored; giving up", run_id)
                    self._ends.pop(run_id, None)
            else:
                delays = backoff(RETRY_FIRST, RETRY_MAX)
                delay = next(delays)

    async def stop(self) -> None:
        """Stop retrying after one last attempt (ends still pending are ended at the next start)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            for run_id in list(self._ends):
                await self._store(run_id)
