"""What a run tells its listeners while it runs: the contract between the runtime and the
layers that stream (MCP progress notifications, Letta REST SSE)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..models import Message, Run

EventKind = Literal["reasoning_delta", "text_delta", "tool_call", "message", "done"]


@dataclass(frozen=True, slots=True)
class RunEvent:
    """One thing that happened in a run, in order.

    - `reasoning_delta` / `text_delta`: `delta` is the new text; `message_id` is the id the
      reasoning / assistant message of this step will be stored under (deltas of one message share it).
    - `tool_call`: a tool call has started streaming; `delta` is the tool's name, `message_id` the id of
      its tool_call_message.
    - `message`: `message` was stored (reasoning, tool call, tool return or assistant message).
    - `done`: the run ended; `run` is its final state with its messages.
    """

    kind: EventKind
    run_id: str
    message_id: str | None = None
    delta: str | None = None
    message: Message | None = None
    run: Run | None = None
