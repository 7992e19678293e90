"""A full disk, for real (a small tmpfs, tests/full_disk_helpers.py): a run whose end cannot be stored
still ends (failed, its turn released, its input out of the next prompt, its end stored once there is
room again), and the server's storage failure is reported as the server's: 503 + Retry-After on REST,
a tool error saying the data could not be stored on MCP, and never `llm_api_error` in a stream."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from typing import Any

import httpx
from fake_provider import FakeProvider
from full_disk_helpers import SmallDisk
from mcp import Client
from rest_helpers import TOKEN, rest_server
from runtime_helpers import call, call_error, call_text, eventually, history, new_conversation

from mcp_server_conversations.config import Settings
from mcp_server_conversations.mcp.server import build_server

AUTH = {"Authorization": f"Bearer {TOKEN}"}
BOUND = 30.0  # bounds a wait that would otherwise hang a broken test; asserts nothing about speed
STORED = "could not store"


def stored_status(settings: Settings, run_id: str) -> str:
    with sqlite3.connect(settings.resolved_db()) as db:
        return db.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()[0]


def sent_contents(fake: FakeProvider) -> list[str]:
    """The non-system messages of the model's last request."""
    return [m["content"] for m in fake.requests[-1].messages[1:]]


async def test_a_run_whose_end_cannot_be_stored_ends_and_the_conversation_goes_on(
    small_disk: SmallDisk, fake_provider: FakeProvider
) -> None:
    settings = Settings(db=small_disk.path / "conversations.db", default_model="openai/fake-model")
    gate = threading.Event()
    async with Client(build_server(settings)) as c:
        conv = await new_conversation(c)
        await call(c, "send_message", {"conversation_id": conv, "content": "before"})
        fake_provider.enqueue("a reply the full disk loses", wait_for=gate)
        run = await call(c, "send_message", {"conversation_id": conv, "content": "stranded", "background": True})
        await fake_provider.await_requests(2)
        small_disk.fill()
        gate.set()
        ended = await eventually(lambda: _ended(c, run["id"]), "get_run to report an end", within=BOUND)
        assert ended["status"] == "failed" and ended["stop_reason"] == "error"
        assert STORED in ended["error"]
        cancelled = await asyncio.wait_for(call(c, "cancel_run", {"run_id": run["id"]}), BOUND)
        assert cancelled["status"] == "failed"  # answered from memory: nobody runs it, nothing to wait for
        # Still full: the server's fault, said so (not a causeless "Error executing tool").
        for tool, args in [
            ("send_message", {"conversation_id": conv, "content": "while full"}),
            ("create_conversation", {}),
            ("update_memory_block", {"label": "human", "value": "x" * 5000}),
        ]:
            text = await call_error(c, tool, args)
            assert STORED in text and "retry later" in text, (tool, text)
        small_disk.free()
        await eventually(lambda: stored_status(settings, run["id"]) == "failed", "the end to be stored", BOUND)
        stranded = next(m for m in await history(c, conv) if m["content"] == "stranded")
        assert stranded["is_err"] and not stranded["in_context"]
        text, after = await call_text(c, "send_message", {"conversation_id": conv, "content": "after"})
        assert after["status"] == "completed" and text == "Fake reply to: after"
    assert sent_contents(fake_provider) == ["before", "Fake reply to: before", "after"]


async def _ended(c: Client, run_id: str) -> dict[str, Any] | None:
    run = await call(c, "get_run", {"run_id": run_id})
    return run if run["status"] not in ("queued", "running") else None


async def test_rest_a_full_disk_is_503_with_retry_after_and_a_stream_ends_without_llm_api_error(
    small_disk: SmallDisk, fake_provider: FakeProvider
) -> None:
    settings = Settings(db=small_disk.path / "conversations.db")
    gate = threading.Event()
    async with rest_server(settings) as served:
        async with httpx.AsyncClient(base_url=served.base_url, headers=AUTH, timeout=BOUND) as http:
            agent = (await http.post("/v1/agents/", json={"name": "full"})).json()
            conv = (await http.post("/v1/conversations/", params={"agent_id": agent["id"]}, json={})).json()
            path = f"/v1/conversations/{conv['id']}/messages"
            fake_provider.enqueue("a reply the full disk loses", wait_for=gate)

            async def stream() -> list[dict[str, Any]]:
                body = {"messages": [{"role": "user", "content": "stranded"}]}
                async with http.stream("POST", path, json=body) as r:
                    assert r.status_code == 200
                    return [json.loads(line[6:]) async for line in r.aiter_lines() if line.startswith("data: {")]

            streaming = asyncio.create_task(stream())
            await fake_provider.await_requests(1)
            small_disk.fill()
            gate.set()
            chunks = await asyncio.wait_for(streaming, BOUND)
            (error,) = [c for c in chunks if c["message_type"] == "error_message"]
            assert error["error_type"] == "StorageUnavailableError" and STORED in error["message"]
            (stop,) = [c for c in chunks if c["message_type"] == "stop_reason"]
            assert stop["stop_reason"] == "error"
            r = await http.post(f"/v1/conversations/{conv['id']}/stream", json={"run_id": error["run_id"]})
            resumed = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
            assert [c["stop_reason"] for c in resumed if c["message_type"] == "stop_reason"] == ["error"]
            for method, url, kwargs in [
                ("POST", "/v1/agents/", {"json": {"name": "no room"}}),
                ("POST", "/v1/conversations/", {"params": {"agent_id": agent["id"]}, "json": {}}),
                ("POST", path, {"json": {"messages": [{"role": "user", "content": "while full"}]}}),
            ]:
                r = await http.request(method, url, **kwargs)
                assert r.status_code == 503, (url, r.status_code, r.text)
                assert r.headers["retry-after"].isdigit() and "x-should-retry" not in r.headers
                assert STORED in r.json()["detail"]
            small_disk.free()
            r = await http.post(path, json={"messages": [{"role": "user", "content": "after"}], "streaming": False})
            assert r.status_code == 200 and r.json()["stop_reason"]["stop_reason"] == "end_turn"
    assert sent_contents(fake_provider) == ["after"]  # the stranded input left the context first
