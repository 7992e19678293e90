"""The export and import tools: conversations as JSON or markdown, agents as Letta agent files."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field

from ..service.agent_files import AgentImport
from ..service.export_format import ConversationExport, ImportedConversationResult
from .tools import CREATE, READ, AgentId, ConvId, OptAgentId, app_of, tool_errors

ExportData = Annotated[
    dict[str, Any] | str,
    Field(description="The export: export_conversation's `data` object (or its whole result), or its JSON text"),
]
AgentFileData = Annotated[
    dict[str, Any] | str, Field(description="The Letta agent file (.af) as a JSON object, or its JSON text")
]


def register(mcp: MCPServer) -> None:
    @mcp.tool(annotations=READ)
    @tool_errors
    async def export_conversation(
        ctx: Context,
        conversation_id: ConvId,
        format: Annotated[
            Literal["json", "markdown"], Field(description="json: for import_conversation; markdown: a transcript")
        ] = "json",
    ) -> ConversationExport:
        """Export a whole conversation: its history, context window in prompt order, runs and the agent's
        memory blocks (json), or a readable transcript (markdown). Up to 5,000 messages; longer ones stream
        from GET /v1/conversations/{id}/export on the HTTP server."""
        return await app_of(ctx).portability.export_conversation(conversation_id, format)

    @mcp.tool(annotations=CREATE)
    @tool_errors
    async def import_conversation(
        ctx: Context, data: ExportData, agent_id: OptAgentId = None
    ) -> ImportedConversationResult:
        """Import an exported conversation as a new one (new ids; messages, order, times and context kept).
        Without agent_id: the export's agent if it exists here, else a new agent made from the export."""
        return await app_of(ctx).portability.import_conversation(data, agent_id)

    @mcp.tool(annotations=CREATE)
    @tool_errors
    async def import_agent(
        ctx: Context,
        data: AgentFileData,
        name: Annotated[str | None, Field(description="Name for the new agent; omit to keep the file's")] = None,
    ) -> AgentImport:
        """Import a Letta agent file (.af): a new agent with its system prompt, memory blocks and model, and its
        message history as a conversation. What this server does not run (custom tools, tool rules, sources,
        other agents of the file) is listed in `skipped`."""
        return await app_of(ctx).portability.import_agent(data, name)

    @mcp.tool(annotations=READ)
    @tool_errors
    async def export_agent(
        ctx: Context,
        agent_id: AgentId,
        conversation_id: Annotated[
            str | None, Field(description="The conversation whose messages go in; omit for the most recently active")
        ] = None,
    ) -> dict[str, Any]:
        """Export an agent as a Letta agent file (.af): the agent, its memory blocks and one conversation."""
        return await app_of(ctx).portability.export_agent(agent_id, conversation_id)
