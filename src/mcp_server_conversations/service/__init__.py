"""Services: every operation the MCP tools and the REST API expose, validated once, over the Store."""
