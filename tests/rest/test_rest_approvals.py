"""Client-side tools over Letta's REST API, as Letta Code uses them: tools a send declares are offered
to the model; a call to one ends the run with an approval request; a later send with the results (or
denials) continues the turn. Also the shapes Letta Code reads: agent tags/description/model_settings,
step_count, in_context_message_ids, image parts, and the agent's default conversation."""

from __future__ import annotations

import json
from typing import Any

import httpx
from fake_provider import FakeProvider
from http_helpers import mcp_client
from rest_helpers import TOKEN, rest_server

from mcp_server_conversations.config import Settings

AUTH = {"Authorization": f"Bearer {TOKEN}"}
EXEC = {
    "name": "exec_command",
    "description": "Run a shell command",
    "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]},
}
READ = {
    "name": "read_file",
    "description": "Read a file",
    "parameters": {"type": "object", "properties": {"path": {"type": "string"}}},
}


def chunks(body: str) -> list[dict[str, Any]]:
    out = []
    for line in body.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            out.append(json.loads(line[6:]))
    return out


async def send(http: httpx.AsyncClient, conv: str, messages: list[dict], **extra: Any) -> list[dict[str, Any]]:
    r = await http.post(
        f"/v1/conversations/{conv}/messages",
        json={"messages": messages, "client_tools": [EXEC, READ], "stream_tokens": True, **extra},
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    return chunks(r.text)


def of_type(cs: list[dict], kind: str) -> list[dict]:
    return [c for c in cs if c.get("message_type") == kind]


async def new_conversation(http: httpx.AsyncClient) -> tuple[str, str]:
    agent = (
        await http.post("/v1/agents/", json={"name": "coder", "tags": ["origin:letta-code"], "description": "codes"})
    ).json()
    conv = (await http.post(f"/v1/conversations/?agent_id={agent['id']}", json={})).json()
    return agent["id"], conv["id"]


async def test_client_tool_call_waits_for_approval_then_continues(
    settings: Settings, fake_provider: FakeProvider
) -> None:
    fake_provider.enqueue(
        "Let me look.", tool_calls=[{"name": "exec_command", "arguments": {"cmd": "ls"}, "id": "call_one"}]
    )
    fake_provider.enqueue("There are two files.")
    async with (
        rest_server(settings) as served,
        httpx.AsyncClient(base_url=served.base_url, headers=AUTH, timeout=30) as http,
    ):
        _, conv = await new_conversation(http)
        first = await send(http, conv, [{"role": "user", "content": "what is here?"}])
        assert "exec_command" in fake_provider.requests[0].tool_names
        assert "conversation_search" in fake_provider.requests[0].tool_names  # the agent's own, beside
        [request] = of_type(first, "approval_request_message")
        assert request["tool_call"] == {
            "tool_call_id": "call_one",
            "name": "exec_command",
            "arguments": '{"cmd": "ls"}',
        }
        assert request["run_id"] and request["id"]
        assert of_type(first, "stop_reason")[0]["stop_reason"] == "requires_approval"
        assert of_type(first, "usage_statistics")[0]["step_count"] == 1
        assert not of_type(first, "tool_return_message")  # the server ran nothing

        # Letta Code's probe: the last in-context message is the waiting request.
        state = (await http.get(f"/v1/conversations/{conv}")).json()
        assert state["in_context_message_ids"][-1] == request["id"]
        listed = (
            await http.get(
                f"/v1/conversations/{conv}/messages",
                params=[
                    ("limit", "50"),
                    ("order", "desc"),
                    ("include_return_message_types", "approval_request_message"),
                    ("include_return_message_types", "user_message"),
                ],
            )
        ).json()
        assert [m["message_type"] for m in listed] == ["approval_request_message", "user_message"]
        assert (await http.get(f"/v1/messages/{request['id']}")).json()[0]["message_type"] == (
            "approval_request_message"
        )

        # A new message while the call waits: 409, as on Letta's server, and nothing is stored.
        busy = await http.post(
            f"/v1/conversations/{conv}/messages", json={"messages": [{"role": "user", "content": "hello?"}]}
        )
        assert busy.status_code == 409 and "waiting for approval on a tool call" in busy.json()["detail"]
        assert busy.headers["x-should-retry"] == "false"
        wrong = await http.post(
            f"/v1/conversations/{conv}/messages",
            json={
                "messages": [
                    {
                        "type": "approval",
                        "approvals": [{"type": "tool", "tool_call_id": "call_other", "tool_return": "x"}],
                    }
                ]
            },
        )
        assert wrong.status_code == 422 and "call_other" in wrong.json()["detail"]

        done = await send(
            http,
            conv,
            [
                {
                    "type": "approval",
                    "otid": "o-1",
                    "approvals": [
                        {"type": "tool", "tool_call_id": "call_one", "tool_return": "a.txt\nb.txt", "status": "success"}
                    ],
                }
            ],
        )
        assert "".join(c["content"] for c in of_type(done, "assistant_message")) == "There are two files."
        assert of_type(done, "stop_reason")[0]["stop_reason"] == "end_turn"
        repeated = await send(
            http,
            conv,
            [
                {
                    "type": "approval",
                    "otid": "o-1",
                    "approvals": [
                        {"type": "tool", "tool_call_id": "call_one", "tool_return": "a.txt\nb.txt", "status": "success"}
                    ],
                }
            ],
        )
        assert of_type(repeated, "stop_reason")[0]["run_id"] == of_type(done, "stop_reason")[0]["run_id"]
        assert len(fake_provider.requests) == 2  # the repeat (same otid) joined the run it repeats
        sent = fake_provider.requests[1].messages
        assert sent[-2]["tool_calls"][0]["id"] == "call_one"
        assert sent[-1] == {"role": "tool", "tool_call_id": "call_one", "content": "a.txt\nb.txt"}
        history = (await http.get(f"/v1/conversations/{conv}/messages", params={"order": "asc"})).json()
        assert [m["message_type"] for m in history] == [
            "user_message",
            "assistant_message",
            "approval_request_message",
            "tool_return_message",
            "assistant_message",
        ]


async def test_denial_and_parallel_client_calls(settings: Settings, fake_provider: FakeProvider) -> None:
    fake_provider.enqueue(
        tool_calls=[
            {"name": "exec_command", "arguments": {"cmd": "rm -rf /"}, "id": "call_a"},
            {"name": "read_file", "arguments": {"path": "x"}, "id": "call_b"},
        ]
    )
    fake_provider.enqueue("Understood.")
    async with (
        rest_server(settings) as served,
        httpx.AsyncClient(base_url=served.base_url, headers=AUTH, timeout=30) as http,
    ):
        _, conv = await new_conversation(http)
        first = await send(http, conv, [{"role": "user", "content": "clean up"}])
        [request] = of_type(first, "approval_request_message")
        assert [c["tool_call_id"] for c in request["tool_calls"]] == ["call_a", "call_b"]
        partial = await http.post(
            f"/v1/conversations/{conv}/messages",
            json={
                "messages": [
                    {
                        "type": "approval",
                        "approvals": [{"type": "approval", "tool_call_id": "call_a", "approve": False}],
                    }
                ]
            },
        )
        assert partial.status_code == 422 and "Invalid tool call IDs" in partial.json()["detail"]
        done = await send(
            http,
            conv,
            [
                {
                    "type": "approval",
                    "approvals": [
                        {"type": "approval", "tool_call_id": "call_a", "approve": False, "reason": "too dangerous"},
                        {
                            "type": "tool",
                            "tool_call_id": "call_b",
                            "tool_return": [{"type": "text", "text": "contents"}],
                            "status": "success",
                        },
                    ],
                }
            ],
        )
        assert of_type(done, "stop_reason")[0]["stop_reason"] == "end_turn"
        returns = {m["tool_call_id"]: m for m in fake_provider.requests[1].messages if m["role"] == "tool"}
        assert "too dangerous" in returns["call_a"]["content"] and returns["call_b"]["content"] == "contents"


async def test_pending_approval_survives_a_restart_and_mcp_sends_go_on(
    settings: Settings, fake_provider: FakeProvider
) -> None:
    fake_provider.enqueue(tool_calls=[{"name": "exec_command", "arguments": {"cmd": "ls"}, "id": "call_r"}])
    async with (
        rest_server(settings) as served,
        httpx.AsyncClient(base_url=served.base_url, headers=AUTH, timeout=30) as http,
    ):
        _, conv = await new_conversation(http)
        await send(http, conv, [{"role": "user", "content": "list"}])
    fake_provider.enqueue("Resumed.")
    async with (
        rest_server(settings) as served,
        httpx.AsyncClient(base_url=served.base_url, headers=AUTH, timeout=30) as http,
    ):
        state = (await http.get(f"/v1/conversations/{conv}")).json()
        last = (await http.get(f"/v1/messages/{state['in_context_message_ids'][-1]}")).json()[0]
        assert last["message_type"] == "approval_request_message" and last["tool_call"]["tool_call_id"] == "call_r"
        done = await send(
            http,
            conv,
            [{"type": "approval", "approvals": [{"type": "tool", "tool_call_id": "call_r", "tool_return": "ok"}]}],
        )
        assert "".join(c["content"] for c in of_type(done, "assistant_message")) == "Resumed."

        # Over MCP nothing changes: no client tools are offered, and a waiting call does not block a send.
        fake_provider.enqueue(tool_calls=[{"name": "exec_command", "arguments": {}, "id": "call_m"}])
        await send(http, conv, [{"role": "user", "content": "again"}])
        fake_provider.enqueue("Plain answer.")
        async with mcp_client(served.mcp_url, token=TOKEN) as client:
            result = await client.call_tool("send_message", {"conversation_id": conv, "content": "over mcp"})
        assert not result.is_error and "Plain answer." in json.dumps(result.structured_content)
        assert "exec_command" not in fake_provider.requests[-1].tool_names
        assert not any(m.get("tool_calls") for m in fake_provider.requests[-1].messages[-3:])


async def test_letta_code_shapes_kept(settings: Settings, fake_provider: FakeProvider) -> None:
    async with (
        rest_server(settings) as served,
        httpx.AsyncClient(base_url=served.base_url, headers=AUTH, timeout=30) as http,
    ):
        agent_id, conv = await new_conversation(http)
        agent = (await http.get(f"/v1/agents/{agent_id}")).json()
        assert agent["tags"] == ["origin:letta-code"] and agent["description"] == "codes"
        settings_ = {"provider_type": "openai", "parallel_tool_calls": True, "max_output_tokens": 4096}
        patched = (
            await http.patch(f"/v1/agents/{agent_id}", json={"model_settings": settings_, "tags": ["a", "b"]})
        ).json()
        assert patched["model_settings"] == settings_ and patched["tags"] == ["a", "b"]
        assert (await http.get(f"/v1/agents/{agent_id}")).json()["description"] == "codes"
        other = (await http.post("/v1/agents/", json={"name": "other", "tags": ["b"]})).json()
        by_tag = (await http.get("/v1/agents/", params=[("tags", "a"), ("tags", "b")])).json()
        assert {a["id"] for a in by_tag} == {agent_id, other["id"]}
        both = await http.get("/v1/agents/", params=[("tags", "a"), ("tags", "b"), ("match_all_tags", "true")])
        assert [a["id"] for a in both.json()] == [agent_id]
        assert [a["id"] for a in (await http.get("/v1/agents/", params={"name": "other"})).json()] == [other["id"]]
        assert [a["id"] for a in (await http.get("/v1/agents/", params={"query_text": "COD"})).json()] == [agent_id]

        image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
        done = await send(http, conv, [{"role": "user", "content": [{"type": "text", "text": "see"}, image]}])
        assert of_type(done, "usage_statistics")[0]["step_count"] == 1
        seen = fake_provider.requests[-1].last_user
        assert seen == "see\n[image: image/png, 9 bytes]"  # this model takes no images: the placeholder only
        found = (await http.post("/v1/messages/search", json={"query": "image", "agent_id": agent_id})).json()
        assert found and found[0]["content"].startswith("see\n[image: image/png")


async def test_images_reach_models_that_take_them_and_history_stays_text(
    settings: Settings, fake_provider: FakeProvider
) -> None:
    png = "iVBORw0KGgo="
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}}
    linked = {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}
    async with (
        rest_server(settings) as served,
        httpx.AsyncClient(base_url=served.base_url, headers=AUTH, timeout=30) as http,
    ):
        # gpt-4o takes images (litellm's model table); the fake provider stands in for OpenAI
        agent = (await http.post("/v1/agents/", json={"name": "eyes", "model": "openai/gpt-4o"})).json()
        conv = (await http.post(f"/v1/conversations/?agent_id={agent['id']}", json={})).json()["id"]
        fake_provider.enqueue(
            "I see a cat.", tool_calls=[{"name": "conversation_search", "arguments": {"query": "cat"}}]
        )
        fake_provider.enqueue("A cat, twice.")
        await send(http, conv, [{"role": "user", "content": [{"type": "text", "text": "look"}, image, linked]}])
        for request in fake_provider.requests[-2:]:  # every model call of the turn carries the images
            content = [m for m in request.messages if m["role"] == "user"][-1]["content"]
            assert content[0] == {
                "type": "text",
                "text": "look\n[image: image/png, 9 bytes]\n[image: image at https://example.com/cat.jpg]",
            }
            assert content[1:] == [
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
            ]
        fake_provider.enqueue("Still a cat.")
        await send(http, conv, [{"role": "user", "content": "and now?"}])
        earlier = [m for m in fake_provider.requests[-1].messages if m["role"] == "user"][-2]
        assert earlier["content"].startswith("look\n[image: image/png")  # images are not stored: text later
        history = (await http.get(f"/v1/conversations/{conv}/messages", params={"order": "asc"})).json()
        assert [m["content"] for m in history if m["message_type"] == "user_message"][0].startswith("look\n[image")
        bad = {"type": "image", "source": {"type": "base64", "media_type": "image/png"}}
        r = await http.post(
            f"/v1/conversations/{conv}/messages", json={"messages": [{"role": "user", "content": [bad]}]}
        )
        assert r.status_code == 422 and "image" in r.json()["detail"], r.text


