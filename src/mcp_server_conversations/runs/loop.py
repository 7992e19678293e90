"""One turn of the agent: model call, tool calls run server-side, model again, until an answer
without tool calls (`end_turn`) or `max_steps`.

Tools a client declares for the run (Letta's `client_tools`) are offered to the model beside the
agent's own and run by the client: a step that calls one runs the agent's own calls of that step,
stores the client's calls as one tool-call message waiting for approval, and ends the run with
`requires_approval`; the client's results arrive as tool returns in a later send, which continues.

Each model call gets a system message compiled now from the agent's base prompt and its current
memory blocks (so an edit made by any conversation is in the next call of every conversation),
then the conversation's in-context messages, which end with this turn's input and steps. Before a
call the context is compacted when it nears the window; on a provider context-window error it is
compacted once and the call retried. Deltas go to the run's listeners as they arrive and are
kept only in memory (partial_text); a step's messages are stored when the step completes (the
last step's by the runtime, with the run's end).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import TYPE_CHECKING, Any

from ..errors import ContextWindowError
from ..gateway import Completion, ModelGateway
from ..models import Message
from ..storage import NewMessage, PromptRows, Store
from ..util import new_id
from .agent_tools import AgentTools
from .compaction import Compactor, effective_window, over_threshold
from .events import RunEvent
from .memory import compile_system
from .prompt import estimate_tokens, rows_to_chat
from .state import RunState

if TYPE_CHECKING:
    pass

log = logging.getLogger("mcp_server_conversations.runs.loop")


class AgentLoop:
    """Runs the steps of one turn of `state`'s run (the caller holds the conversation's turn)."""

    def __init__(
        self,
        store: Store,
        gateway: ModelGateway,
        tools: AgentTools,
        compactor: Compactor,
        state: RunState,
        max_steps: int,
        first_prompt: PromptRows | None = None,
    ) -> None:
        self.store = store
        self.gateway = gateway
        self.tools = tools
        self.compactor = compactor
        self.state = state
        self.max_steps = max_steps
        self._preloaded = first_prompt  # read with the run's start, in the same trip
        self.schemas, self.client_names = offered_tools(tools.schemas, state.client_tools)
        self.schema_chars = len(json.dumps(self.schemas))  # the same for every model call of the run

    async def run(self) -> tuple[str, list[NewMessage]]:
        """The stop reason (end_turn or max_steps) and the last step's messages, not yet stored: the
        runtime stores them with the run's end, in one transaction. Raises ProviderError on a provider failure."""
        for _ in range(self.max_steps):
            completion, ids = await self.step()
            if any(c["name"] in self.client_names for c in completion.tool_calls or []):
                return "requires_approval", await self.hand_to_client(completion, ids)
            new = self.step_messages(completion, ids)
            if not completion.tool_calls:
                return "end_turn", new
            await self._emit_stored(await self.store.append_messages(self.state.conversation_id, new))
            self.state.partial.clear()
            await self.run_tools(completion.tool_calls)
        return "max_steps", []

    async def build_prompt(self) -> tuple[list[dict], int]:
        """The messages for the next call and the effective window for this call's model."""
        rows, self._preloaded = self._preloaded, None
        if rows is None:
            rows = await self.store.prompt_rows(self.state.conversation_id, self.state.agent_id)
        system = compile_system(rows.agent)
        if rows.system_text != system:  # the memory changed since the last call (usually it has not)
            await self.store.set_system_text(self.state.conversation_id, system)
        state = self.state
        images = {state.run_id: state.images} if state.images and self.gateway.takes_images(state.model) else None
        prompt = [{"role": "system", "content": system}, *rows_to_chat(rows.context, images)]
        return prompt, effective_window(rows.agent, self.gateway, self.state.model)

    async def compact(self, window: int) -> bool:
        result = await self.compactor.compact(
            self.state.conversation_id, self.state.model, window, run_id=self.state.run_id
        )
        self.state.add_usage(result.usage)
        return result.summary is not None

    async def step(self) -> tuple[Completion, dict[str, str]]:
        """One model call (compacting first when the prompt nears the window; once more on a context error)."""
        compacted = retried = False
        while True:
            prompt, window = await self.build_prompt()
            if not compacted and over_threshold(estimate_tokens(prompt, self.schema_chars), window):
                compacted = True
                if await self.compact(window):
                    continue
            try:
                return await self.call(prompt)
            except ContextWindowError:
                if retried:
                    raise
                retried = compacted = True
                log.info("context window exceeded in %s; compacting and retrying", self.state.conversation_id)
                if not await self.compact(window):
                    raise

    async def call(self, prompt: list[dict]) -> tuple[Completion, dict[str, str]]:
        """Stream one model call to the listeners; return the whole message and its message ids."""
        state = self.state
        ids = {"reasoning": new_id("message"), "text": new_id("message"), "call": new_id("message")}
        state.partial.clear()
        completion: Completion | None = None
        async for item in self.gateway.stream(state.model, prompt, self.schemas):
            if isinstance(item, Completion):
                completion = item
            elif item.kind == "text":
                state.partial.append(item.text)
                await state.emit(RunEvent("text_delta", state.run_id, ids["text"], item.text))
            elif item.kind == "reasoning":
                await state.emit(RunEvent("reasoning_delta", state.run_id, ids["reasoning"], item.text))
            else:
                await state.emit(RunEvent("tool_call", state.run_id, ids["call"], item.text))
        assert completion is not None  # gateway.stream always ends with the Completion
        state.add_usage(completion.usage)
        return completion, ids

    def step_messages(self, completion: Completion, ids: dict[str, str]) -> list[NewMessage]:
        """The messages a model call's answer is stored as: reasoning, text, tool calls."""
        state = self.state
        common: dict[str, Any] = {"model": state.model, "run_id": state.run_id}
        new: list[NewMessage] = []
        if completion.reasoning:
            new.append(
                NewMessage(
                    "reasoning_message", "assistant", reasoning=completion.reasoning, id=ids["reasoning"], **common
                )
            )
        if completion.content or not completion.tool_calls:
            new.append(
                NewMessage("assistant_message", "assistant", content=completion.content, id=ids["text"], **common)
            )
        if completion.tool_calls:
            new.append(
                NewMessage("tool_call_message", "assistant", tool_calls=completion.tool_calls, id=ids["call"], **common)
            )
        return new

    async def hand_to_client(self, completion: Completion, ids: dict[str, str]) -> list[NewMessage]:
        """A step calling client tools: store it with the agent's own calls (run now), and return the
        client's calls as the message that waits for their results (stored with the run's end)."""
        calls = completion.tool_calls or []
        mine = [c for c in calls if c["name"] not in self.client_names]
        theirs = [c for c in calls if c["name"] in self.client_names]
        step = self.step_messages(dataclasses.replace(completion, tool_calls=mine), ids)
        if not mine:  # no answer text and none of our calls: nothing to store before the request
            step = [m for m in step if m.message_type != "assistant_message" or m.content]
        if step:
            await self._emit_stored(await self.store.append_messages(self.state.conversation_id, step))
        self.state.partial.clear()
        if mine:
            await self.run_tools(mine)
        return [
            NewMessage(
                "tool_call_message",
                "assistant",
                tool_calls=theirs,
                status="requires_approval",
                model=self.state.model,
                run_id=self.state.run_id,
            )
        ]

    async def run_tools(self, calls: list[dict[str, str]]) -> None:
        state = self.state
        for call in calls:
            result = await self.tools.execute(
                state.agent_id,
                call["name"],
                call["arguments"],
                changed_by={"conversation_id": state.conversation_id, "run_id": state.run_id},
            )
            stored = await self.store.append_messages(
                state.conversation_id,
                [
                    NewMessage(
                        "tool_return_message",
                        "tool",
                        content=result.text,
                        tool_call_id=call["tool_call_id"],
                        status="success" if result.ok else "error",
                        run_id=state.run_id,
                    )
                ],
            )
            await self._emit_stored(stored)

    async def _emit_stored(self, stored: list[Message]) -> None:
        """A `message` event for each stored message, in order."""
        for m in stored:
            await self.state.emit(RunEvent("message", self.state.run_id, m.id, message=m))


def offered_tools(own: list[dict[str, Any]], client: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], set[str]]:
    """The tool schemas a model call offers and the names the client runs. The agent's own tools
    keep their names: a client tool of the same name is not offered."""
    if not client:
        return own, set()
    taken = {t["function"]["name"] for t in own}
    extra = [t for t in client if t["function"]["name"] not in taken]
    return [*own, *extra], {t["function"]["name"] for t in extra}


__all__ = ["AgentLoop", "offered_tools"]
