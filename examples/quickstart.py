"""Quickstart: start mcp-server-conversations over stdio with the MCP Python client and walk through
what it does: an agent with memory, two parallel conversations sharing it, streaming replies, a fork,
a search over the pooled history, and clean-up.

    export OPENAI_API_KEY=sk-...                       # or the key your provider needs
    python examples/quickstart.py openai/gpt-5-mini    # any litellm model handle
    python examples/quickstart.py ollama/llama3.2      # a local model, no key

The server runs with a throw-away database unless you pass --db.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from typing import Any

from mcp import Client, StdioServerParameters


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="litellm model handle, e.g. openai/gpt-5-mini or anthropic/claude-haiku-4-5")
    p.add_argument("--db", help="SQLite file to use (default: a temporary one)")
    return p.parse_args(argv)


async def call(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    """Call a tool and return its structured result; a tool error stops the walkthrough with its message."""
    result = await client.call_tool(tool, args)
    if result.is_error:
        raise SystemExit(f"{tool} failed: {result.content[0].text}")
    return result.structured_content or {}


async def say(client: Client, conversation_id: str, text: str) -> str:
    """Send a message, printing the reply's deltas as they stream in (MCP progress notifications)."""
    print(f"\n[{conversation_id[:13]}…] user: {text}")
    print("assistant: ", end="", flush=True)
    streamed = False

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        nonlocal streamed
        if message and not message.startswith("[calling "):
            streamed = True
            print(message, end="", flush=True)

    result = await client.call_tool(
        "send_message", {"conversation_id": conversation_id, "content": text}, progress_callback=on_progress
    )
    if result.is_error:
        raise SystemExit(f"\nsend_message failed: {result.content[0].text}")
    reply = result.content[0].text
    print("" if streamed else reply)
    run = result.structured_content
    tools = [c["name"] for m in run["messages"] for c in m.get("tool_calls") or []]
    print(
        f"  (run {run['run_id'][:12]}…: {run['status']}, model {run['model']}, "
        f"{run['usage']['total_tokens'] if run['usage'] else 0} tokens, tools used: {tools or 'none'})"
    )
    return reply


async def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    db = args.db or os.path.join(tempfile.mkdtemp(prefix="conversations-"), "quickstart.db")
    server = StdioServerParameters(
        command=sys.executable,
        args=["-m", "mcp_server_conversations", "--db", db, "--model", args.model],
        env=dict(os.environ),  # the server needs the provider's key / base URL from this environment
    )
    async with Client(server, mode="legacy") as client:
        print(f"connected to {client.server_info.name} {client.server_info.version} (database {db})")

        agent = await call(
            client,
            "create_agent",
            name="quickstart",
            model=args.model,
            memory_blocks=[
                {"label": "persona", "value": "I am a friendly assistant who keeps notes about the user."},
                {"label": "human", "value": "", "description": "Facts about the user; keep it up to date."},
            ],
        )
        print(f"agent {agent['id']} with memory blocks {[b['label'] for b in agent['memory_blocks']]}")

        first = await call(client, "create_conversation", agent_id=agent["id"], summary="pottery")
        second = await call(client, "create_conversation", agent_id=agent["id"], summary="small talk")
        print(f"two conversations: {first['id']} and {second['id']}")

        await say(client, first["id"], "Hi! I'm Ada and my pottery class starts next Tuesday. Please remember that.")
        agent = await call(client, "get_agent", agent_id=agent["id"])
        human = next(b["value"] for b in agent["memory_blocks"] if b["label"] == "human")
        print(f"\nshared memory block 'human' now reads: {human!r}")

        await say(client, second["id"], "What do you know about me so far?")

        fork = await call(client, "fork_conversation", conversation_id=first["id"])
        print(f"\nforked {first['id']} into {fork['id']} (it starts with the same context)")
        await say(client, fork["id"], "Let's talk about glazes instead.")

        found = await call(client, "conversation_search", agent_id=agent["id"], query="when is the pottery class?")
        print(f"\nsearch 'when is the pottery class?' -> {len(found['results'])} result(s):")
        for hit in found["results"][:3]:
            print(f"  {hit['role']:9} in {hit['conversation_id'][:13]}…: {hit['snippet']}")

        listed = await call(client, "list_messages", conversation_id=fork["id"])
        print(f"\nthe fork's history has {len(listed['messages'])} messages (inherited ones first)")

        for conv in (fork, second, first):
            await call(client, "delete_conversation", conversation_id=conv["id"])
        await call(client, "delete_agent", agent_id=agent["id"])
        remaining = await call(client, "list_conversations", agent_id=None)
        print(
            f"deleted the conversations and the agent; the default agent has {len(remaining['conversations'])}"
            " conversation(s)"
        )
    print("done")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
