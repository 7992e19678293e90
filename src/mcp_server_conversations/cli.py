"""Command line: flags override CONVERSATIONS_* environment variables; logs go to stderr."""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from typing import Any

import anyio

from . import __version__


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="mcp-server-conversations",
        description="An MCP server with Letta-style conversations. Every flag also reads CONVERSATIONS_<FLAG>.",
        epilog="Other commands: `copy SOURCE TARGET` (one database into another), `tokens create|list|revoke` "
        "(named bearer tokens; see `tokens --help`).",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("--transport", choices=["stdio", "streamable-http"], help="default: stdio")
    p.add_argument("--db", help="SQLite file (default: under the user's data directory), or a postgresql:// URL")
    p.add_argument("--model", dest="default_model", help="default model handle, e.g. openai/gpt-5-mini")
    p.add_argument(
        "--models", nargs="*", help="more model handles to list for Letta clients (GET /v1/models/), e.g. a,b"
    )
    p.add_argument("--max-message-chars", type=int, help="largest accepted message (default 200000)")
    p.add_argument("--default-context-window", type=int, help="window for models litellm does not know")
    p.add_argument("--model-timeout", type=float, help="idle-read timeout of model calls in seconds")
    p.add_argument("--model-retries", type=int, help="retries of a failed model call (default 0)")
    p.add_argument("--embedding-model", help="embedding model handle for hybrid search")
    p.add_argument(
        "--rerank-model", help="reranker handle reordering search results, e.g. cohere/rerank-v3.5 (default: none)"
    )
    p.add_argument(
        "--rerank-timeout", type=float, help="seconds a search waits for the reranker, then answers without (default 2)"
    )
    p.add_argument("--memory-history-limit", type=int, help="versions kept per memory block (default 1000)")
    p.add_argument(
        "--run-sweep-interval",
        type=float,
        help="seconds between looks for runs of server processes that died (default 10)",
    )
    p.add_argument(
        "--max-runs-per-principal",
        type=int,
        help="runs executing at once per principal; more wait queued, in the order sent (default 8)",
    )
    p.add_argument("--host", help="HTTP bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="HTTP port (default 8283)")
    p.add_argument("--stateless", action="store_true", default=None, help="no MCP sessions (for replicas)")
    p.add_argument("--json-response", action="store_true", default=None, help="JSON instead of SSE responses")
    p.add_argument(
        "--auth-token",
        help="bearer token required on every HTTP request (visible in ps: "
        "prefer --auth-token-file or CONVERSATIONS_AUTH_TOKEN)",
    )
    p.add_argument("--auth-token-file", help="file holding the bearer token (surrounding whitespace ignored)")
    p.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        default=None,
        help="allow binding a non-loopback address without --auth-token",
    )
    p.add_argument("--oauth-issuer", help="accept JWT access tokens of this OAuth authorization server (URL)")
    p.add_argument("--public-url", help="the URL clients reach this server at (needed with --oauth-issuer)")
    p.add_argument("--oauth-audience", help="the aud claim access tokens must carry (default: --public-url)")
    p.add_argument("--oauth-required-scopes", help="scopes every access token must carry, e.g. conversations")
    p.add_argument("--allowed-hosts", nargs="*", help="extra Host header values to accept")
    p.add_argument("--allowed-origins", nargs="*", help="extra Origin header values to accept")
    p.add_argument("--max-body-bytes", type=int, help="largest HTTP request body (default 4 MiB)")
    p.add_argument("--request-timeout", type=float, help="seconds for a request's headers and body (default 30)")
    p.add_argument(
        "--rate-limit",
        type=int,
        help="HTTP requests per principal in any 60 s; beyond, 429 with Retry-After (default: no limit)",
    )
    p.add_argument("--log-level", help="DEBUG, INFO, WARNING (default) or ERROR")
    p.add_argument(
        "--debug-all",
        action="store_true",
        default=None,
        help="at DEBUG, also third-party libraries' debug logs (they include message text)",
    )
    return p.parse_args(argv)


def settings_from_args(args: argparse.Namespace) -> Any:
    from .config import Settings

    given = {k: v for k, v in vars(args).items() if v is not None}
    return Settings(**given)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["copy"]:
        raise SystemExit(copy_main(argv[1:]))
    if argv[:1] == ["tokens"]:
        from .named_tokens import tokens_command

        raise SystemExit(anyio.run(tokens_command, argv[1:]))
    args = parse_args(argv)
    try:
        settings = settings_from_args(args)
    except Exception as e:  # pydantic's message names the bad setting
        print(f"mcp-server-conversations: bad configuration: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log_level, settings.debug_all)
    if settings.transport == "streamable-http":
        from .http.app import serve_http

        serve_http(settings)
        return
    from .mcp.server import build_server

    server = build_server(settings)
    gc.freeze()  # the imports so far live as long as the process: spare the collector's full passes
    anyio.run(serve_stdio, server)


def copy_main(argv: list[str]) -> int:
    """`mcp-server-conversations copy SOURCE TARGET`: everything from one database into a new one."""
    p = argparse.ArgumentParser(
        prog="mcp-server-conversations copy",
        description="Copy every agent, conversation, message, run and embedding from SOURCE into the empty "
        "TARGET (each a SQLite file or a postgresql:// URL), ids and timestamps kept. Stop the servers first.",
    )
    p.add_argument("source")
    p.add_argument("target")
    args = p.parse_args(argv)
    from .copying import copy_databases

    return anyio.run(copy_databases, args.source, args.target)


def configure_logging(level: str, debug_all: bool = False) -> None:
    """Logs to stderr at `level`. At DEBUG only our own loggers (and uvicorn's) go below INFO unless
    `debug_all`: third-party debug logs carry message text and SQL parameters."""
    logging.basicConfig(stream=sys.stderr, level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if level == "DEBUG" and not debug_all:
        logging.getLogger().setLevel(logging.INFO)
        for name in ("mcp_server_conversations", "uvicorn"):
            logging.getLogger(name).setLevel(logging.DEBUG)


async def serve_stdio(server: Any) -> None:
    """MCPServer.run_stdio_async, over fast_stdio's loop-driven pipes where those are usable."""
    from .mcp.fast_stdio import serve_stdio as streams

    lowlevel = server._lowlevel_server  # what MCPServer.run_stdio_async drives
    try:
        async with streams() as (read_stream, write_stream):
            await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())
    except* (BrokenPipeError, ConnectionResetError):  # the client stopped reading: it is gone
        logging.getLogger("mcp_server_conversations").info("the client closed its end of stdout; exiting")
