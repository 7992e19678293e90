"""Letta's REST API under /v1: `routes(app)` returns the Starlette routes.

The routes translate Letta's wire shapes and delegate to the same services as the MCP tools
(`app.service` for everything but model runs, `app.runtime` for runs); errors of our tree become
Letta's `{"detail": ...}` bodies in `common.error_response`. Auth, Host/Origin checks and the body
size limit are applied to the whole HTTP app by `http.py`."""

from __future__ import annotations

from starlette.routing import BaseRoute

from ..app import App
from . import agents, catalog, conversations, messages, portability, runs


def routes(app: App) -> list[BaseRoute]:
    """The /v1 routes, translated onto the same services as the MCP tools."""
    return [
        *portability.routes(app),  # before agents: /agents/import is not an agent id
        *agents.routes(app),
        *catalog.routes(app),
        *conversations.routes(app),
        *messages.routes(app),
        *runs.routes(app),
    ]
