"""Letta's agent and memory-block routes: /v1/agents/…, /v1/agents/{id}/core-memory/blocks/…, /v1/blocks/{id}."""

from __future__ import annotations

from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..app import App
from ..errors import ValidationError
from ..models import Agent
from ..service.conversations import UNSET
from . import shapes
from .common import LettaBody, json_response, page_by_id, parse_body, parse_query, route


class BlockIn(LettaBody):
    label: str
    value: str = ""
    description: str | None = None
    limit: int | None = None
    read_only: bool = False


class AgentCreate(LettaBody):
    name: str | None = None
    model: str | None = None
    system: str | None = None
    memory_blocks: list[BlockIn] | None = None
    context_window_limit: int | None = None
    description: str | None = None
    tags: list[str] | None = None
    model_settings: dict[str, Any] | None = None


class AgentUpdate(AgentCreate):
    pass


LETTA_FIELDS = ("description", "tags", "model_settings")
UPDATABLE = ("name", "model", "system", "context_window_limit", *LETTA_FIELDS)
ALL_AGENTS_PAGE = 1000


class ListQuery(LettaBody):
    after: str | None = None
    before: str | None = None
    limit: int | None = None
    order: Literal["asc", "desc"] = "desc"


class AgentListQuery(ListQuery):
    name: str | None = None
    tags: list[str] | None = None
    match_all_tags: bool = False
    query_text: str | None = None


class BlockListQuery(ListQuery):
    order: Literal["asc", "desc"] = "asc"


class BlockUpdate(LettaBody):
    value: str | None = None
    description: str | None = None
    limit: int | None = None
    read_only: bool | None = None
    label: str | None = None
    expected_version: int | None = None  # ours: refuse the write (409) unless the block is at this version


class BlockUpdateQuery(LettaBody):
    expected_version: int | None = None  # the same, for clients that cannot add a body field


def sent(model: LettaBody, *names: str) -> dict[str, Any]:
    """The fields the client sent (explicit nulls included); omitted ones are UNSET, as in the MCP tools."""
    return {n: getattr(model, n) if n in model.model_fields_set else UNSET for n in names}


async def create_agent(app: App, request: Request) -> Response:
    body = await parse_body(request, AgentCreate)
    blocks = [b.model_dump() for b in body.memory_blocks or []]
    letta = {k: v for k, v in sent(body, *LETTA_FIELDS).items() if v is not UNSET}
    agent = await app.service.create_agent(
        body.name or "agent",
        body.model,
        body.system,
        blocks,
        body.context_window_limit,
        letta=letta,
        changed_by={"route": f"{request.method} {request.url.path}"},
    )
    return json_response(shapes.agent_state(agent, app.settings))


def matches(a: Agent, q: AgentListQuery) -> bool:
    """Letta's agent filters: exact name, tags (any, or all with match_all_tags), text in name or description."""
    if q.name is not None and a.name != q.name:
        return False
    if q.tags:
        have = set(a.tags)
        if not (have.issuperset(q.tags) if q.match_all_tags else have.intersection(q.tags)):
            return False
    if q.query_text:
        text = q.query_text.lower()
        return text in a.name.lower() or text in (a.description or "").lower()
    return True


async def list_agents(app: App, request: Request) -> Response:
    q = parse_query(request, AgentListQuery)
    if q.name is None and not q.tags and not q.query_text:
        page = await app.service.list_agents(q.limit or 50, order=q.order, after_id=q.after, before_id=q.before)
        return json_response([shapes.agent_state(a, app.settings) for a in page.agents])
    agents: list[Agent] = []  # filtered: agents are few; read them all, then page the matches by id
    after: str | None = None
    while True:
        page = await app.service.list_agents(ALL_AGENTS_PAGE, order="asc", after_id=after)
        agents += [a for a in page.agents if matches(a, q)]
        if len(page.agents) < ALL_AGENTS_PAGE:
            break
        after = page.agents[-1].id
    window = page_by_id(agents, after=q.after, before=q.before, limit=q.limit or 50, order=q.order)
    return json_response([shapes.agent_state(a, app.settings) for a in window])


async def get_agent(app: App, request: Request) -> Response:
    agent = await app.service.get_agent(request.path_params["agent_id"])
    return json_response(shapes.agent_state(agent, app.settings))


async def update_agent(app: App, request: Request) -> Response:
    body = await parse_body(request, AgentUpdate)
    fields = sent(body, *UPDATABLE)
    agent = await app.service.update_agent(request.path_params["agent_id"], **fields)
    return json_response(shapes.agent_state(agent, app.settings))


async def delete_agent(app: App, request: Request) -> Response:
    await app.service.delete_agent(request.path_params["agent_id"])
    return json_response(None)


async def list_blocks(app: App, request: Request) -> Response:
    q = parse_query(request, BlockListQuery)
    agent = await app.service.get_agent(request.path_params["agent_id"])
    blocks = page_by_id(agent.memory_blocks, after=q.after, before=q.before, limit=q.limit, order=q.order)
    return json_response([shapes.block(b) for b in blocks])


async def get_block(app: App, request: Request) -> Response:
    b = await app.service.get_block(request.path_params["agent_id"], request.path_params["label"])
    return json_response(shapes.block(b))


async def _update_block(app: App, request: Request, agent_id: str, label: str) -> Response:
    body = await parse_body(request, BlockUpdate)
    if body.label is not None and body.label != label:
        raise ValidationError("label", "renaming a block is not supported; create a block with the new label")
    fields = sent(body, "value", "description", "limit", "read_only")
    expected = body.expected_version
    if expected is None:
        expected = parse_query(request, BlockUpdateQuery).expected_version
    b = await app.service.update_memory_block(
        agent_id,
        label,
        expected_version=expected,
        changed_by={"route": f"{request.method} {request.url.path}"},
        **fields,
    )
    return json_response(shapes.block(b))


async def update_block(app: App, request: Request) -> Response:
    return await _update_block(app, request, request.path_params["agent_id"], request.path_params["label"])


async def get_block_by_id(app: App, request: Request) -> Response:
    _, b = await app.service.get_block_by_id(request.path_params["block_id"])
    return json_response(shapes.block(b))


async def update_block_by_id(app: App, request: Request) -> Response:
    agent_id, b = await app.service.get_block_by_id(request.path_params["block_id"])
    return await _update_block(app, request, agent_id, b.label)


def routes(app: App) -> list[Route]:
    blocks = "/agents/{agent_id}/core-memory/blocks"
    return [
        route(app, "/agents", list_agents, "GET"),
        route(app, "/agents/", list_agents, "GET"),
        route(app, "/agents", create_agent, "POST"),
        route(app, "/agents/", create_agent, "POST"),
        route(app, "/agents/{agent_id}", get_agent, "GET"),
        route(app, "/agents/{agent_id}", update_agent, "PATCH"),
        route(app, "/agents/{agent_id}", delete_agent, "DELETE"),
        route(app, blocks, list_blocks, "GET"),
        route(app, blocks + "/", list_blocks, "GET"),
        route(app, blocks + "/{label:path}", get_block, "GET"),
        route(app, blocks + "/{label:path}", update_block, "PATCH"),
        route(app, "/blocks/{block_id}", get_block_by_id, "GET"),
        route(app, "/blocks/{block_id}", update_block_by_id, "PATCH"),
    ]
