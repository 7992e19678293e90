"""Letta's message routes: a conversation's messages (list; create -> SSE stream; resume the
stream) and /v1/messages/search."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ..app import App
from ..errors import NotFoundError, ValidationError
from ..models import Run
from ..util import now_iso
from . import runs, shapes, sse
from .common import LettaBody, conversation_id, json_response, parse_body, parse_query, resolve_conversation, route
from .inputs import ClientTool, ContentPart, MessageIn, check_pending, messages_of, text_of, tool_schemas
from .runs import ConversationStream

# How long a send may take to be accepted before the stream's headers go out anyway; it is
# normally milliseconds, and errors found by then (bad input, no model) get a proper status.
START_WAIT = 1.0
# How long an SDK retry of a message POST without otids can find the attempt it repeats.
RETRY_WINDOW = 600.0
OUR_TYPES = {
    "system_message",
    "user_message",
    "assistant_message",
    "reasoning_message",
    "tool_call_message",
    "tool_return_message",
    "summary_message",
}
STORED_AS = {"approval_request_message": "tool_call_message"}  # Letta's types we store as another


class ListQuery(LettaBody):
    after: str | None = None
    before: str | None = None
    limit: int = 100
    order: Literal["asc", "desc"] = "desc"
    order_by: Literal["created_at"] = "created_at"
    include_return_message_types: list[str] | None = None


class MessageCreate(LettaBody):
    messages: list[MessageIn] | None = None
    input: str | list[ContentPart] | None = None
    agent_id: str | None = None  # with conversation "default"
    override_model: str | None = None
    max_steps: int | None = None
    stream_tokens: bool = False
    streaming: bool | None = None  # unset: a stream on conversation routes, JSON on the agent route (Letta's)
    include_pings: bool = False
    include_return_message_types: list[str] | None = None
    client_tools: list[ClientTool] | None = None


class SearchBody(LettaBody):
    query: str
    agent_id: str | None = None
    conversation_id: str | None = None
    limit: int = 50
    start_date: str | None = None
    end_date: str | None = None


def inputs(body: MessageCreate) -> tuple[list[dict[str, Any]], list[str]]:
    """The send's inputs as `[{role, content, ...}]` (tool results first), and their otids."""
    if body.messages:
        return messages_of(body.messages)
    if body.input is not None:
        return [{"role": "user", "content": text_of(body.input, "input")}], []
    raise ValidationError("messages", "give at least one message, e.g. messages=[{role: 'user', content: 'hi'}]")


def otid_key(otids: list[str]) -> str:
    """The idempotency key of a send with these otids, hashed: a key's length is bounded, otids' not."""
    return "otid:" + hashlib.sha256("\0".join(otids).encode()).hexdigest()


def idempotency_key(app: App, request: Request, conv_id: str, raw: bytes, otids: list[str]) -> str:
    """The run's idempotency key. Letta's otids are the client's own key. Without them, an SDK retry
    (`x-stainless-retry-count` > 0, the same body) reuses the key of the attempt it repeats, so a
    timeout followed by the SDK's automatic re-POST never stores the turn twice."""
    if otids:
        return otid_key(otids)
    recent = app.rest.recent_sends
    now = time.monotonic()
    for fp, (_, at) in list(recent.items()):
        if now - at > RETRY_WINDOW:
            del recent[fp]
    fingerprint = hashlib.sha256(conv_id.encode() + b"\0" + raw).hexdigest()
    retry = request.headers.get("x-stainless-retry-count", "0").strip() not in ("", "0")
    if retry and fingerprint in recent:
        return recent[fingerprint][0]
    key = f"rest:{uuid.uuid4()}"
    recent[fingerprint] = (key, now)
    return key


def letta_types(types: list[str] | None) -> set[str] | None:
    return None if types is None else set(types)


async def target(app: App, request: Request, agent_id: str | None = None) -> str:
    """The conversation a message route addresses: the path's, or on the agent-direct routes
    (/v1/agents/{id}/messages) the agent's default conversation (or the one `conversation_id` names)."""
    if "conversation_id" in request.path_params:
        return await conversation_id(app, request, agent_id)
    conv = request.query_params.get("conversation_id") or "default"
    return await resolve_conversation(app, conv, request.path_params["agent_id"])


async def list_messages(app: App, request: Request) -> Response:
    conv_id = await target(app, request)
    q = parse_query(request, ListQuery)
    wanted = letta_types(q.include_return_message_types)
    ours = sorted({STORED_AS.get(t, t) for t in wanted} & OUR_TYPES) if wanted is not None else None
    if ours == []:
        await app.service.get_conversation(conv_id)
        return json_response([])
    page = await app.service.list_messages(
        conv_id,
        q.limit,
        order=q.order,
        message_types=ours,
        include_system=bool(ours and "system_message" in ours),
        after_id=q.after,
        before_id=q.before,
    )
    items = [shapes.message(m) for m in page.messages]
    return json_response([i for i in items if wanted is None or i["message_type"] in wanted])


