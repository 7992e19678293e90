"""Isolation end to end over MCP's streamable HTTP with named tokens: a tool call acts for the token's
principal also in a stateful session, whose tools the SDK runs in the session's task rather than the
request's (so the principal is read from each request), and in a run started by that call."""

from __future__ import annotations

import json

import pytest
from fake_provider import FakeProvider
from http_helpers import mcp_client, serving
from isolation_helpers import SECRET, UNKNOWN, as_unknown
from runtime_helpers import call, call_error
from test_named_tokens import create as create_token

from mcp_server_conversations.config import Settings

pytestmark = [pytest.mark.slow, pytest.mark.processes]


@pytest.mark.parametrize("mode", ["legacy", "auto"])  # a stateful session (2025-11-25), and 2026-07-28
@pytest.mark.parametrize("stateless", [False, True], ids=["sessions", "stateless"])
async def test_each_token_sees_only_its_own_over_mcp_http(
    settings: Settings, fake_provider: FakeProvider, mode: str, stateless: bool
) -> None:
    tokens = {name: create_token(str(settings.resolved_db()), name) for name in ("alice", "bob")}
    update = {"default_model": "openai/fake-model", "stateless": stateless}
    async with serving(settings.model_copy(update=update)) as served:
        async with mcp_client(served.mcp_url, tokens["alice"], mode=mode) as a:
            agent = (await call(a, "create_agent", {"name": "alice's"}))["id"]
            conv = (await call(a, "create_conversation", {"agent_id": agent}))["id"]
            fake_provider.enqueue("noted")
            run = await call(a, "send_message", {"conversation_id": conv, "content": f"{SECRET} plans"})
            a_default = (await call(a, "create_conversation", {}))["agent_id"]
        async with mcp_client(served.mcp_url, tokens["bob"], mode=mode) as b:
            for tool, args, kind, owned in (
                ("get_agent", {"agent_id": agent}, "agent", agent),
                ("list_messages", {"conversation_id": conv}, "conversation", conv),
                ("get_run", {"run_id": run["id"]}, "run", run["id"]),
            ):
                unknown = await call_error(b, tool, {k: UNKNOWN[kind] for k in args})
                assert await call_error(b, tool, args) == as_unknown(unknown, owned, UNKNOWN[kind])
            own = (await call(b, "create_conversation", {}))["id"]
            b_default = (await call(b, "get_conversation", {"conversation_id": own}))["agent_id"]
            assert b_default != a_default
            assert [x["id"] for x in (await call(b, "list_agents", {}))["agents"]] == [b_default]
            assert (await call(b, "conversation_search", {"query": SECRET}))["results"] == []

            fake_provider.enqueue("ok")
            await call(b, "send_message", {"conversation_id": own, "content": f"bob's {SECRET} list"})
            fake_provider.enqueue(tool_calls=[{"name": "conversation_search", "arguments": {"query": SECRET}}])
            fake_provider.enqueue("done")
            started = await call(b, "send_message", {"conversation_id": own, "content": "find", "background": True})
            ended = started
            while ended["status"] in ("queued", "running"):
                ended = await call(b, "get_run", {"run_id": started["id"]})
            assert ended["status"] == "completed", ended
            ret = next(m for m in ended["messages"] if m["message_type"] == "tool_return_message")
            hits = json.loads(ret["content"])  # bob's message, and the run's own call naming the word
            assert f"bob's {SECRET} list" in [h["content"] for h in hits]
            assert {h["conversation_id"] for h in hits} == {own} and not any("plans" in h["content"] for h in hits)
