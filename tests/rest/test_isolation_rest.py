"""Isolation over Letta's REST API on the real HTTP server: principal B, given principal A's ids, gets
from every route exactly what an unknown id gets (status and body), and the database is unchanged;
B's lists, runs and message searches (one agent, or every agent: `letta messages search --all-agents`)
never show A's data.

A and B are named tokens (`tokens create`), as Letta's SDKs send them (`api_key`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fake_provider import FakeProvider
from http_helpers import Served, serving
from isolation_helpers import SECRET, UNKNOWN, Owned, snapshot
from starlette.routing import Route
from test_named_tokens import create as create_token

from mcp_server_conversations import rest
from mcp_server_conversations.config import Settings

NAMES = ("alice", "bob")


@asynccontextmanager
async def served(settings: Settings) -> AsyncIterator[tuple[Served, dict[str, str]]]:
    """The real server with a named token for each of alice (A) and bob (B)."""
    made = {name: create_token(str(settings.resolved_db()), name) for name in NAMES}
    async with serving(settings.model_copy(update={"default_model": "openai/fake-model"})) as s:
        yield s, made


def client(s: Served, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"{s.base_url}/v1", headers={"Authorization": f"Bearer {token}"}, timeout=120)


async def ok(c: httpx.AsyncClient, method: str, url: str, **kw: Any) -> Any:
    r = await c.request(method, url, **kw)
    assert r.status_code == 200, (method, url, r.status_code, r.text)
    return r.json()


async def make_owned(c: httpx.AsyncClient, fake: FakeProvider) -> Owned:
    agent = await ok(c, "POST", "/agents", json={"name": "a", "memory_blocks": [{"label": "human", "value": "A"}]})
    conv = (await ok(c, "POST", "/conversations", params={"agent_id": agent["id"]}, json={}))["id"]
    fake.enqueue(f"noted: {SECRET}")
    body = {"messages": [{"role": "user", "content": f"{SECRET} plans", "otid": "otid-a"}], "streaming": False}
    await ok(c, "POST", f"/conversations/{conv}/messages", json=body)
    fork = (await ok(c, "POST", f"/conversations/{conv}/fork"))["id"]
    default_conv = await ok(c, "POST", "/conversations", json={})  # A's default agent
    run = (await ok(c, "GET", "/runs", params={"conversation_id": conv}))[0]["id"]
    message = (await ok(c, "GET", f"/conversations/{conv}/messages"))[0]["id"]
    return Owned(
        agent=agent["id"],
        default_agent=default_conv["agent_id"],
        block=agent["memory"]["blocks"][0]["id"],
        conversation=conv,
        fork=fork,
        message=message,
        run=run,
        idempotency_key="otid-a",
    )


Case = tuple[dict[str, str], dict[str, str], dict[str, Any] | None]  # path params, query, JSON body


def cases(a: Owned) -> dict[tuple[str, str], list[Case]]:
    """For each route that takes an id: requests naming A's things (path, query or body)."""
    agent = {"agent_id": a.agent}
    conv = {"conversation_id": a.conversation}
    send = {"messages": [{"role": "user", "content": "hi", "otid": a.idempotency_key}], "streaming": False}
    every_conv: list[Case] = [(conv, {}, {}), ({"conversation_id": a.fork}, {}, {})]
    by_agent: list[Case] = [(agent, {}, {}), ({"agent_id": a.default_agent}, {}, {})]
    default_conv: list[Case] = [
        ({"conversation_id": "default"}, {"agent_id": a.agent}, {}),
        ({"conversation_id": a.agent}, {}, {}),
    ]
    item = "/conversations/{conversation_id}"
    return {
        ("GET", "/agents/{agent_id}"): by_agent,
        ("PATCH", "/agents/{agent_id}"): [(agent, {}, {"name": "taken"})],
        ("DELETE", "/agents/{agent_id}"): by_agent,
        ("GET", "/agents/{agent_id}/core-memory/blocks"): by_agent,
        ("GET", "/agents/{agent_id}/core-memory/blocks/"): by_agent,
        ("GET", "/agents/{agent_id}/core-memory/blocks/{label:path}"): [({**agent, "label": "human"}, {}, None)],
        ("PATCH", "/agents/{agent_id}/core-memory/blocks/{label:path}"): [
            ({**agent, "label": "human"}, {}, {"value": "x"})
        ],
        ("GET", "/blocks/{block_id}"): [({"block_id": a.block}, {}, None)],
        ("PATCH", "/blocks/{block_id}"): [({"block_id": a.block}, {}, {"value": "x"})],
        ("GET", "/agents/{agent_id}/secrets"): by_agent,
        ("GET", "/agents/{agent_id}/mcp-servers"): by_agent,
        ("GET", "/agents/{agent_id}/repositories"): by_agent,
        ("GET", "/conversations"): [({}, agent, None)],
        ("GET", "/conversations/"): [({}, agent, None)],
        ("POST", "/conversations"): [({}, agent, {})],
        ("POST", "/conversations/"): [({}, agent, {})],
        ("GET", item): every_conv + default_conv,
        ("PATCH", item): [(conv, {}, {"summary": "x"}), *default_conv],
        ("DELETE", item): every_conv + default_conv,
        ("POST", item + "/fork"): every_conv + default_conv,
        ("POST", item + "/cancel"): every_conv + default_conv,
        ("POST", item + "/compact"): every_conv + default_conv,
        ("GET", item + "/messages"): every_conv + default_conv,
        ("GET", item + "/messages/"): every_conv,
        ("POST", item + "/messages"): [(conv, {}, send), *[(p, q, send) for p, q, _ in default_conv]],
        ("POST", item + "/messages/"): [(conv, {}, send)],
        ("POST", item + "/stream"): [
            *every_conv,
            (conv, {}, {"otid": a.idempotency_key}),
            (conv, {}, {"run_id": a.run}),
        ],
        ("GET", "/agents/{agent_id}/messages"): by_agent,
        ("POST", "/agents/{agent_id}/messages"): [(agent, {}, send)],
        ("POST", "/messages/search"): [({}, {}, {"query": SECRET, **agent}), ({}, {}, {"query": SECRET, **conv})],
        ("POST", "/messages/search/"): [({}, {}, {"query": SECRET, **agent})],
        ("GET", "/messages/{message_id}"): [({"message_id": a.message}, {}, None)],
        ("GET", "/runs"): [({}, agent, None), ({}, conv, None)],
        ("GET", "/runs/"): [({}, agent, None)],
        ("GET", "/runs/{run_id}"): [({"run_id": a.run}, {}, None)],
        ("POST", "/runs/{run_id}/stream"): [({"run_id": a.run}, {}, {})],
        ("GET", "/agents/{agent_id}/export"): [*by_agent, (agent, {"conversation_id": a.conversation}, None)],
        ("GET", item + "/export"): [*every_conv, (conv, {"format": "markdown"}, None)],
    }


