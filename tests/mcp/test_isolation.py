"""Isolation through the real MCP client: principal B, given principal A's ids, gets for every tool
exactly what an unknown id gets, and the database is unchanged; B's lists and searches (the tool, and
the agent's own conversation_search inside B's run) never show A's data; each has its own default agent.

Each principal's client talks to its own server task opened while acting for it (stdio's way: a
server process acts for one principal); over HTTP the principal comes from the credential
(tests/http/test_isolation_http.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fake_provider import FakeProvider
from isolation_helpers import SECRET, UNKNOWN, Owned, as_unknown, snapshot
from mcp import Client
from runtime_helpers import call, call_error

from mcp_server_conversations import principals
from mcp_server_conversations.app import App, open_app
from mcp_server_conversations.config import Settings
from mcp_server_conversations.mcp.server import build_server

A, B = principals.for_token("alice"), principals.for_oauth("bob")


@asynccontextmanager
async def client_for(app: App, settings: Settings, principal: str) -> AsyncIterator[Client]:
    with principals.acting_as(principal):
        async with Client(build_server(settings, shared=app), mode="auto") as client:
            yield client


async def make_owned(c: Client, fake: FakeProvider) -> Owned:
    """What A makes: an agent with a block, a conversation with a run (idempotency key), a fork and a
    conversation of A's default agent."""
    agent = await call(c, "create_agent", {"name": "a", "memory_blocks": [{"label": "human", "value": "A"}]})
    conv = (await call(c, "create_conversation", {"agent_id": agent["id"]}))["id"]
    fake.enqueue(f"noted: {SECRET}")
    run = await call(
        c, "send_message", {"conversation_id": conv, "content": f"{SECRET} plans", "idempotency_key": "k1"}
    )
    fork = (await call(c, "fork_conversation", {"conversation_id": conv}))["id"]
    default_conv = await call(c, "create_conversation", {})
    msgs = (await call(c, "list_messages", {"conversation_id": conv}))["messages"]
    return Owned(
        agent=agent["id"],
        default_agent=default_conv["agent_id"],
        block=agent["memory_blocks"][0]["id"],
        conversation=conv,
        fork=fork,
        message=msgs[0]["id"],
        run=run["id"],
        idempotency_key="k1",
    )


def cases(a: Owned, b_export: dict[str, Any]) -> dict[str, list[tuple[dict[str, Any], str, str]]]:
    """For each tool taking an id: (arguments naming A's thing, that id, the kind of thing)."""
    conv = [({"conversation_id": a.conversation}, a.conversation), ({"conversation_id": a.fork}, a.fork)]
    return {
        "get_agent": [
            ({"agent_id": a.agent}, a.agent, "agent"),
            ({"agent_id": a.default_agent}, a.default_agent, "agent"),
        ],
        "update_agent": [({"agent_id": a.agent, "name": "taken"}, a.agent, "agent")],
        "delete_agent": [({"agent_id": a.agent}, a.agent, "agent")],
        "update_memory_block": [({"agent_id": a.agent, "label": "human", "value": "x"}, a.agent, "agent")],
        "create_conversation": [({"agent_id": a.agent}, a.agent, "agent")],
        "list_conversations": [({"agent_id": a.agent}, a.agent, "agent")],
        "get_conversation": [(*c, "conversation") for c in conv],
        "update_conversation": [({"conversation_id": a.conversation, "summary": "x"}, a.conversation, "conversation")],
        "list_messages": [(*c, "conversation") for c in conv],
        "fork_conversation": [(*c, "conversation") for c in conv],
        "delete_conversation": [(*c, "conversation") for c in conv],
        "conversation_search": [
            ({"query": SECRET, "agent_id": a.agent}, a.agent, "agent"),
            ({"query": SECRET, "conversation_id": a.conversation}, a.conversation, "conversation"),
        ],
        "send_message": [
            ({"conversation_id": a.conversation, "content": "hi"}, a.conversation, "conversation"),
            (
                {"conversation_id": a.conversation, "content": "hi", "idempotency_key": a.idempotency_key},
                a.conversation,
                "conversation",
            ),
        ],
        "compact_conversation": [(*c, "conversation") for c in conv],
        "get_run": [({"run_id": a.run}, a.run, "run")],
        "cancel_run": [({"run_id": a.run}, a.run, "run")],
        "get_memory_block_history": [({"agent_id": a.agent, "label": "human"}, a.agent, "agent")],
        "restore_memory_block": [({"agent_id": a.agent, "label": "human", "version": 1}, a.agent, "agent")],
        "export_conversation": [(*c, "conversation") for c in conv]
        + [({"conversation_id": a.conversation, "format": "markdown"}, a.conversation, "conversation")],
        "export_agent": [
            ({"agent_id": a.agent}, a.agent, "agent"),
            ({"agent_id": a.agent, "conversation_id": a.conversation}, a.agent, "agent"),
        ],
        # B's own export, imported into A's agent: refused as an unknown agent, nothing stored.
        "import_conversation": [({"data": b_export, "agent_id": a.agent}, a.agent, "agent")],
    }


