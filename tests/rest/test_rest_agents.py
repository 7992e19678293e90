"""Letta's agent, memory-block and conversation routes driven by letta-client (strict validation)
against the real HTTP server: what the SDK sends, what it parses, pagination by id, errors."""

from __future__ import annotations

import httpx
import letta_client
import pytest
from http_helpers import mcp_client, spawned_http_server
from rest_helpers import TOKEN, letta, rest_server, sdk

from mcp_server_conversations.config import Settings


def agents_and_blocks(base_url: str) -> dict:
    client = letta(base_url)
    agent = client.agents.create(
        name="demo",
        model="openai/gpt-4o-mini",
        memory_blocks=[
            {"label": "human", "value": "Name: Ada", "limit": 5000},
            {"label": "persona", "value": "A helpful assistant.", "description": "who I am"},
        ],
    )
    assert agent.id.startswith("agent-") and agent.name == "demo"
    assert agent.llm_config.model == "gpt-4o-mini" and agent.llm_config.api_model_endpoint_type == "openai"
    assert {b.label for b in agent.memory.blocks} == {"human", "persona"}

    same = client.agents.retrieve(agent.id)
    assert same.id == agent.id and same.system == agent.system

    blocks = list(client.agents.blocks.list(agent.id))  # auto-paginates until an empty page
    assert [b.label for b in blocks] == ["human", "persona"]
    human = client.agents.blocks.retrieve("human", agent_id=agent.id)
    assert human.value == "Name: Ada" and human.limit == 5000

    updated = client.agents.blocks.update("human", agent_id=agent.id, value="Name: Ada Lovelace")
    assert updated.id == human.id and updated.value == "Name: Ada Lovelace"
    by_id = client.blocks.retrieve(human.id)
    assert by_id.value == "Name: Ada Lovelace" and by_id.label == "human"
    again = client.blocks.update(human.id, value="Name: Ada L.", description="the user")
    assert again.value == "Name: Ada L." and again.description == "the user"
    assert client.agents.retrieve(agent.id).memory.blocks[0].value == "Name: Ada L."

    with pytest.raises(letta_client.UnprocessableEntityError) as err:
        client.agents.blocks.update("human", agent_id=agent.id, value="x" * 6000)
    assert "limit" in err.value.body["detail"]
    with pytest.raises(letta_client.NotFoundError) as missing:
        client.agents.blocks.retrieve("nope", agent_id=agent.id)
    assert missing.value.body == {"detail": "block nope not found"}
    with pytest.raises(letta_client.NotFoundError):
        client.agents.retrieve("agent-00000000-0000-0000-0000-000000000000")
    return {"agent_id": agent.id}


async def test_agents_and_blocks_create_retrieve_update(settings: Settings) -> None:
    async with rest_server(settings) as served:
        await sdk(agents_and_blocks, served.base_url)


def agent_pages(base_url: str) -> None:
    client = letta(base_url)
    made = [client.agents.create(name=f"a{i}").id for i in range(5)]
    newest_first = [a.id for a in client.agents.list(limit=2)]  # 3 pages of 2, 2, 1, then an empty one
    assert newest_first == list(reversed(made))
    oldest_first = [a.id for a in client.agents.list(limit=2, order="asc")]
    assert oldest_first == made
    page = client.agents.list(limit=2, order="asc", after=made[1])
    assert [a.id for a in page.items] == made[2:4]
    backwards = [a.id for a in client.agents.list(limit=2, order="asc", before=made[4])]
    assert backwards == made[2:4] + made[0:2]  # pages walk toward the start, each in ascending order


async def test_agent_list_paginates_by_id_both_ways(settings: Settings) -> None:
    async with rest_server(settings) as served:
        await sdk(agent_pages, served.base_url)


def conversations_crud(base_url: str) -> None:
    client = letta(base_url)
    agent = client.agents.create(name="convs", model="openai/gpt-4o-mini")
    conversation = client.conversations.create(agent_id=agent.id)
    assert conversation.id.startswith("conv-") and conversation.agent_id == agent.id and conversation.model is None
    with_model = client.conversations.create(agent_id=agent.id, model="openai/gpt-5-mini")
    assert with_model.model == "openai/gpt-5-mini"

    assert client.conversations.retrieve(conversation.id).id == conversation.id
    titled = client.conversations.update(conversation.id, summary="Refactoring the API")
    assert titled.summary == "Refactoring the API"
    cleared = client.conversations.update(with_model.id, model=None)
    assert cleared.model is None
    assert client.conversations.retrieve(with_model.id).model is None

    listed = client.conversations.list(agent_id=agent.id)
    assert isinstance(listed, list) and [c.id for c in listed] == [with_model.id, conversation.id]
    asc = client.conversations.list(agent_id=agent.id, order="asc")
    assert [c.id for c in asc] == [conversation.id, with_model.id]
    after = client.conversations.list(agent_id=agent.id, order="asc", after=conversation.id)
    assert [c.id for c in after] == [with_model.id]
    by_run = client.conversations.list(agent_id=agent.id, order_by="last_run_completion", order="desc")
    assert {c.id for c in by_run} == {conversation.id, with_model.id}

    fork = client.conversations.fork(conversation.id)
    assert fork.id != conversation.id and fork.agent_id == agent.id
    assert fork.model_extra["forked_from"] == {"conversation_id": conversation.id, "message_id": None}

    assert client.conversations.delete(fork.id) is None
    with pytest.raises(letta_client.NotFoundError):
        client.conversations.retrieve(fork.id)
    with pytest.raises(letta_client.NotFoundError):
        client.conversations.delete(fork.id)
    assert client.conversations.cancel(conversation.id) == {}  # nothing running

    with pytest.raises(letta_client.UnprocessableEntityError) as bad:
        client.conversations.create(agent_id=agent.id, model="gpt-4o")
    assert "provider/model-name" in bad.value.body["detail"]
    with pytest.raises(letta_client.UnprocessableEntityError) as direct:
        client.conversations.retrieve("default")
    assert "give agent_id" in direct.value.body["detail"]
    # Agent-direct mode: the agent's default conversation, a real one, made on first use.
    default = client.conversations.retrieve("default", extra_query={"agent_id": agent.id})
    assert default.id.startswith("conv-") and default.agent_id == agent.id
    assert client.conversations.retrieve(agent.id).id == default.id
    assert default.id in {c.id for c in client.conversations.list(agent_id=agent.id)}


