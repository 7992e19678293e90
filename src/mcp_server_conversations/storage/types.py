"""The values passed across the Store contract (storage/contract.py): what the layers above
storage hand to a store and get back, besides the models of models.py. Backend-neutral."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..models import Agent

MESSAGE_TYPES = (
    "system_message",
    "user_message",
    "assistant_message",
    "reasoning_message",
    "tool_call_message",
    "tool_return_message",
    "summary_message",
)

# History keys order a conversation's history: (0, 0) its system message, (1, i) the i-th
# inherited row, (2, n) a row it wrote (n: the store's integer key for the row, increasing in
# write order). They are what list cursors carry, opaque to the layers above.
HistoryKey = tuple[int, int]


@dataclass
class NewMessage:
    """A message to store; ids and timestamps are filled in by the store when absent."""

    message_type: str
    role: str
    content: str | None = None
    reasoning: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    status: str | None = None
    model: str | None = None
    run_id: str | None = None
    is_err: bool = False
    id: str | None = None
    created_at: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def search_text(self) -> str | None:
        """What full-text search indexes: text, reasoning, or a tool call's name and arguments."""
        if self.message_type == "system_message":
            return None
        parts = [p for p in (self.content, self.reasoning) if p]
        for call in self.tool_calls or []:
            parts.append(f"{call.get('name', '')} {call.get('arguments', '')}")
        return "\n".join(parts) if parts else None

    def search_extra(self) -> str | None:
        """What the `search_extra` column stores: the indexed text only where it is not simply the
        content (the database computes `search_text` as that, else the content; schema m006)."""
        if self.message_type == "system_message" or not self.reasoning and not self.tool_calls:
            return None
        return self.search_text()


@dataclass
class ImportedConversation:
    """A conversation to store whole (import_conversation): its messages in history order (new ids,
    timestamps kept, `run_id` naming one of `runs`), and its context as positions in `messages`, in
    prompt order (the system message, made from `system_text`, comes first by itself)."""

    agent_id: str
    model: str | None
    summary: str | None
    system_text: str
    last_run_completion: str | None
    messages: list[NewMessage]
    context: list[int]
    runs: list[dict[str, Any]]  # RUN_COLUMNS values by name; all ended


RUN_COLUMNS = (
    "id",
    "model",
    "status",
    "stop_reason",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "error",
    "created_at",
    "started_at",
    "completed_at",
)


@dataclass(frozen=True, slots=True)
class SendTarget:
    """What a send needs to know about its conversation before it picks a model."""

    agent_id: str
    conversation_model: str | None
    agent_model: str | None
    existing_run: str | None  # the run an idempotency key already names
    principal: str | None = None  # whose the conversation is (its agent's principal)


@dataclass(frozen=True, slots=True)
class PromptRows:
    """What one model call's prompt is built from, read together."""

    agent: Agent  # with its memory blocks
    system_text: str | None  # the stored system message
    context: list[tuple[str, str | None, str | None, str | None, str | None]]
    # the in-context rows after the system message: (message_type, content, tool_calls as stored JSON,
    # tool_call_id, run_id), what prompt.rows_to_chat takes


@dataclass(frozen=True, slots=True)
class PendingMessage:
    """A message whose search text has no vector for the current embedding model yet."""

    rowid: int
    id: str
    agent_id: str
    text: str


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A named token as `tokens list` shows it: never the token, never its hash."""

    name: str
    created_at: str
    last_used_at: str | None
    revoked_at: str | None
