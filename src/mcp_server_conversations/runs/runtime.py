"""The runtime: runs of send_message, their queue per conversation and their lifecycle.

- Each run executes in a task the server owns, so a background run outlives the request (and the
  connection) that started it; a foreground send awaits its run and cancels it if the request is
  cancelled.
- Sends to one conversation are serialized in arrival order by a per-conversation FIFO lock (a run
  is `queued` until its turn, and its input enters the history only then); different
  conversations run in parallel (no global lock around model calls).
- A run also needs one of its principal's `--max-runs-per-principal` slots to start (fair.py); until it
  gets one it is `queued` too.
- A run that does not complete (failed, cancelled, interrupted) leaves the context as it was
  before it: its rows leave the context window and its input is marked is_err
  (store.finish_run, one transaction, done while the run still holds its turn).
- Runs left queued/running by a dead process are marked interrupted the same way, at start and
  by a periodic sweep (sweep.py); at shutdown, in-flight runs end interrupted.
- A run's end the database will not take is retried, then held in memory (pending_ends.py): the
  run still ends and its turn is released.
- An idempotency key names one run across every process on the database: a send that finds its key
  taken (before storing its run, or by the insert failing) replays that run, and a foreground caller
  of a run another process executes reads its end from the database.
- A send to an idle conversation (nothing of it running or queued here) is never queued: its run
  row is written `running` together with its input, in one transaction that also reads the first
  prompt; the last step's messages are stored with the run's end. A one-step turn is three trips
  to the database thread (storage/database.py; bench/sends.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio

from .. import principals
from ..config import Settings
from ..errors import (
    ConflictError,
    ContextWindowError,
    ConversationsError,
    DuplicateRunError,
    ModelNotConfiguredError,
    NotFoundError,
    ProviderError,
    StorageUnavailableError,
)
from ..gateway import ModelGateway
from ..models import UNFINISHED, CompactResult, Run
from ..service.conversations import ConversationService, check_handle
from ..storage import NewMessage, PromptRows, SendTarget, Store
from ..util import backoff, new_id, now_iso
from .agent_tools import AgentTools
from .compaction import Compactor, choose_evicted, effective_window
from .events import RunEvent
from .fair import SlotWaits
from .inputs import Input, check_send_options, send_inputs
from .loop import AgentLoop
from .pending_ends import PendingEnds, stored_cause
from .reads import RunReads
from .remote_cancel import RemoteCancels
from .state import Listener, RunState
from .sweep import Sweeper, end_dead_runs

log = logging.getLogger("mcp_server_conversations.runs.runtime")

WARM_DELAY = 0.5  # seconds after start before litellm is imported, so `initialize` is answered first
SHUTDOWN_GRACE = 10.0  # seconds runs get to record that they were interrupted


@dataclass(slots=True)
class _Turn:
    """A conversation's turn: its runs (and compactions) hold `lock` one at a time, in arrival order."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # tasks holding the lock or waiting for it (or admitted and about to)


