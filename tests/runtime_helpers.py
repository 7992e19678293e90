"""Shared pieces of the runtime tests: MCP clients in both in-memory modes and small call helpers.

Its fixtures are registered for every test by tests/conftest.py. Open the client inside the test
(`async with connect() as c:`): the MCP client's task group must be entered and left in the same task,
which an async-generator fixture does not guarantee."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from typing import Any

import pytest
from fake_provider import FakeProvider
from mcp import Client

from mcp_server_conversations.config import Settings, is_database_url
from mcp_server_conversations.mcp.server import build_server

MODEL = "openai/fake-model"


@pytest.fixture
def model_settings(settings: Settings) -> Settings:
    """Settings with the fake model as the server default."""
    return settings.model_copy(update={"default_model": MODEL})


@pytest.fixture(params=["auto", "legacy"])
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def connect(model_settings: Settings, fake_provider: FakeProvider, mode: str) -> Callable[..., Client]:
    """Make an in-memory MCP client (in this test's mode) on a server with the fake model as default."""

    def make(settings: Settings | None = None) -> Client:
        return Client(build_server(settings or model_settings), mode=mode)

    return make


async def call(c: Client, tool: str, args: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    """Call a tool that must succeed; its structured content."""
    result = await c.call_tool(tool, args or {}, **kw)
    assert not result.is_error, result.content[0].text
    return result.structured_content


async def call_text(c: Client, tool: str, args: dict[str, Any] | None = None, **kw: Any) -> tuple[str, dict]:
    """Call a tool that must succeed; (its text, its structured content)."""
    result = await c.call_tool(tool, args or {}, **kw)
    assert not result.is_error, result.content[0].text
    return result.content[0].text, result.structured_content


async def call_error(c: Client, tool: str, args: dict[str, Any] | None = None) -> str:
    """Call a tool that must fail; its error text."""
    result = await c.call_tool(tool, args or {})
    assert result.is_error, result.structured_content
    return result.content[0].text


async def new_conversation(c: Client, **args: Any) -> str:
    return (await call(c, "create_conversation", args))["id"]


async def history(c: Client, conversation_id: str) -> list[dict[str, Any]]:
    return (await call(c, "list_messages", {"conversation_id": conversation_id, "limit": 1000}))["messages"]


async def eventually(check: Callable[[], Any], what: str, within: float = 20.0) -> Any:
    """Poll `check` (sync or async) until it returns something truthy; a liveness guard, not a timing assertion."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.01)


def db_rows(settings: Settings, sql: str, params: tuple = ()) -> list[Any]:
    """Read the server's database directly (a second reader, as WAL allows); on PostgreSQL, `?`
    placeholders become $n."""
    if is_database_url(settings.db):
        from pg_helpers import TestDatabase

        db = TestDatabase.__new__(TestDatabase)
        db.url = str(settings.db)
        return db.rows(sql, params)
    con = sqlite3.connect(settings.resolved_db())
    con.row_factory = sqlite3.Row
    try:
        return list(con.execute(sql, params))
    finally:
        con.close()


def db_exec(settings: Settings, sql: str, params: tuple = ()) -> None:
    """One statement written directly to the server's database (its own transaction)."""
    if is_database_url(settings.db):
        db_rows(settings, sql, params)
        return
    with sqlite3.connect(settings.resolved_db()) as con:
        con.execute(sql, params)
    con.close()


def run_ids(settings: Settings, conversation_id: str) -> list[str]:
    order = "seq" if is_database_url(settings.db) else "rowid"
    rows = db_rows(settings, f"SELECT id FROM runs WHERE conversation_id = ? ORDER BY {order}", (conversation_id,))
    return [r["id"] for r in rows]
