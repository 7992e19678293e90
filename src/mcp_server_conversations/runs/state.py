"""What the runtime keeps about a run while it is queued or running (in memory only), and how the run's
events reach whoever follows it: every observer is a listener (an MCP progress sender, a REST stream's
feed, a subscriber's queue), called in order for each event."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConversationsError
from ..models import Run, Usage
from ..principals import LOCAL
from .events import RunEvent

log = logging.getLogger("mcp_server_conversations.runs.state")

Listener = Callable[[RunEvent], Awaitable[None]]


@dataclass
class RunState:
    """What the runtime knows about a run while it is queued or running (in memory only)."""

    run_id: str
    conversation_id: str
    agent_id: str
    model: str
    override_model: str | None
    background: bool
    principal: str = LOCAL  # who sent it: it takes one of that principal's slots while it runs
    status: str = "queued"
    partial: list[str] = field(default_factory=list)  # this step's text deltas; joined only when read
    usage: Usage = field(default_factory=Usage)
    listeners: list[Listener] = field(default_factory=list)
    admitted: asyncio.Event = field(default_factory=asyncio.Event)  # set once queued-or-running is known
    done: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    client_tools: list[dict[str, Any]] = field(default_factory=list)  # chat-completions tool schemas
    images: list[dict[str, Any]] = field(default_factory=list)  # the input's image parts (never stored)
    cancel_requested: bool = False
    ending: bool = False  # its end is being stored: cancels no longer apply
    end_as: str = "cancelled"  # what a cancellation means: cancelled (by a client) or interrupted (shutdown)
    error: ConversationsError | None = None
    created: Run | None = None  # the run as first stored (what a background send returns)
    replaced_by: str | None = None  # the run another process stored first with this idempotency key
    final: Run | None = None

    @property
    def partial_text(self) -> str:
        """The assistant text streamed so far in the current step."""
        return "".join(self.partial)

    def add_usage(self, usage: Usage) -> None:
        self.usage = Usage(
            prompt_tokens=self.usage.prompt_tokens + usage.prompt_tokens,
            completion_tokens=self.usage.completion_tokens + usage.completion_tokens,
            total_tokens=self.usage.total_tokens + usage.total_tokens,
        )

    async def emit(self, event: RunEvent) -> None:
        """Hand an event to every listener, awaited in order (a failing listener is detached)."""
        for listener in list(self.listeners):
            try:
                await listener(event)
            except Exception:  # a listener whose client went away must not end the run
                log.debug("run listener failed; detaching it", exc_info=True)
                if listener in self.listeners:
                    self.listeners.remove(listener)