async def test_default_conversation_on_agent_direct_routes(settings: Settings, fake_provider: FakeProvider) -> None:
    fake_provider.enqueue("Hi from default.")
    async with (
        rest_server(settings) as served,
        httpx.AsyncClient(base_url=served.base_url, headers=AUTH, timeout=30) as http,
    ):
        agent_id, _ = await new_conversation(http)
        assert (await http.get(f"/v1/agents/{agent_id}/messages", params={"conversation_id": "default"})).json() == []
        r = await http.post(
            "/v1/conversations/default/messages",
            json={"messages": [{"role": "user", "content": "hello default"}], "agent_id": agent_id},
        )
        assert "Hi from default." in r.text
        fake_provider.enqueue("Direct again.")
        direct = await http.post(
            f"/v1/agents/{agent_id}/messages", json={"messages": [{"role": "user", "content": "agent route"}]}
        )
        assert "Direct again." in direct.text
        listed = (await http.get(f"/v1/agents/{agent_id}/messages", params={"conversation_id": "default"})).json()
        assert [m["message_type"] for m in listed] == ["assistant_message", "user_message"] * 2
        default = (await http.get("/v1/conversations/default", params={"agent_id": agent_id})).json()
        assert default["agent_id"] == agent_id and listed[0]["conversation_id"] == default["id"]
        await http.patch(f"/v1/conversations/{default['id']}", json={"summary": "Refactoring the parser"})
        titled = (
            await http.get("/v1/conversations/", params={"agent_id": agent_id, "summary_search": "PARSER"})
        ).json()
        assert [c["id"] for c in titled] == [default["id"]]
        missing = await http.get("/v1/agents/agent-00000000-0000-0000-0000-000000000000/messages")
        assert missing.status_code == 404


