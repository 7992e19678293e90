"""`mcp-server-conversations copy SOURCE TARGET`: SQLite to PostgreSQL and back gives the same agents,
blocks, conversations (forks included), histories, contexts, runs, embeddings and named tokens, ids and
timestamps kept, and search works on arrival; a target holding data is refused."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from pg_helpers import TestDatabase
from test_stdio_e2e import SCRIPT

from mcp_server_conversations.storage import NewMessage, Store, open_store


@pytest.fixture(params=["postgres"])
def backend(request: pytest.FixtureRequest) -> str:  # the copy goes through PostgreSQL
    return str(request.param)


async def fill(store: Store) -> dict[str, Any]:
    agent = await store.create_agent(
        name="potter",
        model="openai/x",
        system="sys",
        context_window_limit=9000,
        blocks=[
            {"label": "human", "value": "likes clay", "limit": 100},
            {"label": "persona", "value": "helpful", "limit": 100, "read_only": True},
        ],
        principal="token:potter",
    )
    await store.ensure_default_agent(name="default", system="s", blocks=[], principal="oauth:someone")
    await store.edit_block_value(agent.id, "human", lambda b: "likes clay and glaze", changed_by={"tool": "t"})
    conv = await store.create_conversation(agent.id, model=None, summary="s", system_text="system text")
    await store.append_messages(
        conv.id,
        [
            NewMessage("user_message", "user", content="the kiln fired the glazed bowls"),
            NewMessage("assistant_message", "assistant", content="lovely pottery", reasoning="thinking of ceramics"),
            NewMessage(
                "tool_call_message",
                "assistant",
                tool_calls=[{"tool_call_id": "t1", "name": "memory_append", "arguments": '{"x": "vase"}'}],
            ),
        ],
    )
    await store.create_run("run-1", conv.id, agent.id, status="queued", idempotency_key="key-1", owner="o")
    done = [NewMessage("assistant_message", "assistant", content="done", run_id="run-1")]
    await store.finish_run(
        "run-1", conv.id, {"status": "completed", "stop_reason": "end_turn"}, abandon=False, append=done
    )
    fork = await store.fork_conversation(conv.id, None, "fork system")
    await store.append_messages(fork.id, [NewMessage("user_message", "user", content="only in the fork")])
    await store.save_embeddings(
        "emb", [(m.id, 2, b"\x00\x00\x80?\x00\x00\x00\x00") for m in (await store.context_messages(conv.id))[1:2]]
    )
    await store.create_token("alice", "a" * 64)
    await store.create_token("bob", "b" * 64)
    await store.revoke_token("bob")
    await store.touch_tokens({"a" * 64: "2026-01-02T03:04:05.000000Z"})
    return {"agent": agent.id, "convs": [conv.id, fork.id]}


async def snapshot(store: Store, ids: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"agent": (await store.get_agent(ids["agent"])).model_dump()}
    out["principal"] = await store.principal_of("agent", ids["agent"])  # owners travel with their agents
    out["default"] = await store.default_agent_id("oauth:someone")
    out["local"] = await store.list_agents(10, None)
    for conv in ids["convs"]:
        history, _ = await store.list_history(conv, limit=100, after=None, desc=False, types=None, include_system=True)
        out[conv] = {
            "conversation": (await store.get_conversation(conv)).model_dump(),
            "history": [m.model_dump() for m in history],
            "context": [m.id for m in await store.context_messages(conv)],
        }
    history = await store.block_history(ids["agent"], "human", limit=10, before=None)
    assert history is not None
    out["block_history"] = [v.model_dump() for v in history[1]]
    out["run"] = (await store.get_run("run-1")).model_dump()
    out["key"] = await store.run_by_idempotency_key(ids["convs"][0], "key-1")
    out["tokens"] = await store.list_tokens(include_revoked=True)
    out["token_names"] = [await store.token_name(h * 64) for h in "ab"]
    out["vectors"] = await store.load_vectors(ids["agent"], "emb", 2)
    hits = await store.search(
        agent_id=ids["agent"],
        terms=["pottery", "vase"],
        roles=None,
        start=None,
        end=None,
        conversation_id=None,
        limit=10,
    )
    out["search"] = sorted(h.message_id for h in hits)
    return out


def copy(source: str | Path, target: str | Path) -> subprocess.CompletedProcess[str]:
    assert SCRIPT
    return subprocess.run([SCRIPT, "copy", str(source), str(target)], capture_output=True, text=True, timeout=120)


async def test_sqlite_to_postgres_and_back_keeps_everything(tmp_path: Path, pg_database: TestDatabase) -> None:
    source = await open_store(tmp_path / "source.db")
    try:
        ids = await fill(source)
        before = await snapshot(source, ids)
    finally:
        await source.close()
    assert len(before["search"]) == 2 and before["vectors"][0]
    assert before["principal"] == "token:potter" and before["default"] and before["local"] == []

    done = copy(tmp_path / "source.db", pg_database.url)
    assert done.returncode == 0, done.stderr
    assert "copy: messages: " in done.stderr and "copy: done" in done.stderr  # progress on stderr
    assert done.stdout == ""
    pg = await open_store(pg_database.url)
    try:
        assert await snapshot(pg, ids) == before
        more = await pg.append_messages(ids["convs"][0], [NewMessage("user_message", "user", content="after")])
        assert more[0].content == "after"  # new keys come after the copied ones
    finally:
        await pg.close()

    back = copy(pg_database.url, tmp_path / "back.db")
    assert back.returncode == 0, back.stderr
    again = await open_store(tmp_path / "back.db")
    try:
        after = await snapshot(again, ids)
        for conv in ids["convs"][:1]:  # the conversation written to after the first copy
            after[conv]["history"] = after[conv]["history"][:-1]
            after[conv]["context"] = after[conv]["context"][:-1]
            after[conv]["conversation"]["message_count"] -= 1
        assert after == before
    finally:
        await again.close()


async def test_a_target_with_data_is_refused(tmp_path: Path, pg_database: TestDatabase) -> None:
    source = await open_store(tmp_path / "source.db")
    await fill(source)
    await source.close()
    assert copy(tmp_path / "source.db", pg_database.url).returncode == 0
    again = copy(tmp_path / "source.db", pg_database.url)
    assert again.returncode == 1 and "not empty" in again.stderr
    assert copy(tmp_path / "missing.db", tmp_path / "new.db").returncode == 1
