"""Letta Code, Letta's own CLI, headless against a real server process with the fake provider.

One server serves the module (each test has its own HOME, so its own agents); the fake provider
scripts the model. See tests/letta_code_helpers.py for how the CLI is installed and run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fake_provider import FakeProvider
from http_helpers import Spawned, console_env, spawned_http_server
from letta_code_helpers import LettaCode, letta_code_path

TOKEN = "letta-code-token"
MODEL = "openai/fake-model"


@pytest.fixture(scope="module")
def letta_js() -> Path:
    return letta_code_path()


@pytest.fixture(scope="module")
def server(letta_js: Path, tmp_path_factory: pytest.TempPathFactory,
           _fake_provider_server: FakeProvider) -> Iterator[Spawned]:
    db = tmp_path_factory.mktemp("letta-code") / "server.db"
    env = console_env(**_fake_provider_server.env())
    with spawned_http_server(db, "--auth-token", TOKEN, "--model", MODEL, "--models", "openai/other-model",
                             env=env) as proc:
        yield proc


@pytest.fixture
def letta(letta_js: Path, server: Spawned, tmp_path: Path, fake_provider: FakeProvider) -> LettaCode:
    return LettaCode(letta_js, server.base_url, tmp_path / "home", TOKEN)


def rest(server: Spawned, method: str, path: str, **kwargs) -> httpx.Response:
    r = httpx.request(method, server.base_url + path, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30,
                      **kwargs)
    r.raise_for_status()
    return r


def test_first_run_creates_an_agent_and_prints_the_reply(letta: LettaCode, server: Spawned,
                                                         fake_provider: FakeProvider) -> None:
    fake_provider.enqueue("Hello from the fake model")
    result = letta.prompt("Hello", "--new-agent", "-m", MODEL)
    assert result["subtype"] == "success" and result["result"] == "Hello from the fake model"
    agent = rest(server, "GET", f"/v1/agents/{result['agent_id']}").json()
    assert agent["model"] == MODEL and agent["name"] == "Letta Code"
    conv = rest(server, "GET", f"/v1/conversations/{result['conversation_id']}").json()
    assert conv["agent_id"] == result["agent_id"]
    assert fake_provider.requests[-1].last_user.endswith("Hello")


def test_plain_prompt_in_a_fresh_home_creates_the_default_agent(letta: LettaCode, fake_provider: FakeProvider) -> None:
    fake_provider.enqueue("first words")
    result = letta.prompt("Hi there")
    assert result["subtype"] == "success" and result["result"] == "first words"
    assert result["agent_id"].startswith("agent-")
