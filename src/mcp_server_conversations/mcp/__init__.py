"""Transport: the MCP server. Tool registrations (typed inputs → one service or runtime call → a
pydantic model out), their cheap output schemas, and the fast stdio pipes."""
