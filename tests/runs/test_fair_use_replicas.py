"""Fair use across server processes (HTTP replicas on one PostgreSQL database): a principal's cap holds
for its runs on every replica together, another principal's runs are not held behind them, and the
slots of a replica killed mid-run come free for the survivors."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import threading
from contextlib import AsyncExitStack, ExitStack
from typing import Any

import pytest
from fake_provider import FakeProvider
from http_helpers import CONSOLE_SCRIPT, console_env, mcp_client, spawned_http_server
from pg_helpers import TestDatabase

pytestmark = [pytest.mark.slow, pytest.mark.processes]

HANG_GUARD = 120  # seconds: only so a broken server fails the test instead of hanging it


@pytest.fixture(params=["postgres"])
def backend(request: pytest.FixtureRequest) -> str:  # several processes on one database: PostgreSQL's case
    return str(request.param)


def create_token(db: str, name: str) -> str:
    done = subprocess.run(
        [CONSOLE_SCRIPT, "tokens", "--db", db, "create", name], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def replicas(stack: ExitStack, url: str, provider: FakeProvider, token: str, n: int, *flags: str) -> list[Any]:
    env = console_env(**provider.env())
    args = ("--stateless", "--model", "openai/fake", "--max-runs-per-principal", "2", *flags)
    headers = {"Authorization": f"Bearer {token}"}
    return [stack.enter_context(spawned_http_server(url, *args, env=env, headers=headers)) for _ in range(n)]


async def ok(client: Any, tool: str, args: dict[str, Any] | None = None) -> Any:
    result = await client.call_tool(tool, args or {})
    assert not result.is_error, result.content
    return result.structured_content


async def statuses(client: Any, runs: list[dict[str, Any]]) -> list[str]:
    return [(await ok(client, "get_run", {"run_id": r["id"]}))["status"] for r in runs]


async def until(check: Any, within: float = HANG_GUARD) -> None:
    async def loop() -> None:
        while True:
            if await check():
                return
            await asyncio.sleep(0.2)

    await asyncio.wait_for(loop(), within)


async def test_a_principals_cap_holds_across_two_replicas_and_others_run_beside_it(
    pg_database: TestDatabase, fake_provider: FakeProvider
) -> None:
    alice, bob = create_token(pg_database.url, "alice"), create_token(pg_database.url, "bob")
    texts = [f"x{i}" for i in range(6)]
    gates = {t: threading.Event() for t in texts}
    for t, gate in gates.items():
        fake_provider.enqueue(f"reply to {t}", when=t, wait_for=gate)
    with ExitStack() as stack:
        one, two = replicas(stack, pg_database.url, fake_provider, alice, 2)
        async with AsyncExitStack() as clients:
            a1 = await clients.enter_async_context(mcp_client(one.mcp_url, token=alice))
            a2 = await clients.enter_async_context(mcp_client(two.mcp_url, token=alice))
            b2 = await clients.enter_async_context(mcp_client(two.mcp_url, token=bob))
            runs = []
            for i, t in enumerate(texts):
                client = (a1, a2)[i % 2]
                conv = (await ok(client, "create_conversation"))["id"]
                runs.append(
                    await ok(client, "send_message", {"conversation_id": conv, "content": t, "background": True})
                )
            await fake_provider.await_requests(2)
            await asyncio.sleep(1.0)  # both replicas keep looking for a slot meanwhile
            assert len(fake_provider.requests) == 2
            assert sorted(await statuses(a1, runs)) == ["queued"] * 4 + ["running"] * 2

            own = (await ok(b2, "create_conversation"))["id"]
            done = await asyncio.wait_for(ok(b2, "send_message", {"conversation_id": own, "content": "bob's"}), 60)
            assert done["status"] == "completed"

            # One slot frees at a time, so the next run in send order must take it (two freed at once
            # would start two runs whose model calls may reach the provider in either order).
            for i, t in enumerate(texts):
                before = len(fake_provider.requests)
                gates[t].set()
                if i + 2 < len(texts):
                    await fake_provider.await_requests(before + 1, within=30)
            await until(lambda: _all(a2, runs, "completed"))
    alice_calls = [r for r in fake_provider.requests if r.last_user in gates]
    assert [r.last_user for r in alice_calls][2:] == texts[2:]  # freed slots went in send order
    assert max_at_once(alice_calls) == 2


async def test_the_slots_of_a_killed_replica_come_free(pg_database: TestDatabase, fake_provider: FakeProvider) -> None:
    alice = create_token(pg_database.url, "alice")
    stuck = threading.Event()
    for t in ("d0", "d1"):
        fake_provider.enqueue("never sent", when=t, wait_for=stuck)
    try:
        with ExitStack() as stack:
            doomed, survivor = replicas(stack, pg_database.url, fake_provider, alice, 2, "--run-sweep-interval", "0.5")
            async with mcp_client(doomed.mcp_url, token=alice) as a, mcp_client(survivor.mcp_url, token=alice) as b:
                convs = [(await ok(b, "create_conversation"))["id"] for _ in range(3)]
                held = [
                    await ok(a, "send_message", {"conversation_id": c, "content": t, "background": True})
                    for c, t in zip(convs, ("d0", "d1"), strict=False)
                ]
                waiting = await ok(b, "send_message", {"conversation_id": convs[2], "content": "w", "background": True})
                await fake_provider.await_requests(2)
                assert waiting["status"] == "queued"
                doomed.proc.send_signal(signal.SIGKILL)
                doomed.proc.wait()
                await until(lambda: _all(b, [waiting], "completed"), 60)
                assert await statuses(b, held) == ["interrupted", "interrupted"]
    finally:
        stuck.set()


async def _all(client: Any, runs: list[dict[str, Any]], status: str) -> bool:
    return await statuses(client, runs) == [status] * len(runs)


def max_at_once(requests: list[Any]) -> int:
    edges = sorted([(r.started_at, 1) for r in requests] + [(r.finished_at, -1) for r in requests])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most
