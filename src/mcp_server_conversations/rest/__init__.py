"""Letta's REST API under /v1 (issue 6): `routes(app)` returns the Starlette routes."""

from __future__ import annotations

from starlette.routing import BaseRoute

from ..app import App


def routes(app: App) -> list[BaseRoute]:
    """The /v1 routes, translated onto the same services as the MCP tools."""
    return []
