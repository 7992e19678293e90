"""Building the MCP server: its lifespan opens the app unless one is shared (HTTP + REST)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cache

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.tools import Tool

from .. import __version__
from ..app import App, open_app
from ..config import Settings
from . import memory_tools, output_schemas, portability_tools, resources, run_tools, tools

INSTRUCTIONS = (
    "Letta-style conversations: parallel message threads of one stateful agent. Threads share the agent's "
    "memory blocks and a searchable pooled history; each has its own context window. Create a conversation, "
    "talk in it with send_message, branch it with fork_conversation, find past messages with conversation_search."
)


def build_server(settings: Settings, shared: App | None = None) -> MCPServer:
    """The MCP server. With `shared`, tools use that already-open app (the HTTP server opens
    one for MCP and REST together); otherwise the lifespan opens and closes its own."""

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[App]:
        if shared is not None:
            yield shared
            return
        async with open_app(settings) as app:
            yield app

    mcp = MCPServer(
        "mcp-server-conversations",
        instructions=INSTRUCTIONS,
        version=__version__,
        lifespan=lifespan,
        log_level=settings.log_level,
        tools=list(_tools()),
    )
    resources.register(mcp)  # resource handlers hold this server's subscriptions: not shared
    return mcp


@cache
def _tools() -> tuple[Tool, ...]:
    """The tools, made once per process: making one derives pydantic models and JSON schemas from its
    function's signature, more work than the rest of a server, and no tool holds anything of a server's
    (each reaches the app through its request context), so every server can share them."""
    template = MCPServer("mcp-server-conversations")
    tools.register(template)
    memory_tools.register(template)
    run_tools.register(template)
    portability_tools.register(template)
    _lean_output_schemas(template)
    return tuple(template._tool_manager.list_tools())


def _lean_output_schemas(mcp: MCPServer) -> None:
    """Publish each tool's output schema in its cheap-to-validate form (output_schemas.lean). The SDK reads
    `fn_metadata.output_schema` live; results are still validated against the pydantic model."""
    for tool in mcp._tool_manager.list_tools():  # no public setter for a registered tool's schema
        meta = tool.fn_metadata
        if meta.output_schema is not None:
            meta.output_schema = output_schemas.lean(meta.output_schema)
