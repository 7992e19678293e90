"""Transport: streamable HTTP. One Starlette app serving MCP at /mcp, Letta's REST API (rest/) under
/v1 and /healthz, behind the security guards (Host/Origin, bearer auth, body limits, timeouts)."""