async def test_conversations_create_retrieve_update_list_fork_delete(settings: Settings) -> None:
    async with rest_server(settings) as served:
        await sdk(conversations_crud, served.base_url)


async def test_collection_paths_answer_with_and_without_trailing_slash(settings: Settings) -> None:
    async with rest_server(settings) as served:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=served.base_url, headers=auth) as http:
            created = await http.post("/v1/agents", json={"name": "slashless"})
            assert created.status_code == 200, created.text
            agent_id = created.json()["id"]
            for path in ("/v1/agents", "/v1/agents/"):
                r = await http.get(path)
                assert r.status_code == 200 and agent_id in [a["id"] for a in r.json()]
            for path in ("/v1/conversations", "/v1/conversations/"):
                r = await http.post(path, params={"agent_id": agent_id}, json={})
                assert r.status_code == 200 and r.json()["agent_id"] == agent_id
                r = await http.get(path, params={"agent_id": agent_id})
                assert r.status_code == 200 and isinstance(r.json(), list)
            for path in (f"/v1/agents/{agent_id}/core-memory/blocks", f"/v1/agents/{agent_id}/core-memory/blocks/"):
                assert (await http.get(path)).status_code == 200


async def test_errors_have_letta_status_classes_detail_bodies_and_no_retry_hint(settings: Settings) -> None:
    async with rest_server(settings) as served:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=served.base_url, headers=auth) as http:
            r = await http.get("/v1/conversations/conv-missing")
            assert r.status_code == 404 and r.json() == {"detail": "conversation conv-missing not found"}
            assert r.headers["x-should-retry"] == "false"
            r = await http.post("/v1/agents/", content=b"{not json", headers={"Content-Type": "application/json"})
            assert r.status_code == 422 and "JSON" in r.json()["detail"]
            r = await http.post("/v1/agents/", json={"name": "x", "memory_blocks": [{"value": "no label"}]})
            assert r.status_code == 422 and "memory_blocks.0.label" in r.json()["detail"]
            r = await http.get("/v1/conversations/", params={"order": "sideways"})
            assert r.status_code == 422 and "order" in r.json()["detail"]
            r = await http.get("/v1/conversations/", params={"limit": "0"})
            assert r.status_code == 422 and "limit" in r.json()["detail"]
        async with httpx.AsyncClient(base_url=served.base_url) as anonymous:
            r = await anonymous.get("/v1/agents/")
            assert r.status_code == 401 and "detail" in r.json()


def sdk_without_token(base_url: str) -> None:
    with pytest.raises(letta_client.AuthenticationError):
        letta(base_url, api_key="wrong").agents.list()


async def test_the_sdk_api_key_is_the_bearer_token(settings: Settings) -> None:
    async with rest_server(settings) as served:
        await sdk(sdk_without_token, served.base_url)


@pytest.mark.slow
async def test_the_console_script_serves_rest_beside_mcp_on_one_service(tmp_path) -> None:
    """`mcp-server-conversations --transport streamable-http` as users start it: what the SDK writes
    under /v1 the MCP tools at /mcp read, and the other way round."""
    with spawned_http_server(tmp_path / "both.db", "--auth-token", TOKEN) as server:
        client = letta(server.base_url)
        agent = await sdk(client.agents.create, name="shared", memory_blocks=[{"label": "human", "value": "Ada"}])
        async with mcp_client(server.mcp_url, token=TOKEN) as mcp:
            seen = await mcp.call_tool("get_agent", {"agent_id": agent.id})
            assert seen.structured_content["memory_blocks"][0]["value"] == "Ada"
            made = await mcp.call_tool("create_conversation", {"agent_id": agent.id, "summary": "from MCP"})
            conv_id = made.structured_content["id"]
        listed = await sdk(client.conversations.list, agent_id=agent.id)
        assert [(c.id, c.summary) for c in listed] == [(conv_id, "from MCP")]


def stale_block_write(base_url: str) -> None:
    client = letta(base_url)
    agent = client.agents.create(name="v", memory_blocks=[{"label": "human", "value": "one"}])
    first = client.agents.blocks.update("human", agent_id=agent.id, value="two", extra_body={"expected_version": 1})
    assert first.value == "two" and first.model_extra["version"] == 2
    with pytest.raises(letta_client.ConflictError) as stale:
        client.agents.blocks.update("human", agent_id=agent.id, value="three", extra_body={"expected_version": 1})
    assert stale.value.status_code == 409 and stale.value.body["current_version"] == 2
    assert "version 2" in stale.value.body["detail"]
    with pytest.raises(letta_client.ConflictError):  # the same, as a query parameter
        client.blocks.update(first.id, value="three", extra_query={"expected_version": "1"})
    assert client.agents.blocks.retrieve("human", agent_id=agent.id).value == "two"


async def test_a_stale_expected_version_is_refused_with_409(settings: Settings) -> None:
    async with rest_server(settings) as served:
        await sdk(stale_block_write, served.base_url)
