"""Two installed console scripts on one database file, as two desktop clients each spawning a stdio
server on the default file would run them: background sends to shared conversations from both, some
cancelled from the other process. Each conversation keeps its turns whole and in the order sent."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest
from fake_provider import FakeProvider
from mcp import Client, StdioServerParameters
from runtime_helpers import db_rows
from test_stdio_e2e import ENV, SCRIPT, ok

from mcp_server_conversations.config import Settings

pytestmark = [pytest.mark.slow, pytest.mark.processes]

SENDS = 24
HANG_GUARD = 90  # seconds: only so a broken server fails the test instead of hanging it


def server(db: Path | str, provider: FakeProvider) -> StdioServerParameters:
    assert SCRIPT, "the console script is not installed next to the test interpreter"
    return StdioServerParameters(
        command=SCRIPT, args=["--db", str(db), "--model", "openai/fake"], env={**ENV, **provider.env()}
    )


async def test_two_stdio_servers_share_conversations_in_order(settings: Settings, fake_provider: FakeProvider) -> None:
    rnd = random.Random(7)
    fake_provider.default_chunk_delay = 0.005  # echo replies, streamed slowly enough to overlap
    db = settings.resolved_db()
    async with Client(server(db, fake_provider), mode="legacy") as a, Client(server(db, fake_provider)) as b:
        clients = (a, b)
        convs = [(await ok(a, "create_conversation"))["id"] for _ in range(3)]
        sent: list[tuple[str, str, str, int]] = []  # (conversation, content, run id, index)
        for i in range(SENDS):
            conv, content = convs[rnd.randrange(3)], f"message {i} via {'ab'[i % 2]}"
            run = await ok(
                clients[i % 2], "send_message", {"conversation_id": conv, "content": content, "background": True}
            )
            sent.append((conv, content, run["id"], i))
            await asyncio.sleep(rnd.random() * 0.01)
        cancelled = set()
        for _, _, run_id, i in rnd.sample(sent, 6):  # each asked of the process that did not start it
            run = await asyncio.wait_for(ok(clients[(i + 1) % 2], "cancel_run", {"run_id": run_id}), HANG_GUARD)
            assert run["status"] in ("cancelled", "completed"), run
            if run["status"] == "cancelled":
                cancelled.add(run_id)

        async def ended() -> dict[str, Any]:
            while True:
                status = {rid: (await ok(a, "get_run", {"run_id": rid}))["status"] for _, _, rid, _ in sent}
                if all(s not in ("queued", "running") for s in status.values()):
                    return status
                await asyncio.sleep(0.2)

        status = await asyncio.wait_for(ended(), HANG_GUARD)
        unexpected = {rid: s for rid, s in status.items() if (s != "completed") != (rid in cancelled)}
        assert not unexpected, unexpected  # every run completed, except those cancel_run said it cancelled
        for conv in convs:
            history = (await ok(b, "list_messages", {"conversation_id": conv, "limit": 1000}))["messages"]
            kept = [(m["role"], m["content"]) for m in history if not m["is_err"]]
            completed = [content for c, content, rid, _ in sent if c == conv and status[rid] == "completed"]
            assert kept == [
                pair
                for content in completed
                for pair in (("user", content), ("assistant", f"Fake reply to: {content}"))
            ]
            stopped = [content for c, content, rid, _ in sent if c == conv and rid in cancelled]
            failed = [m["content"] for m in history if m["is_err"]]  # cancelled once running (queued: no trace)
            assert failed == [content for content in stopped if content in failed]
    assert db_rows(settings, "SELECT count(*) FROM turns")[0][0] == 0
    assert db_rows(settings, "SELECT count(*) FROM runs WHERE status IN ('queued', 'running')")[0][0] == 0