# Routes that name nothing stored (B's own creations, lists and the catalog); lists are checked below.
NO_ID = {
    ("POST", "/agents"),
    ("POST", "/agents/"),
    ("POST", "/agents/import"),  # makes an agent of its own
    ("GET", "/agents"),
    ("GET", "/agents/"),
    ("GET", "/models"),
    ("GET", "/models/"),
    ("GET", "/health"),
    ("GET", "/health/"),
    ("POST", "/tools/add-base-tools"),
    ("POST", "/tools/add-base-tools/"),
    ("GET", "/environments"),
    ("GET", "/metadata/balance"),
    ("GET", "/organizations/self/quotas"),
}


def unknown_of(value: str, a: Owned) -> str:
    kinds = {
        a.agent: "agent",
        a.default_agent: "agent",
        a.conversation: "conversation",
        a.fork: "conversation",
        a.run: "run",
        a.block: "block",
        a.message: "message",
    }
    return UNKNOWN[kinds[value]] if value in kinds else value


def swap(values: dict[str, Any] | None, a: Owned) -> dict[str, Any] | None:
    if values is None:
        return None
    return {k: unknown_of(v, a) if isinstance(v, str) else v for k, v in values.items()}


def described(r: httpx.Response, a: Owned) -> tuple[int, str]:
    """The answer with A's ids written as the unknown ids of their kind."""
    text = r.text
    for owned in sorted(a.ids(), key=len, reverse=True):
        text = text.replace(owned, unknown_of(owned, a))
    return r.status_code, text


