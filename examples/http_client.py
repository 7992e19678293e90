"""Talk to mcp-server-conversations over MCP's streamable HTTP transport, printing the reply's
deltas as they arrive (they come as MCP progress notifications on the response's SSE stream).

    export CONVERSATIONS_AUTH_TOKEN=...        # if the server was started with a token
    mcp-server-conversations --transport streamable-http --model openai/gpt-5-mini &
    python examples/http_client.py "Remember that I like pottery."
    python examples/http_client.py --conversation conv-... "What do I like?"
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("message", help="what to say")
    p.add_argument("--url", default="http://127.0.0.1:8283/mcp", help="the server's MCP endpoint")
    p.add_argument(
        "--token",
        default=os.environ.get("CONVERSATIONS_AUTH_TOKEN"),
        help="bearer token (default: $CONVERSATIONS_AUTH_TOKEN)",
    )
    p.add_argument("--conversation", help="continue this conversation (default: start a new one)")
    p.add_argument("--model", help="override the model for this message, e.g. anthropic/claude-haiku-4-5")
    return p.parse_args(argv)


async def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    # The SDK's HTTP client is httpx2; no read timeout, since a long turn may be quiet between deltas.
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=None)) as http:
        async with Client(streamable_http_client(args.url, http_client=http)) as client:
            conversation_id = args.conversation
            if conversation_id is None:
                created = await client.call_tool("create_conversation", {})
                if created.is_error:
                    print(created.content[0].text, file=sys.stderr)
                    return 1
                conversation_id = created.structured_content["id"]
                print(f"conversation {conversation_id}", file=sys.stderr)

            async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                if message:  # one text delta (or a tool call starting), as the model produces it
                    print(message, end="", flush=True)

            call = {"conversation_id": conversation_id, "content": args.message}
            if args.model:
                call["override_model"] = args.model
            result = await client.call_tool("send_message", call, progress_callback=on_progress)
            print()
            if result.is_error:
                print(result.content[0].text, file=sys.stderr)
                return 1
            run = result.structured_content or {}
            usage = run.get("usage") or {}
            print(
                f"[run {run.get('id') or run.get('run_id')}: {run.get('status')}, {run.get('stop_reason')}, "
                f"model {run.get('model')}, {usage.get('total_tokens')} tokens]",
                file=sys.stderr,
            )
    return 0


def leaves(error: BaseException) -> list[BaseException]:
    """The SDK reports connection failures (401, refused) inside exception groups: find the causes."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    return [error]


if __name__ == "__main__":
    try:
        raise SystemExit(asyncio.run(main()))
    except (Exception, BaseExceptionGroup) as e:  # noqa: B014 - a group may hold non-Exceptions
        causes = "; ".join(str(leaf) or type(leaf).__name__ for leaf in leaves(e))
        print(f"http_client: could not talk to the server: {causes}", file=sys.stderr)
        raise SystemExit(1) from None