class Runtime(RunReads):
    """Starts, queues, streams, cancels and finishes runs; compacts conversations on demand."""

    def __init__(self, settings: Settings, store: Store, service: ConversationService, gateway: ModelGateway) -> None:
        self.settings = settings
        self.store = store
        self.service = service
        self.gateway = gateway
        self.tools = AgentTools(service)
        self.compactor = Compactor(store, self.gateway)
        self._runs: dict[str, RunState] = {}
        self._turns: dict[str, _Turn] = {}
        self._keys: dict[tuple[str, str], str] = {}  # (conversation, idempotency key) -> run admitted, not yet done
        self._admit = asyncio.Lock()
        self._warm: asyncio.TimerHandle | None = None
        self._closing = False
        self._presence = store.presence()
        self._remote = RemoteCancels(store, self._presence, self._runs, self._cancel)
        self._pending = PendingEnds(store)
        self._sweeper = Sweeper(store, self._presence, settings.run_sweep_interval)
        self._slots = SlotWaits(store)

    # -- lifecycle --

    async def start(self, *, warm: bool = True) -> None:
        """Mark runs a dead process left unfinished as interrupted: all of them when no other process has
        the database open, else those whose owner is gone (a live replica's runs in flight look the same
        in storage, so they are told apart by their owner), and keep looking (sweep.py); warm litellm
        shortly after."""
        self.gateway.open()
        alone = await self._presence.join()
        if not alone:
            log.info("another server process uses %s; leaving its unfinished runs to it", self.store.location)
        await end_dead_runs(self.store, self._presence, alone=alone)
        if alone:
            await self.store.clear_turns()
        self._sweeper.start()
        self._schedule_warm(warm)

    def _schedule_warm(self, warm: bool) -> None:
        if warm:
            self._warm = asyncio.get_running_loop().call_later(WARM_DELAY, self._start_warming)

    def _start_warming(self) -> None:
        self.gateway.warm_in_background()

    async def stop(self) -> None:
        """End in-flight runs as interrupted (they record it), then close litellm's clients. Idempotent
        (the HTTP server stops the runtime before its sessions, and open_app again on exit)."""
        if self._closing:
            return
        self._closing = True
        if self._warm is not None:
            self._warm.cancel()
        states = [s for s in self._runs.values() if not s.done.is_set()]
        for state in states:
            state.end_as = "interrupted"
            self._cancel(state)
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(SHUTDOWN_GRACE):
                for state in states:
                    await state.done.wait()
            await self._remote.stop()
            await self._sweeper.stop()
            await self._pending.stop()
            await self.gateway.close()
        await self._presence.leave()

    # -- model selection --

    def _pick_model(self, conversation_id: str, override_model: str | None, target: SendTarget) -> str:
        """override_model > conversation model > agent model > server default."""
        model = override_model or target.conversation_model or target.agent_model or self.settings.default_model
        if model:
            return model
        raise ModelNotConfiguredError(
            f"no model is set for conversation {conversation_id}: pass override_model to send_message, "
            "set a model on the conversation (update_conversation) or its agent (update_agent), "
            "or start the server with --model / CONVERSATIONS_DEFAULT_MODEL"
        )

    # -- sending --

    async def send(
        self,
        conversation_id: str,
        *,
        content: str | None = None,
        messages: list[dict] | None = None,
        override_model: str | None = None,
        max_steps: int = 10,
        idempotency_key: str | None = None,
        background: bool = False,
        listener: Listener | None = None,
        client_tools: list[dict[str, Any]] | None = None,
    ) -> Run:
        """Run one turn of the agent in a conversation (see the module docstring). `client_tools`:
        chat-completions tool schemas the client runs itself (agent_loop.py).

        Foreground: returns the finished Run with its messages; raises ProviderError (after marking the
        run failed) on a provider failure. Background: returns at once with status queued or running."""
        if self._closing:
            raise ConflictError("the server is shutting down; send again after it restarts")
        inputs = send_inputs(self.service.check_text, content, messages)
        check_send_options(max_steps, idempotency_key)
        override_model = check_handle("override_model", override_model)
        target = await self._target(conversation_id, idempotency_key)
        if target.existing_run is not None:
            return await self._replay(target.existing_run, background, listener)
        model = self._pick_model(conversation_id, override_model, target)
        await self.gateway.check_configured(model)
        async with self._admit:  # key check and the run's place in its conversation's turn, in arrival order
            if idempotency_key is not None:
                key = (conversation_id, idempotency_key)
                existing = self._keys.get(key) or await self.store.run_by_idempotency_key(*key)
                if existing is not None:
                    return await self._replay(existing, background, listener)
                self._keys[key] = run_id = new_id("run")
            else:
                run_id = new_id("run")
            state = RunState(run_id, conversation_id, target.agent_id, model, override_model, background)
            state.principal = principals.current()
            state.client_tools = client_tools or []
            state.images = [image for i in inputs for image in i.images]
            if listener is not None:
                state.listeners.append(listener)
            turn = self._turns.setdefault(conversation_id, _Turn())
            turn.users += 1
            self._runs[run_id] = state
            state.task = asyncio.create_task(
                self._execute(state, turn, inputs, max_steps, idle=turn.users == 1, key=idempotency_key),
                name=f"run {run_id}",
            )
            self._remote.watch()
        if background:
            await state.admitted.wait()
            if state.replaced_by is not None:
                return await self._replay(state.replaced_by, background, listener)
            if state.created is None:  # the run could not be stored
                raise state.error or ConflictError("the run could not start; send again")
            return state.created
        return await self._await_foreground(state, owner=True, listener=listener)

    async def _target(self, conversation_id: str, idempotency_key: str | None = None) -> SendTarget:
        """The conversation's send target, if the conversation is the acting principal's (another's is
        unknown: its idempotency keys, runs and models stay out of reach)."""
        target = await self.store.send_target(conversation_id, idempotency_key)
        if not self.service.owners.mine(target.principal):
            raise NotFoundError("conversation", conversation_id)
        return target

    async def _replay(self, run_id: str, background: bool, listener: Listener | None) -> Run:
        """The run a repeated idempotency key names: now (background) or when it ends (foreground), wherever
        it runs."""
        state = self._runs.get(run_id)
        if state is not None and not state.done.is_set():
            if listener is not None:
                state.listeners.append(listener)
            if not background:
                return await self._await_foreground(state, owner=False, listener=listener)
            await state.admitted.wait()
            if state.replaced_by is None:
                return await self.get_run(run_id)
        if state is not None and state.replaced_by is not None:  # that send lost the key to another process
            return await self._replay(state.replaced_by, background, listener)
        run = self._pending.get(run_id) or await self.store.get_run(run_id)
        if background:
            return run
        if run.status in UNFINISHED:  # another process runs it
            run = await self.wait_for_end(run_id)
        self._raise_for(run, state)
        return run

    async def _await_foreground(self, state: RunState, *, owner: bool, listener: Listener | None) -> Run:
        """Wait for the run; if this request is cancelled, cancel the run it owns and let it settle
        (a request that only waits for another's run, by idempotency key, just stops listening)."""
        try:
            await state.done.wait()
        except BaseException:
            if listener in state.listeners:
                state.listeners.remove(listener)
            if owner:
                self._cancel(state)
                with anyio.CancelScope(shield=True):
                    await state.done.wait()
            raise
        if state.replaced_by is not None:
            return await self._replay(state.replaced_by, False, listener)
        run = state.final
        if run is None:
            if state.error is not None:  # the run could not be stored, or its conversation went away
                raise state.error
            run = await self.store.get_run(state.run_id)
        self._raise_for(run, state)
        return run

    @staticmethod
    def _raise_for(run: Run, state: RunState | None) -> None:
        if run.status != "failed":
            return
        if state is not None and state.error is not None:
            raise state.error
        name, _, message = (run.error or "ProviderError: the run failed").partition(": ")
        raise ProviderError(name, message)

    def _leave(self, conversation_id: str, turn: _Turn) -> None:
        turn.users -= 1
        if turn.users == 0 and self._turns.get(conversation_id) is turn:
            del self._turns[conversation_id]

    @asynccontextmanager
    async def _holding_turn(self, conversation_id: str) -> AsyncIterator[None]:
        """Wait for the conversation's turn, here and in the database (other processes' runs), and hold
        it (compaction on demand)."""
        turn = self._turns.setdefault(conversation_id, _Turn())
        turn.users += 1
        holder = new_id("compaction")
        try:
            async with turn.lock:
                await self._pending.flush(conversation_id)  # a stranded run's input leaves the context first
                for delay in backoff():
                    if await self.store.claim_turn(conversation_id, holder, self._presence.owner):
                        break
                    await self.store.wait_turn(conversation_id, delay)
                try:
                    yield
                finally:
                    with anyio.CancelScope(shield=True):
                        await self.store.release_turn(conversation_id, holder)
        finally:
            self._leave(conversation_id, turn)

    async def _execute(
        self, state: RunState, turn: _Turn, inputs: list[Input], max_steps: int, *, idle: bool, key: str | None
    ) -> None:
        """The run's task: store the run, wait for the conversation's turn, run it, record how it ended.
        `idle`: nothing else held or awaited the turn at admission, so the run starts at once (never queued)."""
        held = False
        try:
            try:
                if not idle:
                    state.created = await self.store.create_run(
                        state.run_id,
                        state.conversation_id,
                        state.agent_id,
                        status="queued",
                        idempotency_key=key,
                        owner=self._presence.owner,
                        principal=state.principal,
                    )
                    state.admitted.set()  # stays queued behind the conversation's earlier runs
                await turn.lock.acquire()
                held = True
                prompt = await self._start(state, inputs, idle, key)
                loop = AgentLoop(self.store, self.gateway, self.tools, self.compactor, state, max_steps, prompt)
                stop_reason, last_step = await loop.run()
                await self._finish(state, "completed", stop_reason, last_step=last_step)
            except DuplicateRunError as e:  # another process stored a run with this key first: nothing was stored
                state.replaced_by = e.run_id
            except asyncio.CancelledError:
                await self._finish(state, state.end_as, state.end_as)
            except ContextWindowError as e:
                await self._finish(state, "failed", "context_window_exceeded", e)
            except ConversationsError as e:
                await self._finish(state, "failed", "error", e)
            except Exception as e:
                log.exception("run %s crashed", state.run_id)
                await self._finish(state, "failed", "error", ConversationsError(f"InternalError: {e}"))
        except Exception:  # recording the end itself failed (e.g. the database went away)
            log.exception("run %s could not record its end", state.run_id)
        finally:
            if held:
                turn.lock.release()  # only now: the run's end (and a clean context) is recorded first
            self._leave(state.conversation_id, turn)
            self._slots.ended(state.principal)
            state.admitted.set()
            state.done.set()
            self._runs.pop(state.run_id, None)
            if key is not None:
                self._keys.pop((state.conversation_id, key), None)

    async def _start(self, state: RunState, inputs: list[Input], idle: bool, key: str | None) -> PromptRows:
        """queued -> running (or straight to running when idle), the input entering the context with it;
        returns what the first model call's prompt is built from (read in the same trip)."""
        if not idle:  # the conversation's or agent's model may have changed while this run was queued
            try:
                state.model = self._pick_model(
                    state.conversation_id, state.override_model, await self.store.send_target(state.conversation_id)
                )
            except ModelNotConfiguredError:
                pass
        await self.gateway.load()
        news = [i.message(state.run_id) for i in inputs]
        await self._pending.flush(state.conversation_id)  # a stranded run's input leaves the context first
        delays = backoff()
        while True:
            started = await self.store.start_run(
                state.run_id,
                state.conversation_id,
                state.agent_id,
                news,
                model=state.model,
                started_at=now_iso(),
                create=idle,
                idempotency_key=key,
                owner=self._presence.owner,
                principal=state.principal,
                max_running=self.settings.max_runs_per_principal,
            )
            if started is not None:
                break
            # Another process's run holds the conversation's turn, or the principal has no slot free (fair.py):
            # wait for it, stored as queued.
            if idle:
                state.created = await self.store.create_run(
                    state.run_id,
                    state.conversation_id,
                    state.agent_id,
                    status="queued",
                    idempotency_key=key,
                    owner=self._presence.owner,
                    principal=state.principal,
                )
                state.admitted.set()
                idle = False
            await self._slots.wait(state.conversation_id, state.principal, next(delays))
        run, prompt = started
        if state.created is None:
            state.created = run
        state.status = "running"
        state.admitted.set()
        return prompt

    async def _finish(
        self,
        state: RunState,
        status: str,
        stop_reason: str,
        error: ConversationsError | None = None,
        last_step: list[NewMessage] | None = None,
    ) -> None:
        """Record the run's end (cleaning the context unless it completed; storing a completed run's last
        step with it) and tell listeners. An end already stored stays (a cancel that interrupted the
        completed end's write must not turn it into a cancelled one)."""
        state.ending = True
        state.error = error
        fields = {
            "status": status,
            "stop_reason": stop_reason,
            "error": stored_cause(error),
            "model": state.model,
            "prompt_tokens": state.usage.prompt_tokens,
            "completion_tokens": state.usage.completion_tokens,
            "total_tokens": state.usage.total_tokens,
        }
        # The final state comes back from the same trip; None if the run was never stored or its
        # conversation was deleted while it went on.
        try:
            state.final = await self._pending.finish(
                state.run_id, state.conversation_id, fields, abandon=status != "completed", append=last_step
            )
        except StorageUnavailableError as e:
            return await self._pending.end_in_memory(state, e)
        if state.final is None:  # ended already (or never stored, or its conversation is gone)
            with contextlib.suppress(NotFoundError):
                state.final = await self.store.get_run(state.run_id)
        state.status = state.final.status if state.final is not None else status
        state.partial.clear()
        if state.final is not None:
            stored = {m.id for m in last_step or []}
            for m in state.final.messages:
                if m.id in stored:
                    await state.emit(RunEvent("message", state.run_id, m.id, message=m))
            await state.emit(RunEvent("done", state.run_id, run=state.final))

    # -- compaction on demand --

    async def compact(self, conversation_id: str) -> CompactResult:
        """Compact a conversation now, in turn with its runs; no model call if nothing can go."""
        target = await self._target(conversation_id)
        async with self._holding_turn(conversation_id):
            body = (await self.store.context_messages(conversation_id))[1:]
            if not choose_evicted(body):
                return CompactResult(summary=None, messages_before=len(body), messages_after=len(body))
            model = self._pick_model(conversation_id, None, target)
            await self.gateway.check_configured(model)
            agent = await self.store.get_agent(target.agent_id)
            result = await self.compactor.compact(conversation_id, model, effective_window(agent, self.gateway, model))
        return CompactResult(
            summary=result.summary.content if result.summary else None,
            messages_before=result.messages_before,
            messages_after=result.messages_after,
        )
