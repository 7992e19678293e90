"""Fair use per principal: at most --max-runs-per-principal runs execute at once per principal; more wait
`queued` (never rejected) and start in the order they were sent across the principal's conversations;
another principal is never held behind them; the cap holds for two servers on one database; a run waiting
for a slot while it holds its conversation's turn never deadlocks with that turn."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fake_provider import FakeProvider
from mcp import Client
from runtime_helpers import call, db_rows, eventually

from mcp_server_conversations import principals
from mcp_server_conversations.app import App, open_app
from mcp_server_conversations.config import Settings
from mcp_server_conversations.mcp.server import build_server

ALICE, BOB = principals.for_token("alice"), principals.for_token("bob")
HANG_GUARD = 60  # seconds: a deadlock fails the test instead of hanging it


class As:
    """An in-memory MCP client whose calls act for `principal` (entered around each call, as a transport
    enters the principal of each request)."""

    def __init__(self, client: Client, principal: str) -> None:
        self.client, self.principal = client, principal

    async def call(self, tool: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        with principals.acting_as(self.principal):
            return await call(self.client, tool, args)


@asynccontextmanager
async def client_for(app: App, settings: Settings, principal: str) -> AsyncIterator[As]:
    async with Client(build_server(settings, shared=app)) as c:
        yield As(c, principal)


async def new_conversation(c: As) -> str:
    return (await c.call("create_conversation"))["id"]


def statuses(settings: Settings, run_ids: list[str]) -> list[str]:
    by_id = {r["id"]: r["status"] for r in db_rows(settings, "SELECT id, status FROM runs")}
    return [by_id[r] for r in run_ids]


def gated(fake: FakeProvider, texts: list[str]) -> dict[str, threading.Event]:
    """Replies held until the test releases them, each paired with its message by content."""
    gates = {t: threading.Event() for t in texts}
    for t, gate in gates.items():
        fake.enqueue(f"reply to {t}", when=t, wait_for=gate)
    return gates


def max_at_once(requests: list[Any]) -> int:
    """The most of these model calls that were in flight at one time."""
    edges = sorted([(r.started_at, 1) for r in requests] + [(r.finished_at, -1) for r in requests])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


async def send(c: As, conv: str, text: str) -> dict[str, Any]:
    return await c.call("send_message", {"conversation_id": conv, "content": text, "background": True})


async def test_past_the_cap_runs_wait_queued_and_start_in_send_order_while_others_run(
    fake_provider: FakeProvider, model_settings: Settings
) -> None:
    settings = model_settings.model_copy(update={"max_runs_per_principal": 2})
    texts = [f"m{i}" for i in range(5)]
    gates = gated(fake_provider, texts)
    async with open_app(settings) as app, AsyncExitStack() as stack:
        alice = await stack.enter_async_context(client_for(app, settings, ALICE))
        bob = await stack.enter_async_context(client_for(app, settings, BOB))
        convs = [await new_conversation(alice) for _ in range(3)]
        runs = [await send(alice, convs[i % 3], t) for i, t in enumerate(texts)]  # c0 c1 c2 c0 c1
        assert [r["status"] for r in runs] == ["running", "running", "queued", "queued", "queued"]
        ids = [r["id"] for r in runs]
        await fake_provider.await_requests(2)
        await asyncio.sleep(0.3)  # the queued ones keep looking meanwhile
        assert sorted(r.last_user for r in fake_provider.requests) == ["m0", "m1"]
        assert statuses(settings, ids) == ["running", "running", "queued", "queued", "queued"]
        assert (await alice.call("get_run", {"run_id": ids[2]}))["status"] == "queued"
        assert db_rows(settings, "SELECT DISTINCT principal FROM runs")[0][0] == ALICE

        # Another principal is not held behind them: its send runs at once, to the end.
        own = await new_conversation(bob)
        done = await asyncio.wait_for(
            bob.call("send_message", {"conversation_id": own, "content": "bob's"}), HANG_GUARD
        )
        assert done["status"] == "completed"
        assert statuses(settings, ids) == ["running", "running", "queued", "queued", "queued"]

        # Each freed slot goes to the earliest-sent waiting run, whichever conversation it is in
        # (m3 is next in m0's conversation, but m2 was sent first).
        for released, started in ((0, "m2"), (1, "m3"), (2, "m4")):
            gates[texts[released]].set()
            await eventually(lambda s=started: s in [r.last_user for r in fake_provider.requests], f"{started} starts")
            await asyncio.sleep(0.2)
            alice_calls = [r.last_user for r in fake_provider.requests if r.last_user != "bob's"]
            assert alice_calls[-1] == started
            assert statuses(settings, ids).count("running") == 2
        for gate in gates.values():
            gate.set()

        async def all_completed() -> bool:
            return statuses(settings, ids) == ["completed"] * 5

        await eventually(all_completed, "every run to complete", HANG_GUARD)
    alice_calls = [r.last_user for r in fake_provider.requests if r.last_user != "bob's"]
    assert sorted(alice_calls[:2]) == texts[:2] and alice_calls[2:] == texts[2:]
    assert fake_provider.max_in_flight == 3  # alice's two, and bob's beside them


async def test_a_run_waiting_for_a_slot_can_be_cancelled_and_the_next_one_goes(
    fake_provider: FakeProvider, model_settings: Settings
) -> None:
    settings = model_settings.model_copy(update={"max_runs_per_principal": 1})
    gates = gated(fake_provider, ["first"])
    async with open_app(settings) as app, client_for(app, settings, ALICE) as alice:
        a, b, c = [await new_conversation(alice) for _ in range(3)]
        first = await send(alice, a, "first")
        second = await send(alice, b, "second")
        third = await send(alice, c, "third")
        assert (second["status"], third["status"]) == ("queued", "queued")
        cancelled = await alice.call("cancel_run", {"run_id": second["id"]})
        assert cancelled["status"] == "cancelled"
        gates["first"].set()
        await eventually(lambda: statuses(settings, [first["id"], third["id"]]) == ["completed"] * 2, "the rest")
    assert [r.last_user for r in fake_provider.requests] == ["first", "third"]  # the cancelled one never ran


async def test_runs_holding_their_turn_while_waiting_for_a_slot_never_deadlock(
    fake_provider: FakeProvider, model_settings: Settings
) -> None:
    """Runs queued behind a conversation's turn and runs holding a turn while waiting for a slot, across
    conversations, sent in bursts (some admitted idle, some queued at once), and a compaction on demand
    waiting for a turn meanwhile: all end, never more than the cap at the model."""
    settings = model_settings.model_copy(update={"max_runs_per_principal": 2})
    fake_provider.default_chunk_delay = 0.03
    async with open_app(settings) as app, client_for(app, settings, ALICE) as alice:
        convs = [await new_conversation(alice) for _ in range(4)]
        burst = [send(alice, convs[i % 4], f"b{i}") for i in range(16)]
        runs = await asyncio.wait_for(asyncio.gather(*burst), HANG_GUARD)
        compaction = asyncio.create_task(alice.call("compact_conversation", {"conversation_id": convs[1]}))
        ids = [r["id"] for r in runs]
        await eventually(lambda: statuses(settings, ids) == ["completed"] * 16, "every run to end", HANG_GUARD)
        await asyncio.wait_for(compaction, HANG_GUARD)
    runs_in_flight = max_at_once([r for r in fake_provider.requests if r.last_user in {f"b{i}" for i in range(16)}])
    assert 1 <= runs_in_flight <= 2  # the cap itself is shown exactly above; here: that nothing got stuck
    assert db_rows(settings, "SELECT count(*) FROM turns")[0][0] == 0


async def test_the_cap_holds_for_two_servers_on_one_database(
    fake_provider: FakeProvider, model_settings: Settings
) -> None:
    settings = model_settings.model_copy(update={"max_runs_per_principal": 2})
    texts = [f"x{i}" for i in range(6)]
    gates = gated(fake_provider, texts)
    async with open_app(settings) as one, open_app(settings) as two, AsyncExitStack() as stack:
        a = await stack.enter_async_context(client_for(one, settings, ALICE))
        b = await stack.enter_async_context(client_for(two, settings, ALICE))
        convs = [await new_conversation(a) for _ in range(6)]
        runs = [await send((a, b)[i % 2], convs[i], t) for i, t in enumerate(texts)]
        ids = [r["id"] for r in runs]
        await fake_provider.await_requests(2)
        await asyncio.sleep(0.5)  # both servers keep looking for a slot meanwhile
        assert len(fake_provider.requests) == 2
        assert sorted(statuses(settings, ids)) == ["queued"] * 4 + ["running"] * 2
        for t in texts:
            gates[t].set()
            await asyncio.sleep(0.05)
        await eventually(lambda: statuses(settings, ids) == ["completed"] * 6, "every run to end", HANG_GUARD)
    assert fake_provider.max_in_flight == 2


async def test_a_freed_slot_goes_to_the_earliest_sent_run_even_in_another_server(
    fake_provider: FakeProvider, model_settings: Settings
) -> None:
    """The run sent later, in the conversation whose turn just came free in the same server, is woken first;
    the slot still goes to the earlier one, waiting in the other server."""
    settings = model_settings.model_copy(update={"max_runs_per_principal": 1})
    gates = gated(fake_provider, ["first"])
    async with open_app(settings) as one, open_app(settings) as two, AsyncExitStack() as stack:
        a = await stack.enter_async_context(client_for(one, settings, ALICE))
        b = await stack.enter_async_context(client_for(two, settings, ALICE))
        busy, waiting = await new_conversation(a), await new_conversation(a)
        runs = [await send(b, busy, "first"), await send(a, waiting, "second"), await send(b, busy, "third")]
        await fake_provider.await_requests(1)
        await asyncio.sleep(0.5)  # "second" is between two looks at its slot when "first" ends
        gates["first"].set()
        ids = [r["id"] for r in runs]
        await eventually(lambda: statuses(settings, ids) == ["completed"] * 3, "every run to end", HANG_GUARD)
    assert [r.last_user for r in fake_provider.requests] == ["first", "second", "third"]
