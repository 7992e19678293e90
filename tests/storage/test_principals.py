"""Agents belong to principals, on both backends: earlier data migrates to `local`, each principal gets
exactly one default agent however many callers race, lists and runs never reach past the principal,
and `principal_of` names the owner of every kind of id."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from foundation_helpers import sql_write
from pg_helpers import TestDatabase, base_dsn, run_sync

from mcp_server_conversations.config import Settings, is_database_url
from mcp_server_conversations.storage import NewMessage, Store, open_store
from mcp_server_conversations.storage import schema as sqlite_schema
from mcp_server_conversations.storage.postgres import schema as pg_schema

A, B = "token:alice", "oauth:bob"


@pytest.fixture
def blank_db(settings: Settings, tmp_path: Path) -> Iterator[str]:
    """A database no release has opened yet: a new file, or a new PostgreSQL database."""
    if not is_database_url(settings.db):
        yield str(tmp_path / "old.db")
        return
    fresh = TestDatabase(base_dsn()[0] or "")

    async def create() -> None:
        conn = await asyncpg.connect(fresh.admin, timeout=5)
        try:
            await conn.execute(f'CREATE DATABASE "{fresh.name}"')
        finally:
            await conn.close()

    run_sync(create)
    try:
        yield fresh.url
    finally:
        fresh.drop()


async def test_data_of_earlier_releases_belongs_to_local(blank_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    module = pg_schema if is_database_url(blank_db) else sqlite_schema
    names = [name for name, _ in module.MIGRATIONS]
    before = module.MIGRATIONS[: names.index("m011_agent_principal")]
    with monkeypatch.context() as m:
        m.setattr(module, "MIGRATIONS", before)
        old = await open_store(blank_db)
        try:
            for agent_id, default in (("agent-old", 1), ("agent-older", 0)):
                await sql_write(
                    old,
                    "INSERT INTO agents (id, name, system, is_default, created_at) VALUES (?, 'x', 's', ?, ?)",
                    (agent_id, default, f"2020-01-0{default + 1}T00:00:00Z"),
                )
        finally:
            await old.close()
    store = await open_store(blank_db)
    try:
        assert await store.principal_of("agent", "agent-old") == "local"
        assert [a.id for a in await store.list_agents(10, None)] == ["agent-older", "agent-old"]
        assert await store.list_agents(10, None, principal=A) == []
        assert await store.default_agent_id() == "agent-old"
        assert await store.default_agent_id(A) is None
    finally:
        await store.close()


async def test_each_principal_gets_one_default_agent_however_many_race(settings: Settings) -> None:
    stores = [await open_store(settings.resolved_db()) for _ in range(2)]  # two pools / connections racing
    try:
        blocks = [{"label": "human", "value": "", "limit": 100}]
        made = await asyncio.gather(
            *(
                stores[i % 2].ensure_default_agent(name="default", system="s", blocks=blocks, principal=p)
                for i in range(12)
                for p in ("local", A, B)
            )
        )
        by_principal: dict[str, set[str]] = {}
        for i, agent_id in enumerate(made):
            by_principal.setdefault(("local", A, B)[i % 3], set()).add(agent_id)
        assert all(len(ids) == 1 for ids in by_principal.values()), by_principal
        ids = {p: ids.pop() for p, ids in by_principal.items()}
        assert len(set(ids.values())) == 3
        for p, agent_id in ids.items():
            assert await stores[0].default_agent_id(p) == agent_id
            assert (await stores[1].default_agent(p)).id == agent_id  # type: ignore[union-attr]
            assert await stores[0].principal_of("agent", agent_id) == p
            assert [b.label for b in (await stores[0].get_agent(agent_id)).memory_blocks] == ["human"]
    finally:
        for s in stores:
            await s.close()


async def make_owned(store: Store, principal: str) -> dict[str, str]:
    agent = await store.create_agent(
        name=principal,
        model=None,
        system="s",
        context_window_limit=None,
        blocks=[{"label": "human", "value": "", "limit": 100}],
        principal=principal,
    )
    conv = await store.create_conversation(agent.id, model=None, summary=None, system_text="s")
    msg = (await store.append_messages(conv.id, [NewMessage("user_message", "user", content="hi")]))[0]
    run = f"run-{principal.replace(':', '-')}"
    await store.create_run(run, conv.id, agent.id, status="queued", idempotency_key="same-key", owner="o")
    return {
        "agent": agent.id,
        "conversation": conv.id,
        "message": msg.id,
        "run": run,
        "block": agent.memory_blocks[0].id,
    }


async def test_lists_and_runs_stay_within_the_principal_and_every_id_names_its_owner(store: Store) -> None:
    owned = {p: await make_owned(store, p) for p in (A, B)}
    for p, ids in owned.items():
        for kind, key in ids.items():
            assert await store.principal_of(kind, key) == p
        assert [a.id for a in await store.list_agents(10, None, principal=p)] == [ids["agent"]]
        runs = await store.list_runs(
            conversation_id=None, agent_id=None, statuses=None, limit=10, desc=True, principal=p
        )
        assert [r.id for r in runs] == [ids["run"]]
        target = await store.send_target(ids["conversation"], "same-key")
        assert target.principal == p and target.existing_run == ids["run"]  # keys are per conversation
    assert await store.principal_of("agent", "agent-missing") is None
    assert await store.principal_of("run", owned[A]["agent"]) is None  # an id of another kind names nothing
    everyone = await store.list_runs(conversation_id=None, agent_id=None, statuses=None, limit=10, desc=True)
    assert len(everyone) == 2  # without a principal: the process's own machinery (sweeps) sees every run
