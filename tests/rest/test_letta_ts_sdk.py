"""Letta's TypeScript SDK (`@letta-ai/letta-client`, run by node) against a real server process with the
fake provider: the snippets of Letta's Conversations page (tests/rest/conversations_page.mjs), with
the two lines that cannot run against any server shown failing and then adapted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fake_provider import FakeProvider
from http_helpers import console_env, spawned_http_server
from letta_ts_sdk_helpers import letta_ts_sdk_modules, run_node_script

pytestmark = [pytest.mark.slow, pytest.mark.processes]

TOKEN = "ts-sdk-token"
PAGE = Path(__file__).with_name("conversations_page.mjs")


def results(stdout: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            out.update(json.loads(line.removeprefix("RESULT ")))
    return out


@pytest.fixture
def modules() -> Path:
    return letta_ts_sdk_modules()


def test_the_conversations_page_runs_with_the_typescript_sdk(
    modules: Path, tmp_path: Path, fake_provider: FakeProvider
) -> None:
    fake_provider.enqueue("Hello Ada, nice to meet you.", reasoning="The user says her name is Ada.")
    fake_provider.enqueue()  # "Quick question": the default echo
    fake_provider.enqueue()  # "Think harder"
    fake_provider.enqueue(
        tool_calls=[{"name": "core_memory_append", "arguments": {"label": "human", "content": "Likes pottery"}}]
    )
    fake_provider.enqueue("Noted: you like pottery.")
    fake_provider.enqueue("Summary: Ada introduced herself and likes pottery.")
    fake_provider.enqueue("A whole reply.")
    fake_provider.enqueue("A streamed reply.")
    env = console_env(**fake_provider.env())
    with spawned_http_server(
        tmp_path / "server.db", "--auth-token", TOKEN, "--model", "openai/fake-model", env=env
    ) as server:
        proc = run_node_script(
            PAGE.read_text(), modules, tmp_path / "project", {"LETTA_BASE_URL": server.base_url, "LETTA_API_KEY": TOKEN}
        )
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    out = results(proc.stdout)
    conversation = out["conversation"]
    assert f"Created conversation: {conversation}" in proc.stdout.splitlines()
    assert "Hello Ada, nice to meet you." in proc.stdout.splitlines()  # printed as the page does

    chunks = out["chunks"]
    assistant = [c for c in chunks if c["type"] == "assistant_message"]
    reasoning = [c for c in chunks if c["type"] == "reasoning_message"]
    assert len(assistant) > 1 and len({c["id"] for c in assistant}) == 1  # token deltas share the message id
    assert "".join(c["reasoning"] for c in reasoning) == "The user says her name is Ada."
    assert [c["type"] for c in chunks[-2:]] == ["stop_reason", "usage_statistics"]
    assert chunks[-2]["stop_reason"] == "end_turn" and chunks[-1]["total_tokens"] > 0
    assert chunks[-1]["step_count"] == 1
    seqs = [c["seq_id"] for c in chunks if c["seq_id"] is not None]
    assert seqs == sorted(seqs) and len(seqs) == len(chunks)

    assert out["override"] == {"assistant": ["Fake reply to: Think harder"], "kept": "openai/gpt-5-mini"}
    models = [r.model for r in fake_provider.requests]
    assert models[:3] == ["agent-model", "gpt-5-mini", "claude-haiku-4-5"]
    assert len(out["conversations"]) == 2 and conversation in out["conversations"]

    # The page's two lines fail on the SDK's page object, not on anything the server sends.
    assert out["page_for_of"] == "TypeError: messages is not iterable"
    assert out["page_index"].startswith("TypeError: Cannot read properties of undefined")
    history = out["history"]
    assert history[0] == "[assistant_message] Noted: you like pottery."  # newest first by default
    assert history[-1] == "[user_message] Hi, I am Ada"
    kinds = {line.split("]")[0][1:] for line in history}
    assert {
        "user_message",
        "reasoning_message",
        "assistant_message",
        "tool_call_message",
        "tool_return_message",
    } <= kinds
    assert out["oldest"]["type"] == "user_message"
    assert out["tool"]["name"] == "core_memory_append" and out["tool"]["status"] == "success"
    assert out["tool"]["call_id"] == out["tool"]["return_id"]
    assert out["ascending"][0] == out["oldest"]["id"] and len(out["ascending"]) == len(history)

    assert out["fork"]["id"] != conversation and out["fork"]["agent_id"] == out["agent"]
    assert out["fork"]["messages"] == out["ascending"]
    assert out["early_fork"] == [out["oldest"]["id"]]
    assert out["cancel"] == {}
    compact = out["compact"]
    assert compact["summary"] == "Summary: Ada introduced herself and likes pottery."
    assert compact["after"] < compact["before"]
    assert out["search"] and {m["conversation_id"] for m in out["search"]} == {conversation}
    assert out["not_found"] == {"name": "NotFoundError", "status": 404}
    assert out["agent_direct"] == {
        "whole": ["A whole reply."],
        "stop": "end_turn",
        "streamed": ["A streamed reply."],
        "compacted": 4,
    }