async def test_runs_list_retrieve_and_reattach_from_seq_id(settings: Settings, fake_provider: FakeProvider) -> None:
    fake_provider.enqueue("alpha beta gamma delta")
    async with (
        rest_server(settings) as served,
        httpx.AsyncClient(base_url=served.base_url, headers=AUTH, timeout=30) as http,
    ):
        agent_id, conv = await new_conversation(http)
        first = await send(http, conv, [{"role": "user", "content": "go"}])
        seqs = [c["seq_id"] for c in first if "seq_id" in c]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs) and len(seqs) >= 5
        run_id = of_type(first, "stop_reason")[0]["run_id"]
        assert {c["run_id"] for c in first if c.get("run_id")} == {run_id}

        run = (await http.get(f"/v1/runs/{run_id}")).json()
        assert run["status"] == "completed" and run["stop_reason"] == "end_turn"
        assert run["conversation_id"] == conv and run["agent_id"] == agent_id and run["metadata"] == {}
        listed = (await http.get("/v1/runs", params={"conversation_id": conv})).json()
        assert [r["id"] for r in listed] == [run_id]
        assert (await http.get("/v1/runs/", params=[("conversation_id", conv), ("statuses", "running")])).json() == []
        assert [r["id"] for r in (await http.get("/v1/runs", params={"agent_id": agent_id})).json()] == [run_id]
        assert (await http.get("/v1/runs/run-nope")).status_code == 404
        assert (await http.get("/v1/runs", params={"statuses": "bogus"})).status_code == 422

        # Re-attaching after the third chunk repeats nothing before it and misses nothing after it.
        cut = seqs[2]
        again = chunks((await http.post(f"/v1/runs/{run_id}/stream", json={"starting_after": cut})).text)

        def undated(cs: list[dict]) -> list[dict]:
            return [{k: v for k, v in c.items() if k != "date"} for c in cs]

        assert undated([c for c in first if c.get("seq_id", 0) > cut]) == undated(again)
        words = "".join(
            c["content"] for c in first if c.get("seq_id", 0) <= cut and c["message_type"] == "assistant_message"
        ) + "".join(c["content"] for c in of_type(again, "assistant_message"))
        assert words == "alpha beta gamma delta"
        by_otid_body = {"otid": "o-9", "starting_after": 0}
        assert (await http.post(f"/v1/conversations/{conv}/stream", json=by_otid_body)).status_code == 404


async def test_feeds_kept_for_reattaching_are_bounded(monkeypatch) -> None:
    from types import SimpleNamespace

    from mcp_server_conversations.app import RestState
    from mcp_server_conversations.rest import sse
    from mcp_server_conversations.runs.events import RunEvent

    monkeypatch.setattr(sse, "MAX_FEEDS", 2)
    app = SimpleNamespace(rest=RestState())
    running, finished, newest = sse.Feed(), sse.Feed(), sse.Feed()
    await finished.listener(RunEvent("done", "run-b"))
    sse.register(app, "run-a", running)
    sse.register(app, "run-b", finished)
    sse.register(app, "run-c", newest)
    assert set(app.rest.run_feeds) == {"run-a", "run-c"}  # the finished one made room; a live one stays
