"""GET /v1/models/ (what Letta clients build their model list from), health, and the harmless
answers to Letta Cloud's services, through letta-client (strict) and plain HTTP."""

from __future__ import annotations

import httpx
import pytest
from rest_helpers import TOKEN, letta, rest_server, sdk

from mcp_server_conversations.config import Settings

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def models_listed(base_url: str) -> None:
    client = letta(base_url)
    client.agents.create(name="a", model="anthropic/claude-haiku-4-5")
    client.agents.create(name="b", model="openai/fake-model")  # the default: listed once
    client.agents.create(name="c")  # no model of its own
    models = client.models.list()
    assert [m.handle for m in models] == ["openai/fake-model", "openai/extra-model", "anthropic/claude-haiku-4-5"]
    haiku = models[2]
    assert haiku.provider_type == "anthropic" and haiku.name == "claude-haiku-4-5"
    assert haiku.max_context_window > 32_000  # litellm knows this one; the default window is for unknown ones
    assert models[0].max_context_window == models[0].context_window == 32_000
    only = client.models.list(provider_type="anthropic")
    assert [m.handle for m in only] == ["anthropic/claude-haiku-4-5"]


async def test_models_lists_default_configured_and_agents_models(settings: Settings) -> None:
    async with rest_server(settings, models=["openai/extra-model", "openai/fake-model"]) as served:
        await sdk(models_listed, served.base_url)
        async with httpx.AsyncClient(base_url=served.base_url, headers=AUTH) as http:
            no_slash = await http.get("/v1/models")
            assert no_slash.status_code == 200 and len(no_slash.json()) == 3
            assert (await http.get("/v1/models/", headers={"Authorization": "Bearer wrong"})).status_code == 401


async def test_models_is_empty_without_any_model(settings: Settings) -> None:
    async with rest_server(settings, default_model=None) as served:
        async with httpx.AsyncClient(base_url=served.base_url, headers=AUTH) as http:
            assert (await http.get("/v1/models/")).json() == []


async def test_cloud_only_services_answer_empty(settings: Settings) -> None:
    async with rest_server(settings) as served:
        agent = await sdk(lambda: letta(served.base_url).agents.create(name="x"))
        async with httpx.AsyncClient(base_url=served.base_url, headers=AUTH) as http:
            assert (await http.post("/v1/tools/add-base-tools")).json() == []
            assert (await http.get(f"/v1/agents/{agent.id}/secrets")).json() == []
            assert (await http.get(f"/v1/agents/{agent.id}/mcp-servers")).json() == []
            assert (await http.get(f"/v1/agents/{agent.id}/repositories")).json() == {"repositories": []}
            assert (await http.get("/v1/agents/agent-nope/secrets")).status_code == 404
            assert (await http.get("/v1/health/")).json()["version"] == "0.16.6"
            assert (await http.get("/v1/environments")).json() == {"connections": []}
            assert (await http.get("/v1/metadata/balance")).json()["total_balance"] == "no"
            assert (await http.get("/v1/organizations/self/quotas")).json()["lettaTier"]["dailyBucket"] is None


def test_models_flag_and_environment(monkeypatch) -> None:
    from mcp_server_conversations.cli import parse_args, settings_from_args

    assert settings_from_args(parse_args(["--models", "openai/a,openai/b", "anthropic/c"])).models == [
        "openai/a",
        "openai/b",
        "anthropic/c",
    ]
    monkeypatch.setenv("CONVERSATIONS_MODELS", "openai/a, ollama/b")
    assert Settings().models == ["openai/a", "ollama/b"]
    with pytest.raises(ValueError, match="handles"):
        Settings(models=["gpt-4o"])
