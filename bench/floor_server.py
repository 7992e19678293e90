"""The latency baselines' stand-in: our MCP server plus, for each timed tool, a `prebuilt_<tool>`
that returns the reply that tool gave once, built before serving (no database, no models made
per call). A round trip to it is what the MCP SDK, the pipes and the client's parse cost for the
same bytes: the floor under each "server only" figure.

    python -m bench.floor_server DB CONVERSATION_ID
"""

from __future__ import annotations

import asyncio
import gc
import sys
from typing import Any

import anyio
from pydantic import BaseModel

from mcp_server_conversations.cli import parse_args, serve_stdio, settings_from_args
from mcp_server_conversations.mcp.server import _lean_output_schemas, build_server
from mcp_server_conversations.models import Conversation, ConversationList, MessageList

from .storage_bench import open_service


async def replies(db: str, conversation_id: str) -> dict[str, BaseModel]:
    """One reply of each timed tool, as bench/latency.py calls it."""
    store, service = await open_service(db)
    try:
        return {
            "get_conversation": await service.get_conversation(conversation_id),
            "create_conversation": await service.create_conversation(),
            "list_conversations": await service.list_conversations(limit=50),
            "list_messages": await service.list_messages(conversation_id, 100, None, "asc", None, False),
        }
    finally:
        await store.close()


def add_prebuilt(server: Any, name: str, reply: BaseModel) -> None:
    async def tool() -> Any:
        return reply

    tool.__annotations__["return"] = type(reply)  # the same output schema as the real tool
    server.tool(name=f"prebuilt_{name}", description=f"The reply {name} gave once, prebuilt.")(tool)


def main() -> None:
    db, conversation_id = sys.argv[1], sys.argv[2]
    built = asyncio.run(replies(db, conversation_id))
    assert isinstance(built["list_messages"], MessageList) and isinstance(built["list_conversations"], ConversationList)
    assert isinstance(built["get_conversation"], Conversation)
    server = build_server(settings_from_args(parse_args(["--db", str(db)])))
    for name, reply in built.items():
        add_prebuilt(server, name, reply)
    _lean_output_schemas(server)
    gc.freeze()
    anyio.run(serve_stdio, server)


if __name__ == "__main__":
    main()