# Tools that name no existing thing; what B sees through them is checked on its own below.
NO_ID = {"create_agent", "list_agents", "import_agent"}  # import_agent makes a new agent of its own


async def test_another_principals_ids_answer_as_unknown_ids_for_every_tool(
    model_settings: Settings, fake_provider: FakeProvider
) -> None:
    settings = model_settings
    async with open_app(settings) as app:
        async with client_for(app, settings, A) as ca:
            a = await make_owned(ca, fake_provider)
        async with client_for(app, settings, B) as cb:
            b_conv = (await call(cb, "create_conversation", {}))["id"]  # B's own default agent, made first
            tools = {t.name for t in (await cb.list_tools()).tools}
            b_export = (await call(cb, "export_conversation", {"conversation_id": b_conv}))["data"]
            table = cases(a, b_export)
            assert tools - NO_ID == set(table), "every tool taking an id needs an isolation case"
            before = snapshot(settings)
            for tool, rows in table.items():
                for args, owned_id, kind in rows:
                    got = await call_error(cb, tool, args)
                    unknown = {k: (UNKNOWN[kind] if v == owned_id else v) for k, v in args.items()}
                    expected = await call_error(cb, tool, unknown)
                    assert got == as_unknown(expected, owned_id, UNKNOWN[kind]), (tool, got, expected)
                    assert "not found" in got, (tool, got)
            assert snapshot(settings) == before, "a refused call changed the database"

            listed = {x["id"] for x in (await call(cb, "list_agents", {"limit": 200}))["agents"]}
            assert not listed & a.ids()
            b_agent = (await call(cb, "get_conversation", {"conversation_id": b_conv}))["agent_id"]
            assert listed == {b_agent} and b_agent != a.default_agent
            convs = await call(cb, "list_conversations", {})
            assert [c["id"] for c in convs["conversations"]] == [b_conv]
            assert (await call(cb, "conversation_search", {"query": SECRET}))["results"] == []
        async with client_for(app, settings, A) as ca:  # A still sees all of it, unchanged
            assert (await call(ca, "get_agent", {"agent_id": a.agent}))["name"] == "a"
            hits = (await call(ca, "conversation_search", {"query": SECRET, "agent_id": a.agent}))["results"]
            assert hits and all(h["conversation_id"] in (a.conversation, a.fork) for h in hits)
            mine = {x["id"] for x in (await call(ca, "list_agents", {}))["agents"]}
            assert mine == {a.agent, a.default_agent}


async def test_a_run_acts_for_its_sender_so_its_search_sees_only_the_senders_messages(
    model_settings: Settings, fake_provider: FakeProvider
) -> None:
    settings = model_settings
    async with open_app(settings) as app:
        async with client_for(app, settings, A) as ca:
            a = await make_owned(ca, fake_provider)
        async with client_for(app, settings, B) as cb:
            conv = (await call(cb, "create_conversation", {}))["id"]
            fake_provider.enqueue("ok")
            await call(cb, "send_message", {"conversation_id": conv, "content": f"my {SECRET} notes are mine"})
            # The same key as A's run: B's own run starts (keys never reach another principal's runs).
            fake_provider.enqueue(tool_calls=[{"name": "conversation_search", "arguments": {"query": SECRET}}])
            fake_provider.enqueue("done")
            run = await call(
                cb,
                "send_message",
                {
                    "conversation_id": conv,
                    "content": "search",
                    "idempotency_key": a.idempotency_key,
                    "background": True,
                },
            )
            assert run["id"] != a.run
            while run["status"] in ("queued", "running"):
                run = await call(cb, "get_run", {"run_id": run["id"]})
            assert run["status"] == "completed", run
            ret = next(m for m in run["messages"] if m["message_type"] == "tool_return_message")
            hits = json.loads(ret["content"])
            assert hits and all(h["conversation_id"] == conv for h in hits), hits
            assert any("my zanzibar notes are mine" in h["content"] for h in hits)
            assert not any("plans" in h["content"] or "noted" in h["content"] for h in hits)

            # A run queued behind another (its task waits for the turn) still acts for its sender.
            fake_provider.enqueue("slow", delay=0.5)
            fake_provider.enqueue(tool_calls=[{"name": "conversation_search", "arguments": {"query": SECRET}}])
            fake_provider.enqueue("done")
            first = await call(cb, "send_message", {"conversation_id": conv, "content": "one", "background": True})
            queued = await call(cb, "send_message", {"conversation_id": conv, "content": "two", "background": True})
            assert queued["status"] == "queued", queued
            for started in (first, queued):
                while started["status"] in ("queued", "running"):
                    started = await call(cb, "get_run", {"run_id": started["id"]})
                assert started["status"] == "completed", started
            ret = next(m for m in started["messages"] if m["message_type"] == "tool_return_message")
            assert ret["status"] == "success", ret
            hits = json.loads(ret["content"])
            assert hits and all(h["conversation_id"] == conv for h in hits), hits
