"""Pydantic models of the domain: what tools return and what storage hands back."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

MessageType = Literal[
    "system_message",
    "user_message",
    "assistant_message",
    "reasoning_message",
    "tool_call_message",
    "tool_return_message",
    "summary_message",
]
Role = Literal["user", "assistant", "tool", "system"]
RunStatus = Literal["queued", "running", "completed", "failed", "cancelled", "interrupted"]
StopReason = Literal["end_turn", "max_steps", "error", "cancelled", "interrupted", "context_window_exceeded"]

ROLE_OF_TYPE: dict[str, str] = {
    "system_message": "system",
    "summary_message": "system",
    "user_message": "user",
    "assistant_message": "assistant",
    "reasoning_message": "assistant",
    "tool_call_message": "assistant",
    "tool_return_message": "tool",
}


class Block(BaseModel):
    """A memory block shared by every conversation of its agent."""

    id: str
    label: str
    value: str
    description: str | None = None
    limit: int = Field(description="Maximum characters the value may hold")
    read_only: bool = False


class Agent(BaseModel):
    id: str
    name: str
    model: str | None = Field(description="Default model handle; null follows the server default")
    system: str = Field(description="Base system prompt")
    context_window_limit: int | None = None
    created_at: str
    memory_blocks: list[Block] = Field(default_factory=list)


class ForkedFrom(BaseModel):
    conversation_id: str
    message_id: str | None = Field(description="Last inherited message, or null for a whole fork")


class Conversation(BaseModel):
    id: str
    agent_id: str
    summary: str | None = None
    model: str | None = Field(default=None, description="Model handle overriding the agent's")
    created_at: str
    last_run_completion: str | None = None
    forked_from: ForkedFrom | None = None
    message_count: int = 0


class ToolCall(BaseModel):
    tool_call_id: str
    name: str
    arguments: str = Field(description="JSON-encoded arguments")


class Message(BaseModel):
    id: str
    conversation_id: str = Field(description="The conversation that wrote it")
    agent_id: str
    message_type: MessageType
    role: Role
    content: str | None = None
    created_at: str
    run_id: str | None = None
    is_err: bool = False
    in_context: bool = False
    model: str | None = None
    reasoning: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    status: Literal["success", "error"] | None = None


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class Run(BaseModel):
    id: str
    run_id: str = Field(description="Same as id, for clients that read run_id")
    conversation_id: str
    agent_id: str
    model: str | None = None
    status: RunStatus
    stop_reason: StopReason | None = None
    usage: Usage | None = None
    error: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    created_at: str
    messages: list[Message] = Field(default_factory=list)
    partial_text: str | None = None


class SearchResult(BaseModel):
    message_id: str
    conversation_id: str
    role: Role
    message_type: MessageType
    content: str | None
    snippet: str
    created_at: str
    score: float = Field(description="Higher is more relevant")


class AgentList(BaseModel):
    agents: list[Agent]
    next_cursor: str | None = None


class ConversationList(BaseModel):
    conversations: list[Conversation]
    next_cursor: str | None = None


class MessageList(BaseModel):
    messages: list[Message]
    next_cursor: str | None = None


class SearchResults(BaseModel):
    results: list[SearchResult]


class Deleted(BaseModel):
    deleted: bool = True
    id: str


class CompactResult(BaseModel):
    summary: str | None
    messages_before: int
    messages_after: int
