"""Three server processes (stateless HTTP replicas, as behind a load balancer) on one PostgreSQL
database: concurrent sends to one conversation through all three come out as whole turns in the
order the runs were queued, and the runs of a replica killed with SIGKILL end `interrupted` within
the dead-run sweep's interval."""

from __future__ import annotations

import asyncio
import signal
from contextlib import ExitStack
from typing import Any

import pytest
from fake_provider import FakeProvider
from http_helpers import console_env, mcp_client, spawned_http_server
from pg_helpers import TestDatabase

pytestmark = [pytest.mark.slow, pytest.mark.processes]

SENDS = 30
HANG_GUARD = 120  # seconds: only so a broken server fails the test instead of hanging it


@pytest.fixture(params=["postgres"])
def backend(request: pytest.FixtureRequest) -> str:  # several processes on one database: PostgreSQL's case
    return str(request.param)


def replicas(stack: ExitStack, url: str, provider: FakeProvider, n: int, *flags: str) -> list[Any]:
    env = console_env(**provider.env())
    return [
        stack.enter_context(
            spawned_http_server(
                url, "--stateless", "--allow-unauthenticated", "--model", "openai/fake", *flags, env=env
            )
        )
        for _ in range(n)
    ]


async def ok(client: Any, tool: str, args: dict[str, Any] | None = None) -> Any:
    result = await client.call_tool(tool, args or {})
    assert not result.is_error, result.content
    return result.structured_content


async def test_thirty_concurrent_sends_through_three_replicas_keep_whole_turns_in_order(
    pg_database: TestDatabase, fake_provider: FakeProvider
) -> None:
    fake_provider.default_chunk_delay = 0.002
    with ExitStack() as stack:
        servers = replicas(stack, pg_database.url, fake_provider, 3)
        async with (
            mcp_client(servers[0].mcp_url) as a,
            mcp_client(servers[1].mcp_url) as b,
            mcp_client(servers[2].mcp_url) as c,
        ):
            clients = (a, b, c)
            conv = (await ok(a, "create_conversation"))["id"]
            sends = [
                ok(
                    clients[i % 3],
                    "send_message",
                    {"conversation_id": conv, "content": f"message {i}", "background": True},
                )
                for i in range(SENDS)
            ]
            runs = await asyncio.wait_for(asyncio.gather(*sends), HANG_GUARD)
            by_run = {r["id"]: f"message {i}" for i, r in enumerate(runs)}

            async def ended() -> None:
                while True:
                    status = [(await ok(b, "get_run", {"run_id": r["id"]}))["status"] for r in runs]
                    if all(s == "completed" for s in status):
                        return
                    assert not [s for s in status if s not in ("queued", "running", "completed")], status
                    await asyncio.sleep(0.2)

            await asyncio.wait_for(ended(), HANG_GUARD)
            history = (await ok(c, "list_messages", {"conversation_id": conv, "limit": 1000}))["messages"]
    pairs = [(m["role"], m["content"]) for m in history]
    assert len(pairs) == 2 * SENDS
    users = [content for role, content in pairs[0::2] if role == "user"]
    assert sorted(users) == sorted(by_run.values())
    for (role, content), (reply_role, reply) in zip(pairs[0::2], pairs[1::2], strict=True):
        assert (role, reply_role, reply) == ("user", "assistant", f"Fake reply to: {content}")  # whole turns
    assert fake_provider.max_in_flight == 1  # one conversation: never two model calls at once
    assert pg_database.rows("SELECT count(*) FROM turns")[0][0] == 0


async def test_sends_queued_through_three_replicas_run_in_the_order_sent(
    pg_database: TestDatabase, fake_provider: FakeProvider
) -> None:
    import threading

    gate = threading.Event()
    fake_provider.enqueue("first", wait_for=gate)  # the first turn holds the conversation while the rest queue
    with ExitStack() as stack:
        servers = replicas(stack, pg_database.url, fake_provider, 3)
        async with (
            mcp_client(servers[0].mcp_url) as a,
            mcp_client(servers[1].mcp_url) as b,
            mcp_client(servers[2].mcp_url) as c,
        ):
            clients = (a, b, c)
            conv = (await ok(a, "create_conversation"))["id"]
            runs = []
            for i in range(12):
                runs.append(
                    await ok(
                        clients[i % 3],
                        "send_message",
                        {"conversation_id": conv, "content": f"m{i}", "background": True},
                    )
                )
                if i == 0:
                    await fake_provider.await_requests(1)
            gate.set()

            async def ended() -> None:
                while True:
                    status = [(await ok(b, "get_run", {"run_id": r["id"]}))["status"] for r in runs]
                    if all(s == "completed" for s in status):
                        return
                    await asyncio.sleep(0.2)

            await asyncio.wait_for(ended(), HANG_GUARD)
            history = (await ok(c, "list_messages", {"conversation_id": conv, "limit": 1000}))["messages"]
    assert [m["content"] for m in history if m["role"] == "user"] == [f"m{i}" for i in range(12)]


async def test_the_runs_of_a_killed_replica_end_interrupted(
    pg_database: TestDatabase, fake_provider: FakeProvider
) -> None:
    import threading

    gate = threading.Event()
    fake_provider.enqueue("never sent", wait_for=gate)
    try:
        with ExitStack() as stack:
            doomed, survivor = replicas(stack, pg_database.url, fake_provider, 2, "--run-sweep-interval", "0.5")
            async with mcp_client(doomed.mcp_url) as a, mcp_client(survivor.mcp_url) as b:
                conv = (await ok(b, "create_conversation"))["id"]
                run = await ok(a, "send_message", {"conversation_id": conv, "content": "hi", "background": True})
                await fake_provider.await_requests(1)
                doomed.proc.send_signal(signal.SIGKILL)
                doomed.proc.wait()

                async def interrupted() -> dict[str, Any]:
                    while True:
                        got = await ok(b, "get_run", {"run_id": run["id"]})
                        if got["status"] != "running":
                            return got
                        await asyncio.sleep(0.1)

                ended = await asyncio.wait_for(interrupted(), 30)
                assert (ended["status"], ended["stop_reason"]) == ("interrupted", "interrupted")
                text = await ok(b, "send_message", {"conversation_id": conv, "content": "again"})
                assert text["messages"][-1]["content"] == "Fake reply to: again"  # the turn is free
    finally:
        gate.set()
