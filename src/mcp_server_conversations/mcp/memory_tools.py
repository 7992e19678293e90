"""The memory history tools: read a block's versions, restore one."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field

from ..models import Block, BlockHistory
from ..service.memory_history import HISTORY_PAGE_MAX
from .tools import CREATE, READ, Cursor, OptAgentId, app_of, tool_errors

Label = Annotated[str, Field(description="Block label, e.g. persona or human", min_length=1)]


def register(mcp: MCPServer) -> None:
    @mcp.tool(annotations=READ)
    @tool_errors
    async def get_memory_block_history(
        ctx: Context,
        label: Label,
        agent_id: OptAgentId = None,
        limit: Annotated[int, Field(ge=1, le=HISTORY_PAGE_MAX, description=f"Versions, 1-{HISTORY_PAGE_MAX}")] = 50,
        after: Cursor = None,
    ) -> BlockHistory:
        """A memory block's earlier values, newest first: version, value, when, and what changed it
        (a conversation's run, a tool or a REST route)."""
        return await app_of(ctx).service.memory_block_history(agent_id, label, limit, after)

    @mcp.tool(annotations=CREATE)
    @tool_errors
    async def restore_memory_block(
        ctx: Context,
        label: Label,
        version: Annotated[int, Field(ge=1, description="The version whose value becomes current again")],
        agent_id: OptAgentId = None,
    ) -> Block:
        """Make an earlier value of a memory block current again; it is recorded as a new version."""
        return await app_of(ctx).service.restore_memory_block(agent_id, label, version)
