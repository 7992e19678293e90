"""Letta Code, Letta's own CLI, headless against a real server process with the fake provider.

One server serves the module (each test has its own HOME, so its own agents); the fake provider
scripts the model. See tests/letta_code_helpers.py for how the CLI is installed and run."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fake_provider import FakeProvider
from http_helpers import Spawned, console_env, spawned_http_server
from letta_code_helpers import DroppingProxy, LettaCode, letta_code_path
from letta_tui_helpers import WAIT, Tui

pytestmark = [pytest.mark.slow, pytest.mark.processes]

TOKEN = "letta-code-token"
MODEL = "openai/fake-model"


@pytest.fixture(scope="module")
def letta_js() -> Path:
    return letta_code_path()


@pytest.fixture(scope="module")
def server(
    letta_js: Path, tmp_path_factory: pytest.TempPathFactory, _fake_provider_server: FakeProvider
) -> Iterator[Spawned]:
    db = tmp_path_factory.mktemp("letta-code") / "server.db"
    env = console_env(**_fake_provider_server.env())
    with spawned_http_server(
        db, "--auth-token", TOKEN, "--model", MODEL, "--models", "openai/other-model", env=env
    ) as proc:
        yield proc


@pytest.fixture
def letta(letta_js: Path, server: Spawned, tmp_path: Path, fake_provider: FakeProvider) -> LettaCode:
    return LettaCode(letta_js, server.base_url, tmp_path / "home", TOKEN)


def rest(server: Spawned, method: str, path: str, **kwargs) -> httpx.Response:
    r = httpx.request(
        method, server.base_url + path, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30, **kwargs
    )
    r.raise_for_status()
    return r


def test_first_run_creates_an_agent_and_prints_the_reply(
    letta: LettaCode, server: Spawned, fake_provider: FakeProvider
) -> None:
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


def test_later_runs_new_conversation_and_listing(
    letta: LettaCode, server: Spawned, fake_provider: FakeProvider
) -> None:
    first = letta.prompt("remember the word walrus", "--new-agent", "-m", MODEL)
    agent, conv = first["agent_id"], first["conversation_id"]
    again = letta.prompt("and again", "--conversation", conv)
    assert again["conversation_id"] == conv and again["agent_id"] == agent
    assert "walrus" in str(fake_provider.requests[-1].messages)  # the model saw the earlier turn
    parallel = letta.prompt("a parallel thread", "--new")
    assert parallel["agent_id"] == agent and parallel["conversation_id"] != conv
    later = letta.prompt("plain later run")
    assert later["agent_id"] == agent

    listed = letta.json("messages", "list", "--agent", agent, "--conversation", conv)
    assert any("and again" in str(m.get("content")) for m in listed)
    assert letta.json("messages", "list", "--agent", agent) == []  # its default conversation, still empty
    found = letta.json("messages", "search", "--query", "walrus", "--agent", agent)
    assert any(m["conversation_id"] == conv for m in found)
    everywhere = letta.json("messages", "search", "--query", "walrus", "--all-agents")
    assert any(m["conversation_id"] == conv for m in everywhere)
    agents = letta.json("agents", "list", "--tags", "origin:letta-code")
    assert agent in {a["id"] for a in agents["body"]}
    assert letta.json("agents", "list", "--name", "no such agent")["body"] == []
    # Tags and model settings were kept: a later start re-PATCHes neither.
    state = rest(server, "GET", f"/v1/agents/{agent}").json()
    assert "origin:letta-code" in state["tags"] and state["model_settings"]["parallel_tool_calls"] is True


def test_client_side_tool_approved_and_denied(letta: LettaCode, fake_provider: FakeProvider) -> None:
    fake_provider.enqueue(
        tool_calls=[{"name": "exec_command", "arguments": {"cmd": "printf ran-%s 42", "description": "print a marker"}}]
    )
    fake_provider.enqueue("The command ran.")
    ran = letta.prompt("Run the command", "--new-agent", "-m", MODEL)
    assert ran["subtype"] == "success" and ran["result"] == "The command ran."
    assert ran["usage"]["step_count"] == 2
    tool_result = fake_provider.requests[-1].messages[-1]
    assert tool_result["role"] == "tool" and "ran-42" in tool_result["content"]  # run by Letta Code, here

    # Letta Code refuses a call missing a required argument: a denial with its reason continues the turn.
    fake_provider.enqueue(tool_calls=[{"name": "exec_command", "arguments": {"cmd": "printf nope"}}])
    fake_provider.enqueue("Denied, fine.")
    denied = letta.prompt("Run another", "--conversation", ran["conversation_id"])
    assert denied["result"] == "Denied, fine."
    refusal = fake_provider.requests[-1].messages[-1]
    assert refusal["role"] == "tool" and "denied" in refusal["content"] and "description" in refusal["content"]


def test_dropped_stream_is_recovered_from_its_seq_id(
    letta_js: Path, server: Spawned, tmp_path: Path, fake_provider: FakeProvider
) -> None:
    agent = rest(server, "POST", "/v1/agents/", json={"name": "recovering", "model": MODEL}).json()
    proxy = DroppingProxy(int(server.base_url.rsplit(":", 1)[1]), after=2)
    try:
        letta = LettaCode(letta_js, proxy.base_url, tmp_path / "home", TOKEN)
        release = threading.Event()
        fake_provider.enqueue("one two three four five six", hold_after=2, wait_for=release)
        threading.Thread(target=lambda: proxy.dropped.wait(60) and release.set(), daemon=True).start()
        result = letta.prompt("count", "--agent", agent["id"])
    finally:
        proxy.close()
    assert proxy.dropped.is_set()
    assert result["result"] == "one two three four five six"  # each word once: no chunk lost or repeated
    resumed = [r for r in proxy.requests if r.startswith("POST /v1/runs/") and "/stream" in r]
    assert resumed, proxy.requests


def test_pending_approval_left_before_a_restart_is_closed_on_resume(
    letta_js: Path, tmp_path: Path, fake_provider: FakeProvider
) -> None:
    db = tmp_path / "restart.db"
    env = console_env(**fake_provider.env())
    flags = ("--auth-token", TOKEN, "--model", MODEL)
    fake_provider.enqueue(tool_calls=[{"name": "exec_command", "arguments": {"cmd": "ls"}, "id": "call_left"}])
    with spawned_http_server(db, *flags, env=env) as first:
        agent = rest(first, "POST", "/v1/agents/", json={"name": "interrupted", "model": MODEL}).json()
        conv = rest(first, "POST", f"/v1/conversations/?agent_id={agent['id']}", json={}).json()["id"]
        stream = rest(
            first,
            "POST",
            f"/v1/conversations/{conv}/messages",
            json={
                "messages": [{"role": "user", "content": "list files"}],
                "client_tools": [{"name": "exec_command", "parameters": {"type": "object"}}],
            },
        ).text
        assert '"stop_reason":"requires_approval"' in stream  # the client that should answer went away
    fake_provider.enqueue("Picking up again.")
    with spawned_http_server(db, *flags, env=env) as second:
        letta = LettaCode(letta_js, second.base_url, tmp_path / "home", TOKEN)
        result = letta.prompt("next", "--conversation", conv)
    assert result["result"] == "Picking up again."
    sent = fake_provider.requests[-1].messages
    assert sent[-2]["role"] == "tool" and sent[-2]["tool_call_id"] == "call_left"  # closed by Letta Code
    assert sent[-1]["role"] == "user" and sent[-1]["content"].endswith("next")


def command(tui: Tui, text: str, done: str, menu: str | None = None) -> None:
    """Run a slash command. Letta Code refuses one while it still ends the turn before, which it may
    do after the reply is on the screen: then it is sent again."""
    deadline = time.monotonic() + WAIT
    while True:
        tui.type(text)
        if menu is not None:
            tui.wait_for(menu)
        tui.mark()
        tui.enter()
        if tui.wait_for_any(done, "is disabled while the agent is running") == done:
            return
        assert time.monotonic() < deadline, f"{text!r} was refused until the deadline"
        time.sleep(0.2)


def test_fork_in_the_interactive_ui_continues_in_a_copy(
    letta: LettaCode, server: Spawned, fake_provider: FakeProvider
) -> None:
    fake_provider.enqueue("Noted the walrus.")
    fake_provider.enqueue("Still the walrus.")
    tui = Tui(letta, "--new-agent", "-m", MODEL)
    try:
        tui.wait_for("/resume")  # the welcome's command list: the prompt takes input now
        tui.submit("remember the word walrus", then="Noted the walrus.")
        agent = json.loads((letta.home / ".letta" / "settings.json").read_text())["lastAgent"]
        before = {c["id"] for c in rest(server, "GET", f"/v1/conversations/?agent_id={agent}").json()}
        command(tui, "/fork", "Forked conversation", menu="Fork the current conversation")  # the menu offers it
        tui.submit("which word?", then="Still the walrus.")
        forked = {c["id"] for c in rest(server, "GET", f"/v1/conversations/?agent_id={agent}").json()}
        command(tui, "/fork side quest", "Forked conversation")  # a fork of the fork, with its summary
    finally:
        tui.close()

    (source,) = before  # the agent's default conversation, where the TUI starts
    (fork,) = forked - before
    listed = rest(server, "GET", f"/v1/conversations/?agent_id={agent}").json()
    (second,) = [c for c in listed if c["id"] not in forked]
    assert second["summary"] == "side quest"

    def said(conv: str) -> list[tuple[str, str]]:
        messages = rest(server, "GET", f"/v1/conversations/{conv}/messages?order=asc").json()
        return [(m["message_type"], m["content"].rsplit("\n", 1)[-1].strip()) for m in messages]

    first_turn = [("user_message", "remember the word walrus"), ("assistant_message", "Noted the walrus.")]
    assert said(source) == first_turn  # untouched by the fork's turn
    assert said(fork) == [*first_turn, ("user_message", "which word?"), ("assistant_message", "Still the walrus.")]
    assert "walrus" in str(fake_provider.requests[-1].messages[:-1])  # the model saw the source's context
    assert said(second["id"]) == said(fork)