async def send_message(app: App, request: Request) -> Response:
    """Start a run and stream it, or wait for it and answer JSON (`streaming: false`, the agent route's default)."""
    body = await parse_body(request, MessageCreate)
    conv_id = await target(app, request, body.agent_id)
    messages, otids = inputs(body)
    client_tools = tool_schemas(body.client_tools)
    await app.service.get_conversation(conv_id)
    key = idempotency_key(app, request, conv_id, await request.body(), otids)
    if not otids or await app.store.run_by_idempotency_key(conv_id, key) is None:  # a repeat joins its run
        await check_pending(app, conv_id, messages)
    feed = sse.Feed()
    kwargs: dict[str, Any] = {"max_steps": body.max_steps} if body.max_steps is not None else {}
    t0 = now_iso()
    started = asyncio.create_task(
        app.runtime.send(
            conv_id,
            messages=messages,
            override_model=body.override_model,
            idempotency_key=key,
            background=True,
            listener=feed.listener,
            client_tools=client_tools,
            **kwargs,
        )
    )
    await asyncio.wait({started}, timeout=START_WAIT)
    if started.done():
        started.result()  # our errors found before the run starts get a proper status

    def replay(run: Run) -> bool:
        return run.created_at < t0  # the run of an earlier attempt with the same idempotency key

    opts = sse.StreamOptions(body.stream_tokens, body.include_pings, letta_types(body.include_return_message_types))
    streaming = body.streaming if body.streaming is not None else "conversation_id" in request.path_params
    if not streaming:
        final = await sse.wait_for_end(app, started)
        translate = sse.Translator(sse.StreamOptions(types=opts.types))
        shaped = [shapes.message(m) for m in final.messages]
        msgs = [m for m in shaped if translate.wanted(m["message_type"])]
        return json_response({"messages": msgs, "stop_reason": shapes.stop_reason(final), "usage": shapes.usage(final)})
    return StreamingResponse(
        sse.stream_body(app, started, feed, opts, replay), media_type="text/event-stream", headers=sse.STREAM_HEADERS
    )


async def resume_stream(app: App, request: Request) -> Response:
    """Re-attach to a run: the given one, else the one the send with this `otid` started, else the
    conversation's newest active run; after `starting_after` when this process keeps its feed."""
    body = await parse_body(request, ConversationStream)
    conv_id = await conversation_id(app, request, body.agent_id)
    await app.service.owners.check("conversation", conv_id)  # its idempotency keys are its principal's
    run_id = body.run_id
    if run_id is None and body.otid is not None:
        run_id = await app.store.run_by_idempotency_key(conv_id, otid_key([body.otid]))
        if run_id is None:
            raise NotFoundError("run with otid", body.otid)
    if run_id is None:
        active = await app.service.active_runs(conv_id)
        if not active:
            raise ValidationError("run_id", f"conversation {conv_id} has no active run to stream")
        run_id = active[-1]
    run = await app.runtime.get_run(run_id)
    if run.conversation_id != conv_id:
        raise ValidationError("run_id", f"run {run_id} belongs to conversation {run.conversation_id}")
    return runs.attach(app, run, body.include_pings, body.starting_after)


async def search_messages(app: App, request: Request) -> Response:
    """One agent's (or conversation's) messages; without either, every agent's (Letta's --all-agents)."""
    body = await parse_body(request, SearchBody)
    limit = body.limit
    # Tool calls and returns have no member in Letta's result union: ask for spare results to drop them.
    fetch = min(100, limit * 2) if 1 <= limit <= 100 else limit  # out of range: the service says so
    agents: list[str | None] = [body.agent_id]
    if body.agent_id is None and body.conversation_id is None:
        agents = await every_agent(app)
    results = []
    for agent_id in agents or [None]:
        found = await app.service.search(
            body.query, agent_id, body.conversation_id, None, body.start_date, body.end_date, fetch
        )
        results += [(r, agent_id) for r in found.results]
    results.sort(key=lambda pair: -pair[0].score)  # one index's scores: comparable across agents
    items = [i for r, agent_id in results if (i := shapes.search_result(r, agent_id)) is not None]
    return json_response(items[:limit])


async def every_agent(app: App) -> list[str | None]:
    ids: list[str | None] = []
    after: str | None = None
    while True:
        page = await app.service.list_agents(1000, order="asc", after_id=after)
        ids += [a.id for a in page.agents]
        if len(page.agents) < 1000:
            return ids
        after = page.agents[-1].id


async def get_message(app: App, request: Request) -> Response:
    """Letta answers a message id with the message's variants (one here)."""
    m = await app.service.get_message(request.path_params["message_id"])
    return json_response([shapes.message(m)])


def routes(app: App) -> list[Route]:
    item = "/conversations/{conversation_id}"
    return [
        route(app, item + "/messages", list_messages, "GET"),
        route(app, item + "/messages/", list_messages, "GET"),
        route(app, item + "/messages", send_message, "POST"),
        route(app, item + "/messages/", send_message, "POST"),
        route(app, item + "/stream", resume_stream, "POST"),
        route(app, "/agents/{agent_id}/messages", list_messages, "GET"),
        route(app, "/agents/{agent_id}/messages", send_message, "POST"),
        route(app, "/messages/search", search_messages, "POST"),
        route(app, "/messages/search/", search_messages, "POST"),
        route(app, "/messages/{message_id}", get_message, "GET"),
    ]
