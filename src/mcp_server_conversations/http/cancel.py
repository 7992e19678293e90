"""A client that goes away cancels its requests, on every kind of MCP HTTP connection.

Per-request transports (stateless mode, 2026-07-28 requests) already cancel a tool call when
its HTTP connection drops. A stateful 2025-era session does not: the session outlives the
connection, so the SDK keeps running the tool and writes its result into the void. A
foreground `send_message` ends `cancelled` when its client goes away, so for a POST that carried
requests on a session, a disconnect before the response completed is turned into what a polite
client would have sent: `notifications/cancelled` for each of those request ids, on that session.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import anyio
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("mcp_server_conversations.http.app")

CANCEL_TIMEOUT = 5.0  # seconds for the in-process cancel notification; it normally takes milliseconds
DISCONNECT: Message = {"type": "http.disconnect"}


def request_ids(body: bytes) -> list[Any]:
    """The ids of the JSON-RPC requests (not notifications or responses) in a POST body."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return []
    items = parsed if isinstance(parsed, list) else [parsed]
    return [m["id"] for m in items if isinstance(m, dict) and "method" in m and m.get("id") is not None]


class CancelOnDisconnect:
    """Wraps the app that serves `path`; see the module docstring."""

    def __init__(self, app: ASGIApp, path: str = "/mcp") -> None:
        self.app, self.path = app, path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.path:
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        session = headers.get(b"mcp-session-id")
        version = headers.get(b"mcp-protocol-version", b"").decode("latin-1")
        if session is None or (version and version not in HANDSHAKE_PROTOCOL_VERSIONS):
            return await self.app(scope, receive, send)  # per-request transport: the SDK cancels itself

        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # gone before the body arrived: nothing started
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        ids = request_ids(bytes(body))
        first: list[Message] = [{"type": "http.request", "body": bytes(body), "more_body": False}]
        if not ids:
            return await self.app(scope, _replay(first, receive), send)

        completed = False
        gone = asyncio.Event()

        async def tracking_send(message: Message) -> None:
            nonlocal completed
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                completed = True
            await send(message)

        async def app_receive() -> Message:
            if first:
                return first.pop()
            await gone.wait()
            return DISCONNECT

        async def watch() -> None:
            # uvicorn answers this receive when the client leaves or once the response is complete.
            await receive()
            gone.set()
            if not completed:
                with anyio.CancelScope(shield=True), anyio.move_on_after(CANCEL_TIMEOUT):
                    for request_id in ids:
                        await self._cancel(scope, session, version, request_id)

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            await self.app(scope, app_receive, tracking_send)
            if not gone.is_set():  # answered, or ended by the server itself (shutdown): no client to mourn
                tg.cancel_scope.cancel()

    async def _cancel(self, scope: Scope, session: bytes, version: str, request_id: Any) -> None:
        log.info("client left before request %r completed: cancelling it", request_id)
        note = {
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": {"requestId": request_id, "reason": "client disconnected"},
        }
        data = json.dumps(note).encode()
        headers = [
            (b"host", dict(scope["headers"]).get(b"host", b"127.0.0.1")),
            (b"content-type", b"application/json"),
            (b"accept", b"application/json, text/event-stream"),
            (b"content-length", str(len(data)).encode()),
            (b"mcp-session-id", session),
        ]
        if version:
            headers.append((b"mcp-protocol-version", version.encode("latin-1")))
        internal = {**scope, "headers": headers}
        sent = [{"type": "http.request", "body": data, "more_body": False}]

        async def receive() -> Message:
            if sent:
                return sent.pop()
            await anyio.sleep_forever()
            raise AssertionError  # unreachable

        async def discard(_: Message) -> None:
            return None

        await self.app(internal, receive, discard)


def _replay(first: list[Message], receive: Receive) -> Receive:
    async def replayed() -> Message:
        return first.pop() if first else await receive()

    return replayed
