"""Letta's conversation routes: /v1/conversations/ (create, list), /v1/conversations/{id} (retrieve,
update, delete) and its fork, cancel and compact actions."""

from __future__ import annotations

from typing import Literal

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..app import App
from ..models import Conversation
from . import shapes
from .agents import sent
from .common import LettaBody, conversation_id, json_response, parse_body, parse_query, route

SCAN = 1000  # conversations read at a time while filtering by summary


class CreateQuery(LettaBody):
    agent_id: str | None = None


class ConversationCreate(LettaBody):
    model: str | None = None
    summary: str | None = None


class ConversationUpdate(LettaBody):
    model: str | None = None
    summary: str | None = None


class CompactBody(LettaBody):
    agent_id: str | None = None


class ListQuery(LettaBody):
    agent_id: str | None = None
    order: Literal["asc", "desc"] = "desc"
    order_by: Literal["created_at", "last_run_completion"] = "created_at"
    after: str | None = None
    limit: int = 50
    summary_search: str | None = None


class ForkQuery(LettaBody):
    message_id: str | None = None


async def create_conversation(app: App, request: Request) -> Response:
    q = parse_query(request, CreateQuery)
    body = await parse_body(request, ConversationCreate)
    conv = await app.service.create_conversation(q.agent_id, body.model, body.summary)
    return json_response(shapes.conversation(conv))


async def list_conversations(app: App, request: Request) -> Response:
    q = parse_query(request, ListQuery)
    if not q.summary_search:
        page = await app.service.list_conversations(q.agent_id, q.order_by, q.order, q.limit, after_id=q.after)
        return json_response([shapes.conversation(c) for c in page.conversations])
    text, after = q.summary_search.lower(), q.after  # summaries containing the text, page by page
    found: list[Conversation] = []
    while len(found) < q.limit:
        page = await app.service.list_conversations(q.agent_id, q.order_by, q.order, SCAN, after_id=after)
        found += [c for c in page.conversations if text in (c.summary or "").lower()]
        if len(page.conversations) < SCAN:
            break
        after = page.conversations[-1].id
    return json_response([shapes.conversation(c) for c in found[: q.limit]])


async def get_conversation(app: App, request: Request) -> Response:
    conv = await app.service.get_conversation(await conversation_id(app, request))
    # Letta clients look for a tool call waiting for approval at the end of the context window.
    context = [m.id for m in await app.store.context_messages(conv.id)]
    return json_response(shapes.conversation(conv, context))


async def update_conversation(app: App, request: Request) -> Response:
    conv_id = await conversation_id(app, request)
    body = await parse_body(request, ConversationUpdate)
    conv = await app.service.update_conversation(conv_id, **sent(body, "model", "summary"))
    return json_response(shapes.conversation(conv))


async def delete_conversation(app: App, request: Request) -> Response:
    await app.service.delete_conversation(await conversation_id(app, request))
    return json_response(None)


async def fork_conversation(app: App, request: Request) -> Response:
    conv_id = await conversation_id(app, request)
    q = parse_query(request, ForkQuery)
    fork = await app.service.fork_conversation(conv_id, q.message_id)
    return json_response(shapes.conversation(fork))


async def cancel_conversation(app: App, request: Request) -> Response:
    """Cancel the conversation's queued and running runs: `{run_id: "cancelled"}` (empty if none)."""
    conv_id = await conversation_id(app, request)
    result: dict[str, str] = {}
    for run_id in await app.service.active_runs(conv_id):
        run = await app.runtime.cancel_run(run_id)
        result[run_id] = run.status
    return json_response(result)


async def compact_conversation(app: App, request: Request) -> Response:
    body = await parse_body(request, CompactBody)  # agent-direct mode names the agent here, as sends do
    result = await app.runtime.compact(await conversation_id(app, request, body.agent_id))
    return json_response(shapes.compaction(result))


def routes(app: App) -> list[Route]:
    item = "/conversations/{conversation_id}"
    return [
        route(app, "/conversations", list_conversations, "GET"),
        route(app, "/conversations/", list_conversations, "GET"),
        route(app, "/conversations", create_conversation, "POST"),
        route(app, "/conversations/", create_conversation, "POST"),
        route(app, item, get_conversation, "GET"),
        route(app, item, update_conversation, "PATCH"),
        route(app, item, delete_conversation, "DELETE"),
        route(app, item + "/fork", fork_conversation, "POST"),
        route(app, item + "/cancel", cancel_conversation, "POST"),
        route(app, item + "/compact", compact_conversation, "POST"),
    ]
