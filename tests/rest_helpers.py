"""Helpers for the Letta REST tests: the real HTTP server in-process, driven by letta-client.

letta-client's `Letta` is synchronous, and the server runs on the test's event loop, so each test
runs its SDK code (written as on Letta's docs page) in a worker thread: `await sdk(fn, base_url)`.
Every client validates every response strictly against the SDK's models."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from http_helpers import Served, serving
from letta_client import Letta

from mcp_server_conversations.config import Settings

TOKEN = "rest-test-token"
T = TypeVar("T")


def letta(base_url: str, **kwargs: Any) -> Letta:
    """A strict client: any response field the SDK requires but does not get raises."""
    kwargs.setdefault("max_retries", 0)
    kwargs.setdefault("api_key", TOKEN)
    return Letta(base_url=base_url, _strict_response_validation=True, **kwargs)


async def sdk(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run blocking SDK code off the event loop that serves it."""
    return await asyncio.to_thread(fn, *args, **kwargs)


@asynccontextmanager
async def rest_server(settings: Settings, **overrides: Any) -> AsyncIterator[Served]:
    """The real HTTP app (MCP + REST) with a bearer token and a default model (served by the fake
    provider when the test uses it), on a loopback port."""
    update = {"auth_token": TOKEN, "default_model": "openai/fake-model", **overrides}
    async with serving(settings.model_copy(update=update)) as served:
        yield served
