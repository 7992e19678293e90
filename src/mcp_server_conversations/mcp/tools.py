"""The MCP tool layer: typed parameters in, one service call, a pydantic model out.

Errors of our tree become tool errors (`isError`) with their message; nothing here
holds logic or SQL."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal, ParamSpec, TypeVar, cast

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from .. import principals
from ..app import App
from ..errors import ConversationsError
from ..inputs import check_value
from ..models import (
    MAX_PAGE,
    MAX_SEARCH_RESULTS,
    Agent,
    AgentList,
    Block,
    Conversation,
    ConversationList,
    Deleted,
    MessageList,
    MessageType,
    SearchResults,
)
from ..service.conversations import UNSET

P = ParamSpec("P")
R = TypeVar("R")

READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
CREATE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)
UPDATE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
DELETE = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False)


def principal_of(ctx: Context[Any, Any] | None) -> str:
    """Who the tool call acts for: the principal the HTTP layer put on the request it came in (the
    SDK runs a stateful session's tools in the session's task, not the request's, so the request's
    context variable does not reach here); an HTTP request without one acts for `local`, and a call
    that came in no HTTP request (stdio) for the principal the server runs as (`local`)."""
    try:
        request = ctx.request_context.request if ctx is not None else None
    except ValueError:  # no request context at all
        request = None
    if request is None:
        return principals.current()
    scope = getattr(request, "scope", None)
    state = scope.get("state") if isinstance(scope, dict) else None
    found = state.get("principal") if isinstance(state, dict) else None
    return found if isinstance(found, str) and found else principals.LOCAL


def tool_errors(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Act for the request's principal, check the arguments (inputs.check_value: 64-bit integers, no
    NULs or lone surrogates) and turn the server's own errors into tool errors whose message the
    client sees."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        ctx = next((v for v in kwargs.values() if isinstance(v, Context)), None)
        with principals.acting_as(principal_of(ctx)):
            try:
                for name, value in kwargs.items():
                    if not isinstance(value, Context):
                        check_value(name, value)
                return await fn(*args, **kwargs)
            except ConversationsError as e:
                raise ToolError(e.message) from e

    return wrapper


def app_of(ctx: Context[Any, Any]) -> App:
    """The app the server's lifespan yields (tools take the SDK's untyped `Context`)."""
    return cast(App, ctx.request_context.lifespan_context)


def given(ctx: Context, **values: Any) -> dict[str, Any]:
    """The update fields the client actually sent: omitted ones become UNSET, explicit nulls stay None."""
    params = ctx.request_context.params or {}
    sent = params.get("arguments") if isinstance(params, dict) else getattr(params, "arguments", None)
    if not isinstance(sent, dict):
        return {k: (UNSET if v is None else v) for k, v in values.items()}
    return {k: (v if k in sent else UNSET) for k, v in values.items()}


class MemoryBlockInput(BaseModel):
    label: str = Field(description="Unique name of the block within the agent, e.g. persona, human, project")
    value: str = Field(default="", description="The block's text")
    description: str | None = Field(default=None, description="What the block is for (shown to the model)")
    limit: int | None = Field(default=None, ge=1, description="Maximum characters (default 20000)")
    read_only: bool = Field(default=False, description="If true, the agent's memory tools cannot edit it")


AgentId = Annotated[str, Field(description="Agent id (agent-…)", min_length=1)]
OptAgentId = Annotated[
    str | None, Field(description="Agent id (agent-…); omit to use your default agent", min_length=1)
]
ConvId = Annotated[str, Field(description="Conversation id (conv-…)", min_length=1)]
Handle = Annotated[
    str | None,
    Field(
        description="Model handle provider/model-name as litellm names it, e.g. openai/gpt-5-mini, "
        "anthropic/claude-haiku-4-5, ollama/llama3.2"
    ),
]
Cursor = Annotated[str | None, Field(description="next_cursor from the previous page; omit for the first page")]


def register(mcp: MCPServer) -> None:
    """Register the agent, memory, conversation, history and search tools."""

    @mcp.tool(annotations=CREATE)
    @tool_errors
    async def create_agent(
        ctx: Context,
        name: Annotated[str, Field(description="Display name of the agent", min_length=1)],
        model: Handle = None,
        system: Annotated[str | None, Field(description="Base system prompt; omit for the default")] = None,
        memory_blocks: Annotated[
            list[MemoryBlockInput] | None, Field(description="Initial memory blocks shared by its conversations")
        ] = None,
        context_window_limit: Annotated[
            int | None, Field(description="Tokens of context before compaction; omit to use the model's window")
        ] = None,
    ) -> Agent:
        """Create an agent: a system prompt, memory blocks and a default model shared by its conversations."""
        blocks = [b.model_dump() for b in memory_blocks or []]
        return await app_of(ctx).service.create_agent(name, model, system, blocks, context_window_limit)

    @mcp.tool(annotations=READ)
    @tool_errors
    async def list_agents(
        ctx: Context,
        limit: Annotated[int, Field(ge=1, le=MAX_PAGE, description=f"Page size, 1-{MAX_PAGE}")] = 50,
        after: Cursor = None,
    ) -> AgentList:
        """List agents, oldest first; pass next_cursor as `after` for the next page."""
        return await app_of(ctx).service.list_agents(limit, after)

    @mcp.tool(annotations=READ)
    @tool_errors
    async def get_agent(ctx: Context, agent_id: AgentId) -> Agent:
        """Get an agent with its memory blocks."""
        return await app_of(ctx).service.get_agent(agent_id)

    @mcp.tool(annotations=UPDATE)
    @tool_errors
    async def update_agent(
        ctx: Context,
        agent_id: AgentId,
        name: Annotated[str | None, Field(description="New name")] = None,
        model: Annotated[str | None, Field(description="New default model handle; null clears it")] = None,
        system: Annotated[str | None, Field(description="New base system prompt; null restores the default")] = None,
        context_window_limit: Annotated[int | None, Field(description="New context window; null clears it")] = None,
    ) -> Agent:
        """Change an agent. Omitted fields stay as they are; an explicit null clears a field."""
        fields = given(ctx, name=name, model=model, system=system, context_window_limit=context_window_limit)
        return await app_of(ctx).service.update_agent(agent_id, **fields)

    @mcp.tool(annotations=DELETE)
    @tool_errors
    async def delete_agent(ctx: Context, agent_id: AgentId) -> Deleted:
        """Delete an agent with all its conversations, messages and memory blocks."""
        return await app_of(ctx).service.delete_agent(agent_id)

    @mcp.tool(annotations=UPDATE)
    @tool_errors
    async def update_memory_block(
        ctx: Context,
        label: Annotated[str, Field(description="Block label; a new label creates the block", min_length=1)],
        agent_id: OptAgentId = None,
        value: Annotated[str | None, Field(description="New text of the block; omit to keep it")] = None,
        description: Annotated[str | None, Field(description="What the block is for; null clears it")] = None,
        limit: Annotated[int | None, Field(ge=1, description="Maximum characters (default 20000)")] = None,
        read_only: Annotated[
            bool | None, Field(description="Protect it from the agent's own memory tools (you can still edit it)")
        ] = None,
        expected_version: Annotated[
            int | None,
            Field(
                ge=0,
                description="Write only if the block is still at this version (0: only if it does not exist); "
                "a stale one is refused with the current version instead of overwriting",
            ),
        ] = None,
    ) -> Block:
        """Create or change a memory block; every conversation of the agent sees it on its next model call.
        A new value is recorded as the block's next version (get_memory_block_history)."""
        fields = given(ctx, value=value, description=description, limit=limit, read_only=read_only)
        return await app_of(ctx).service.update_memory_block(
            agent_id, label, expected_version=expected_version, **fields
        )

    @mcp.tool(annotations=CREATE)
    @tool_errors
    async def create_conversation(
        ctx: Context,
        agent_id: OptAgentId = None,
        model: Annotated[
            str | None, Field(description="Model handle for this conversation, overriding the agent's")
        ] = None,
        summary: Annotated[str | None, Field(description="Optional title")] = None,
    ) -> Conversation:
        """Start a new conversation (a parallel message thread) of an agent; it shares the agent's memory."""
        return await app_of(ctx).service.create_conversation(agent_id, model, summary)

    @mcp.tool(annotations=READ)
    @tool_errors
    async def get_conversation(ctx: Context, conversation_id: ConvId) -> Conversation:
        """Get a conversation: its agent, model override, title, fork origin, message count and last run time."""
        return await app_of(ctx).service.get_conversation(conversation_id)

    @mcp.tool(annotations=UPDATE)
    @tool_errors
    async def update_conversation(
        ctx: Context,
        conversation_id: ConvId,
        model: Annotated[str | None, Field(description="Model handle; null clears it (the agent's is used)")] = None,
        summary: Annotated[str | None, Field(description="Title; null clears it")] = None,
    ) -> Conversation:
        """Change a conversation's model or title. Omitted fields stay; null clears."""
        fields = given(ctx, model=model, summary=summary)
        return await app_of(ctx).service.update_conversation(conversation_id, **fields)

    @mcp.tool(annotations=READ)
    @tool_errors
    async def list_conversations(
        ctx: Context,
        agent_id: OptAgentId = None,
        order_by: Annotated[
            Literal["created_at", "last_run_completion"],
            Field(description="Sort key; last_run_completion puts never-run conversations last"),
        ] = "created_at",
        order: Annotated[Literal["desc", "asc"], Field(description="desc = newest first")] = "desc",
        limit: Annotated[int, Field(ge=1, le=MAX_PAGE, description=f"Page size, 1-{MAX_PAGE}")] = 50,
        after: Cursor = None,
    ) -> ConversationList:
        """List an agent's conversations; pass next_cursor as `after` (same order_by/order) for more."""
        return await app_of(ctx).service.list_conversations(agent_id, order_by, order, limit, after)

    @mcp.tool(annotations=READ)
    @tool_errors
    async def list_messages(
        ctx: Context,
        conversation_id: ConvId,
        limit: Annotated[int, Field(ge=1, le=MAX_PAGE, description=f"Page size, 1-{MAX_PAGE}")] = 100,
        after: Cursor = None,
        order: Annotated[Literal["asc", "desc"], Field(description="asc = oldest first")] = "asc",
        message_types: Annotated[list[MessageType] | None, Field(description="Only these message types")] = None,
        include_system: Annotated[bool, Field(description="Also list system_message rows")] = False,
    ) -> MessageList:
        """A conversation's whole history: inherited messages of a fork first, tool calls and returns,
        failed turns (is_err), messages compacted out of context (in_context false) and summaries."""
        return await app_of(ctx).service.list_messages(
            conversation_id, limit, after, order, list(message_types) if message_types else None, include_system
        )

    @mcp.tool(annotations=CREATE)
    @tool_errors
    async def fork_conversation(
        ctx: Context,
        conversation_id: ConvId,
        message_id: Annotated[
            str | None, Field(description="Fork through this in-context message (inclusive); omit for all of them")
        ] = None,
    ) -> Conversation:
        """Branch a conversation: the fork starts with the source's context and goes its own way."""
        return await app_of(ctx).service.fork_conversation(conversation_id, message_id)

    @mcp.tool(annotations=DELETE)
    @tool_errors
    async def delete_conversation(ctx: Context, conversation_id: ConvId) -> Deleted:
        """Delete a conversation and its messages (rows a fork still holds stay in that fork)."""
        return await app_of(ctx).service.delete_conversation(conversation_id)

    @mcp.tool(annotations=READ)
    @tool_errors
    async def conversation_search(
        ctx: Context,
        query: Annotated[str, Field(description="Words or a natural-language question; any text is valid")],
        agent_id: OptAgentId = None,
        conversation_id: Annotated[
            str | None,
            Field(description="Only this conversation's history (a fork's inherited messages included)", min_length=1),
        ] = None,
        roles: Annotated[
            list[Literal["user", "assistant", "tool"]] | None, Field(description="Only messages of these roles")
        ] = None,
        start_date: Annotated[str | None, Field(description="YYYY-MM-DD or ISO datetime, inclusive")] = None,
        end_date: Annotated[str | None, Field(description="YYYY-MM-DD (whole day) or ISO datetime, inclusive")] = None,
        limit: Annotated[int, Field(ge=1, le=MAX_SEARCH_RESULTS, description=f"Results, 1-{MAX_SEARCH_RESULTS}")] = 10,
    ) -> SearchResults:
        """Search the pooled history of all the agent's conversations, best match first: full text
        (stemmed; words common in this agent's history count little), fused with meaning when the server
        has an embedding model. A date in the query ("on 8 May 2023", "last week") searches that time first."""
        return await app_of(ctx).service.search(
            query, agent_id, conversation_id, list(roles) if roles else None, start_date, end_date, limit
        )
