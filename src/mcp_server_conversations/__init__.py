"""mcp-server-conversations: Letta-style conversations for any MCP client."""

__version__ = "0.1.0"
