"""Letta's run routes: /v1/runs (list), /v1/runs/{id} (retrieve), /v1/runs/{id}/stream (re-attach).

A client whose stream dropped re-attaches from the last `seq_id` it saw: while this process keeps
the run's feed (the run streams here, or ended less than sse.RETAIN ago) the stream continues
exactly after that chunk; otherwise (another process's run, or after a restart) what the run has
stored is sent whole, then its live events, as the conversation's /stream route does."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ..app import App
from ..errors import ValidationError
from ..models import UNFINISHED, Run
from . import shapes, sse
from .common import LettaBody, json_response, page_by_id, parse_body, parse_query, resolve_conversation, route

STATUSES = {
    "created": "queued",
    "running": "running",
    "completed": "completed",
    "failed": "failed",
    "cancelled": "cancelled",
}
LIMIT_MAX = 1000


class RunsQuery(LettaBody):
    conversation_id: str | None = None
    agent_id: str | None = None
    statuses: list[str] | None = None
    active: bool = False
    order: Literal["asc", "desc"] = "desc"
    ascending: bool | None = None
    after: str | None = None
    before: str | None = None
    limit: int = 100


class RunStream(LettaBody):
    starting_after: int | None = None
    include_pings: bool = False
    batch_size: int | None = None


class ConversationStream(RunStream):
    run_id: str | None = None
    otid: str | None = None
    agent_id: str | None = None


def run_state(r: Run) -> dict[str, Any]:
    """Letta's Run: its statuses are created, running, completed, failed and cancelled."""
    status = {"queued": "created", "interrupted": "cancelled"}.get(r.status, r.status)
    stop = shapes.stop_reason(r)["stop_reason"] if r.status not in UNFINISHED else None
    usage = r.usage.model_dump() if r.usage else None
    return {
        "id": r.id,
        "agent_id": r.agent_id,
        "conversation_id": r.conversation_id,
        "status": status,
        "stop_reason": stop,
        "created_at": r.created_at,
        "completed_at": r.completed_at,
        "background": True,
        "metadata": {"error": r.error} if r.error else {},
        "model": r.model,
        "usage": usage,
    }


async def list_runs(app: App, request: Request) -> Response:
    q = parse_query(request, RunsQuery)
    if not 1 <= q.limit <= LIMIT_MAX:
        raise ValidationError("limit", f"must be between 1 and {LIMIT_MAX} (got {q.limit})")
    wanted = ["created", "running"] if q.active else q.statuses
    bad = [s for s in wanted or [] if s not in STATUSES]
    if bad:
        raise ValidationError("statuses", f"{bad[0]!r} is not a run status; use {', '.join(STATUSES)}")
    ours = (
        sorted({STATUSES[s] for s in wanted} | ({"interrupted"} if "cancelled" in wanted else set()))
        if wanted
        else None
    )
    conv = q.conversation_id
    if conv is not None:
        conv = await resolve_conversation(app, conv, q.agent_id)
    order = "asc" if q.ascending else q.order
    runs = await app.service.list_runs(
        conversation_id=conv, agent_id=q.agent_id, statuses=ours, limit=LIMIT_MAX, desc=order == "desc"
    )
    page = page_by_id(
        list(reversed(runs)) if order == "desc" else runs, after=q.after, before=q.before, limit=q.limit, order=order
    )
    return json_response([run_state(r) for r in page])


async def get_run(app: App, request: Request) -> Response:
    return json_response(run_state(await app.runtime.get_run(request.path_params["run_id"])))


def attach(app: App, run: Run, include_pings: bool, after: int | None) -> StreamingResponse:
    """The run's stream again: after `after` from its feed when this process keeps it, else whole."""
    started: asyncio.Future[Run] = asyncio.get_running_loop().create_future()
    started.set_result(run)
    feed = sse.feed_of(app, run.id)
    if feed is not None:
        first = feed.opts or sse.StreamOptions()
        opts = sse.StreamOptions(first.stream_tokens, include_pings, first.types)
        body = sse.stream_body(app, started, feed, opts, lambda _: False, source=feed.follow(), after=after or 0)
    else:
        opts = sse.StreamOptions(include_pings=include_pings)
        body = sse.stream_body(app, started, sse.Feed(), opts, lambda _: True, subscribe=True)
    return StreamingResponse(body, media_type="text/event-stream", headers=sse.STREAM_HEADERS)


async def stream_run(app: App, request: Request) -> Response:
    body = await parse_body(request, RunStream)
    run = await app.runtime.get_run(request.path_params["run_id"])
    return attach(app, run, body.include_pings, body.starting_after)


def routes(app: App) -> list[Route]:
    return [
        route(app, "/runs", list_runs, "GET"),
        route(app, "/runs/", list_runs, "GET"),
        route(app, "/runs/{run_id}", get_run, "GET"),
        route(app, "/runs/{run_id}/stream", stream_run, "POST"),
    ]