async def test_another_principals_ids_answer_as_unknown_ids_on_every_route(
    settings: Settings, fake_provider: FakeProvider
) -> None:
    async with served(settings) as (s, tokens), client(s, tokens["alice"]) as ca, client(s, tokens["bob"]) as cb:
        a = await make_owned(ca, fake_provider)
        b_conv = (await ok(cb, "POST", "/conversations", json={}))["id"]  # B's own default agent, made first
        table = cases(a)
        routes = {
            (m, r.path) for r in rest.routes(s.app) if isinstance(r, Route) for m in r.methods or () if m != "HEAD"
        }
        assert routes - NO_ID == set(table), "every route taking an id needs an isolation case"
        before = snapshot(settings)
        for (method, path), requests in table.items():
            for params, query, body in requests:
                template = path.replace(":path}", "}")  # a converter in the route, not a format spec
                url, unknown_url = template.format(**params), template.format(**swap(params, a))
                kw: dict[str, Any] = {"params": query} if query else {}
                got = (
                    await cb.request(method, url, json=body, **kw)
                    if body is not None
                    else await cb.request(method, url, **kw)
                )
                ukw: dict[str, Any] = {"params": swap(query, a)} if query else {}
                ubody = swap(body, a)
                want = (
                    await cb.request(method, unknown_url, json=ubody, **ukw)
                    if ubody is not None
                    else await cb.request(method, unknown_url, **ukw)
                )
                assert got.status_code == 404, (method, url, query, got.status_code, got.text)
                assert described(got, a) == (want.status_code, want.text), (method, url, query)
        assert snapshot(settings) == before, "a refused request changed the database"

        agents = await ok(cb, "GET", "/agents", params={"limit": 100})
        assert not {x["id"] for x in agents} & a.ids() and len(agents) == 1
        assert [c["id"] for c in await ok(cb, "GET", "/conversations")] == [b_conv]
        assert await ok(cb, "GET", "/runs") == []
        for query in ({"query": SECRET}, {"query": SECRET, "agent_id": agents[0]["id"]}):  # --all-agents, then one
            assert await ok(cb, "POST", "/messages/search", json=query) == []
        # A run a REST send starts (in a task of its own) acts for its sender: its search sees B's messages only.
        fake_provider.enqueue(tool_calls=[{"name": "conversation_search", "arguments": {"query": SECRET}}])
        fake_provider.enqueue("done")
        body = {"messages": [{"role": "user", "content": f"my {SECRET} notes"}], "streaming": False}
        sent = await ok(cb, "POST", f"/conversations/{b_conv}/messages", json=body)
        ret = next(m for m in sent["messages"] if m["message_type"] == "tool_return_message")
        assert ret["status"] == "success" and "my zanzibar notes" in ret["tool_return"], ret
        assert "plans" not in ret["tool_return"] and "noted" not in ret["tool_return"]
        # A's view is whole: its runs, agents and search.
        assert {r["id"] for r in await ok(ca, "GET", "/runs")} == {a.run}
        assert {x["id"] for x in await ok(ca, "GET", "/agents")} == {a.agent, a.default_agent}
        assert await ok(ca, "POST", "/messages/search", json={"query": SECRET})
