"""Pydantic models of the domain: what tools return and what storage hands back."""

from __future__ import annotations

from typing import Any, Literal

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
StopReason = Literal[
    "end_turn", "max_steps", "error", "cancelled", "interrupted", "context_window_exceeded", "requires_approval"
]

# The product's limits, stated once: the MCP tools' schemas, the services and the runtime all use these.
MAX_STEPS = 100  # model calls in one send_message turn
MAX_KEY_CHARS = 200  # an idempotency key
MAX_PAGE = 1000  # items in one page of a list
MAX_SEARCH_RESULTS = 100  # results of one conversation_search
UNFINISHED = ("queued", "running")  # a run's statuses before it ends
FINISHED = ("completed", "failed", "cancelled", "interrupted")  # how a run ends

NEXT = "Pass as `after` (with the same ordering) for the next page; null at the end"

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
    version: int = Field(default=1, description="Its current version in the memory history (1 when made)")


ChangedBy = dict[str, str | None]


class BlockVersion(BaseModel):
    """One value a memory block had."""

    version: int = Field(description="1, 2, … without gaps per block")
    value: str
    changed_at: str
    changed_by: ChangedBy | None = Field(
        description="{conversation_id, run_id} for the agent's memory tools in a run, {tool} for an MCP tool, "
        "{route} for a REST route; null for the value the block had when history began"
    )


class BlockHistory(BaseModel):
    """A page of a memory block's versions, newest first."""

    agent_id: str
    label: str
    current_version: int
    versions: list[BlockVersion]
    next_cursor: str | None = Field(default=None, description=NEXT)


class Agent(BaseModel):
    """An agent: a base system prompt, memory blocks and a default model shared by its conversations."""

    id: str = Field(description="agent-… id")
    name: str
    model: str | None = Field(description="Default model handle; null follows the server default")
    system: str = Field(description="Base system prompt")
    context_window_limit: int | None = Field(
        default=None, description="Tokens of context before compaction; null uses the model's window"
    )
    created_at: str
    memory_blocks: list[Block] = Field(default_factory=list, description="Blocks in every system message")
    description: str | None = Field(default=None, description="What the agent is for (set by Letta clients)")
    tags: list[str] = Field(default_factory=list, description="Labels Letta clients filter agents by")
    model_settings: dict[str, Any] | None = Field(
        default=None, exclude=True, description="Letta clients' model settings, kept as given"
    )
    default_conversation_id: str | None = Field(
        default=None, exclude=True, description="The conversation Letta's agent-direct routes use"
    )


class ForkedFrom(BaseModel):
    """Where a fork came from."""

    conversation_id: str = Field(description="The source conversation (it may since have been deleted)")
    message_id: str | None = Field(description="Last inherited message, or null for a whole fork")


class Conversation(BaseModel):
    """A message thread of an agent, with its own context window."""

    id: str = Field(description="conv-… id")
    agent_id: str
    summary: str | None = Field(default=None, description="Optional title")
    model: str | None = Field(default=None, description="Model handle overriding the agent's")
    created_at: str
    last_run_completion: str | None = Field(default=None, description="When its last run ended; null before the first")
    forked_from: ForkedFrom | None = Field(default=None, description="Set on forks; null otherwise")
    message_count: int = Field(default=0, description="Messages list_messages returns, inherited ones included")


class ToolCall(BaseModel):
    """One tool call made by the model."""

    tool_call_id: str
    name: str
    arguments: str = Field(description="JSON-encoded arguments")


class Message(BaseModel):
    """One message of a conversation's history."""

    id: str = Field(description="message-… id")
    conversation_id: str = Field(description="The conversation that wrote it")
    agent_id: str
    message_type: MessageType
    role: Role
    content: str | None = None
    created_at: str
    run_id: str | None = None
    is_err: bool = False
    in_context: bool = Field(default=False, description="Whether it is in the conversation's context window now")
    model: str | None = Field(default=None, description="Model that wrote it (assistant messages)")
    reasoning: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    status: Literal["success", "error", "requires_approval"] | None = Field(
        default=None, description="A tool return's outcome; requires_approval: tool calls a client runs"
    )


class Usage(BaseModel):
    """Tokens used by a run's model calls."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class Run(BaseModel):
    """One send_message call and what it produced."""

    id: str = Field(description="run-… id")
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
    """A message that matched a search."""

    message_id: str
    conversation_id: str = Field(description="The conversation that wrote it, else a fork that still holds it")
    role: Role
    message_type: MessageType
    content: str | None
    snippet: str = Field(description="The matching part of the text")
    created_at: str
    score: float = Field(description="Higher is more relevant")


class AgentList(BaseModel):
    """A page of agents."""

    agents: list[Agent]
    next_cursor: str | None = Field(default=None, description=NEXT)


class ConversationList(BaseModel):
    """A page of conversations."""

    conversations: list[Conversation]
    next_cursor: str | None = Field(default=None, description=NEXT)


class MessageList(BaseModel):
    """A page of a conversation's history."""

    messages: list[Message]
    next_cursor: str | None = Field(default=None, description=NEXT)


class SearchResults(BaseModel):
    """Search results, best first."""

    results: list[SearchResult]


class Deleted(BaseModel):
    """What a delete removed."""

    deleted: bool = True
    id: str


class CompactResult(BaseModel):
    """The outcome of compacting a conversation's context."""

    summary: str | None = Field(description="The summary that replaced the evicted messages; null if none")
    messages_before: int = Field(description="In-context messages before, the system message not counted")
    messages_after: int = Field(description="In-context messages after")
