"""The model catalog (/v1/models/), health, and harmless answers to Letta Cloud's services.

Letta clients build their model list from `GET /v1/models/`: Letta Code cannot create an agent
without it. The list is what this server can serve: the configured default, the `--models` list
and every model an agent names. Cloud-only services (secrets, per-agent MCP servers, shared memory
repositories, base-tool installation, remote computers, credits and quotas) have nothing behind them
here; they answer empty or "not applicable", so clients go on without warnings or crashes."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import __version__
from ..app import App
from .common import LettaBody, json_response, parse_query, route
from .shapes import ENDPOINT_TYPES

# The Letta server version whose API this one answers like (Letta Code warns below 0.16.6).
LETTA_API_VERSION = "0.16.6"
AGENT_PAGE = 1000
PROVIDER_TYPES = {"lmstudio-chatcompletions": "lmstudio_openai"}  # where the two enums differ


class ModelsQuery(LettaBody):
    provider_name: str | None = None
    provider_type: str | None = None
    provider_category: list[str] | None = None


async def served_handles(app: App) -> list[str]:
    """The configured default, the --models list, then agents' own models; each once, in that order."""
    handles = [h for h in (app.settings.default_model, *app.settings.models) if h]
    after: str | None = None
    while True:
        page = await app.service.list_agents(AGENT_PAGE, order="asc", after_id=after)
        handles += [a.model for a in page.agents if a.model]
        if len(page.agents) < AGENT_PAGE:
            break
        after = page.agents[-1].id
    return list(dict.fromkeys(handles))


def model_entry(handle: str, window: int, max_output: int | None) -> dict[str, Any]:
    """One item of Letta's model list (the fields Letta's SDK and Letta Code read)."""
    provider, _, name = handle.partition("/")
    endpoint_type = ENDPOINT_TYPES.get(provider, "openai")
    return {
        "handle": handle,
        "name": name,
        "display_name": name,
        "model": name,
        "model_type": "llm",
        "provider_type": PROVIDER_TYPES.get(endpoint_type, endpoint_type),
        "provider_name": provider,
        "provider_category": "base",
        "model_endpoint_type": endpoint_type,
        "max_context_window": window,
        "context_window": window,
        "max_tokens": max_output,
    }


async def list_models(app: App, request: Request) -> Response:
    gateway = app.runtime.gateway
    await gateway.load()
    q = parse_query(request, ModelsQuery)
    items = []
    for handle in await served_handles(app):
        window, max_output = gateway.model_limits(handle)
        item = model_entry(handle, window, max_output)
        if all(
            v is None or item[k] == v
            for k, v in (("provider_name", q.provider_name), ("provider_type", q.provider_type))
        ) and (q.provider_category is None or item["provider_category"] in q.provider_category):
            items.append(item)
    return json_response(items)


async def health(app: App, request: Request) -> Response:
    return json_response({"status": "ok", "version": LETTA_API_VERSION, "server_version": __version__})


async def empty_list(app: App, request: Request) -> Response:
    return json_response([])


async def no_repositories(app: App, request: Request) -> Response:
    await app.service.get_agent(request.path_params["agent_id"])
    return json_response({"repositories": []})


async def agent_empty_list(app: App, request: Request) -> Response:
    await app.service.get_agent(request.path_params["agent_id"])
    return json_response([])


async def no_computers(app: App, request: Request) -> Response:
    return json_response({"connections": []})


async def balance(app: App, request: Request) -> Response:
    """No credits here: models run on the provider keys in the server's environment."""
    return json_response(
        {"billing_tier": "self-hosted (models use the server's own provider keys)", "total_balance": "no"}
    )


async def quotas(app: App, request: Request) -> Response:
    tier = {"bucket": "not applicable", "dailyBucket": None}
    return json_response({"lettaTier": tier, "quotaWindowEnd": "not applicable", "dailyQuotaWindowEnd": None})


def routes(app: App) -> list[Route]:
    agent = "/agents/{agent_id}"
    return [
        route(app, "/models", list_models, "GET"),
        route(app, "/models/", list_models, "GET"),
        route(app, "/health", health, "GET"),
        route(app, "/health/", health, "GET"),
        route(app, "/tools/add-base-tools", empty_list, "POST"),
        route(app, "/tools/add-base-tools/", empty_list, "POST"),
        route(app, agent + "/secrets", agent_empty_list, "GET"),
        route(app, agent + "/mcp-servers", agent_empty_list, "GET"),
        route(app, agent + "/repositories", no_repositories, "GET"),
        route(app, "/environments", no_computers, "GET"),
        route(app, "/metadata/balance", balance, "GET"),
        route(app, "/organizations/self/quotas", quotas, "GET"),
    ]
