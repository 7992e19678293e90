"""Letta agent files through the MCP tools: the real files of Letta's `letta-ai/agent-file` repository
(tests/data/agent-files) import with their blocks, model, history and a `skipped` report; our export
passes a re-statement of Letta's schema and round-trips through our importer with the same next prompt."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import pytest
from fake_provider import FakeProvider
from letta_agent_file_schema import AgentFile
from runtime_helpers import MODEL, call, call_error, new_conversation
from test_portability import build_source, everything, rows_per_table

from mcp_server_conversations.config import Settings

FILES = Path(__file__).parent.parent / "data" / "agent-files"


def read_text(name: str) -> str:
    path = FILES / name
    return gzip.decompress(path.read_bytes()).decode() if name.endswith(".gz") else path.read_text()


def read_file(name: str) -> dict[str, Any]:
    data = json.loads(read_text(name))
    return json.loads(data) if isinstance(data, str) else data


EXPECTED: dict[str, dict[str, Any]] = {
    "customer_service.af": {  # JSON-encoded twice, as some of Letta's exports are
        "blocks": 2,
        "messages": [],
        "model": "openai/gpt-4o-mini",
        "window": 32000,
        "tools": ["cancel_order", "check_order_status", "escalate", "terminate_chat"],
    },
    "memgpt_agent_with_convo.af": {"blocks": 2, "messages": [], "model": "openai/gpt-4o-mini", "tools": []},
    "loop.af": {  # the legacy send_message tool: its call is the answer, its return says nothing
        "blocks": 9,
        "messages": ["assistant_message"],
        "skipped_messages": 1,
        "model": "anthropic/claude-sonnet-4-5-20250929",
        "window": 90000,
        "tools": ["archival_memory_insert", "archival_memory_search", "fetch_webpage", "note", "web_search"],
    },
    "evie.af": {  # a sleeptime group: the first agent (the manager) is imported
        "blocks": 12,
        "messages": [],
        "model": "anthropic/claude-opus-4-5-20251101",
        "window": 150000,
        "agents": ["companion-sleeptime_copy (agent-1)"],
        "groups": ["group-0 (sleeptime)"],
        "tool_rules": [{"tool_name": "conversation_search", "type": "continue_loop"}],
        "tools": [
            "archival_memory_insert",
            "archival_memory_search",
            "fetch_webpage",
            "grep_files",
            "memory",
            "memory_apply_patch",
            "memory_finish_edits",
            "open_files",
            "semantic_search_files",
            "web_search",
        ],
    },
    "ezra.af": {  # labels with '/', values over their limit, blocks of no agent, skills
        "blocks": 21,
        "messages": [],
        "model": "anthropic/claude-opus-4-6",
        "raised": {"corrections/ezra-mistakes", "system/active-issues", "system/lettabot"},
        "unattached": 35,
        "skills": ["verify-claims", "ai-news", "eating-sushiritos", "linear"],
        "tools": ["fetch_webpage", "memory_finish_edits", "web_search"],
    },
    "lettabot-builder.af.gz": {
        "blocks": 9,
        "messages": ["user_message", "reasoning_message", "assistant_message"],
        "model": "anthropic/claude-opus-4-6",
        "agents": ["Nameless Agent-sleeptime (agent-1)"],
        "groups": ["group-0 (sleeptime)"],
        "tools": ["fetch_webpage", "memory_finish_edits", "web_search"],
    },
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_real_agent_files_import(connect, name: str) -> None:
    want = EXPECTED[name]
    source = read_file(name)
    first = source["agents"][0]
    by_id = {b["id"]: b for b in source["blocks"]}
    async with connect() as c:
        result = await call(c, "import_agent", {"data": read_text(name)})
        agent, skipped = result["agent"], result["skipped"]
        assert agent["name"] == first["name"] and agent["system"] == first["system"]
        assert agent["model"] == want["model"]
        assert agent["context_window_limit"] == first["llm_config"]["context_window"]
        blocks = agent["memory_blocks"]
        assert len(blocks) == want["blocks"]
        file_blocks = [by_id[i] for i in first["block_ids"]]
        assert sorted((b["label"], b["value"] or "", b["read_only"]) for b in blocks) == sorted(
            (b["label"], b["value"] or "", b["read_only"]) for b in file_blocks
        )
        raised = {r["label"] for r in result["raised_limits"]}
        assert raised == want.get("raised", set())
        for b in blocks:
            assert len(b["value"]) <= b["limit"]
        listed = await everything(c, result["conversation"]["id"])
        assert [m["message_type"] for m in listed if m["message_type"] != "system_message"] == want["messages"]
        assert all(m["in_context"] for m in listed)
        assert skipped["tools"] == want.get("tools", [])
        assert skipped["agents"] == want.get("agents", [])
        assert skipped["groups"] == want.get("groups", [])
        assert skipped["tool_rules"] == want.get("tool_rules", [])
        assert skipped["skills"] == want.get("skills", [])
        assert len(skipped["blocks"]) == want.get("unattached", 0)
        assert skipped["messages"] == want.get("skipped_messages", 0)
        if name == "ezra.af":
            assert "system//references/lettabot" in skipped["blocks"]
            labels = {b["label"] for b in blocks}
            assert "reference/api-endpoints" in labels or any("/" in label for label in labels)


async def test_a_real_history_maps_as_letta_lists_it_and_feeds_the_next_prompt(
    connect, fake_provider: FakeProvider
) -> None:
    """lettabot-builder's sleeptime agent holds 188 messages (reasoning, text, tool calls and returns): put
    first, it is the one imported."""
    data = read_file("lettabot-builder.af.gz")
    data["agents"].reverse()
    agent = data["agents"][0]
    expected: list[str] = []
    rows_of: dict[str, int] = {}
    for m in agent["messages"]:
        before = len(expected)
        kinds = [p["type"] for p in m["content"]]
        if m["role"] == "user":
            expected.append("user_message")
        elif m["role"] == "assistant":
            expected += ["reasoning_message"] * ("reasoning" in kinds) + ["assistant_message"] * ("text" in kinds)
            expected += ["tool_call_message"] * bool(m.get("tool_calls"))
        elif m["role"] == "tool":
            expected.append("tool_return_message")
        rows_of[m["id"]] = len(expected) - before
    async with connect() as c:
        result = await call(c, "import_agent", {"data": data, "name": "sleepy"})
        assert result["agent"]["name"] == "sleepy"
        listed = [m for m in await everything(c, result["conversation"]["id"]) if m["message_type"] != "system_message"]
        assert [m["message_type"] for m in listed] == expected
        assert result["context_messages"] == sum(rows_of[i] for i in agent["in_context_message_ids"])
        first_call = next(m for m in agent["messages"] if m.get("tool_calls"))
        call_row = next(m for m in listed if m["message_type"] == "tool_call_message")
        assert call_row["tool_calls"][0]["tool_call_id"] == first_call["tool_calls"][0]["id"]
        assert call_row["tool_calls"][0]["name"] == first_call["tool_calls"][0]["function"]["name"]
        reasoning = next(m for m in listed if m["message_type"] == "reasoning_message")
        assert reasoning["reasoning"] and reasoning["role"] == "assistant"
        assert listed[0]["created_at"].startswith(agent["messages"][1]["created_at"][:19])

        # a window wide enough for the whole history: no compaction, so the prompt is the imported context
        await call(c, "update_agent", {"agent_id": result["agent"]["id"], "context_window_limit": 2_000_000})
        fake_provider.enqueue("Back to work.")
        turn = {"conversation_id": result["conversation"]["id"], "content": "Status?", "override_model": MODEL}
        await call(c, "send_message", turn)
        assert len(fake_provider.requests) == 1
        sent = fake_provider.requests[-1].messages
        assert sent[0]["role"] == "system" and sent[-1] == {"role": "user", "content": "Status?"}
        assert sum(m["role"] == "tool" for m in sent) == expected.count("tool_return_message")
        assert sum(m["role"] == "user" for m in sent) == expected.count("user_message") + 1
        for i, m in enumerate(sent):  # every tool return follows the assistant message that called it
            if m["role"] == "tool":
                j = i - 1
                while sent[j]["role"] == "tool":
                    j -= 1
                assert m["tool_call_id"] in {t["id"] for t in sent[j]["tool_calls"]}


async def test_legacy_and_hostile_agent_files_are_refused_with_nothing_stored(
    connect, model_settings: Settings
) -> None:
    settings = model_settings.model_copy(update={"max_message_chars": 50_000})
    good = read_file("memgpt_agent_with_convo.af")

    def edited(edit) -> dict[str, Any]:
        d = json.loads(json.dumps(good))
        edit(d)
        return d

    cases: list[tuple[Any, str]] = [
        (read_text("memgpt_agent_with_convo.legacy.af.gz"), "legacy agent file layout"),
        (edited(lambda d: d["agents"][0].pop("in_context_message_ids")), "legacy agent file layout"),
        ("{broken", "not valid JSON"),
        (json.dumps(json.dumps("just text")), "must be a Letta agent file"),
        (edited(lambda d: d.update(agents=[])), "data.agents: List should have at least 1 item"),
        (edited(lambda d: d.pop("agents")), "data.agents: Field required"),
        (edited(lambda d: d["agents"][0]["in_context_message_ids"].append("message-99")), "names no message"),
        (edited(lambda d: d["agents"][0]["block_ids"].append("block-99")), "names no block"),
        (edited(lambda d: d["blocks"][0].update(label="bad<label>")), "is not a block label"),
        (edited(lambda d: d["blocks"][1].update(label=d["blocks"][0]["label"])), "attached twice"),
        (edited(lambda d: d["agents"][0]["llm_config"].update(handle="no-provider")), "is not a model handle"),
        (edited(lambda d: d["blocks"][0].update(value="x" * 60_000)), "over the limit of 50000"),
        (edited(lambda d: d["agents"][0]["messages"][0].update(created_at="soon")), "not an ISO 8601 time"),
        (edited(lambda d: d["agents"][0]["messages"][0].update(role=7)), "data.agents[0].messages[0].role"),
        (edited(lambda d: d["agents"][0].update(name="x" * 300)), "over the limit of 200"),
    ]
    async with connect(settings) as c:
        before = rows_per_table(settings)
        for bad, expect in cases:
            error = await call_error(c, "import_agent", {"data": bad})
            assert expect in error, (expect, error)
        assert rows_per_table(settings) == before


async def test_real_files_pass_the_schema_restatement() -> None:
    """The restatement accepts what Letta itself exported (so it is not stricter than Letta)."""
    for name in EXPECTED:
        AgentFile.model_validate(read_file(name))


async def test_export_is_a_letta_agent_file_and_round_trips_with_the_same_next_prompt(
    connect, fake_provider: FakeProvider
) -> None:
    async with connect() as c:
        agent_id, conv = await build_source(c, fake_provider)
        await call(c, "update_agent", {"agent_id": agent_id, "name": "Ada/Lovelace: test?"})
        await call(c, "update_memory_block", {"agent_id": agent_id, "label": "notes/kiln", "value": "hot"})
        other = await new_conversation(c, agent_id=agent_id)  # never run: not the most recently active
        exported = await call(c, "export_agent", {"agent_id": agent_id})
        parsed = AgentFile.model_validate(exported)
        (a,) = parsed.agents
        assert a.id == "agent-0" and a.name == "Ada_Lovelace_ test_"
        assert a.llm_config is not None and a.llm_config.model_endpoint_type == "openai"
        assert a.llm_config.handle == "openai/fake-model"
        assert all(re.fullmatch(r"block-\d+", b.id) for b in parsed.blocks)
        assert all(re.fullmatch(r"message-\d+", m.id) for m in a.messages)
        assert a.block_ids == [b.id for b in parsed.blocks]
        assert {b.label for b in parsed.blocks} == {"human", "notes/kiln"}
        source_history = await everything(c, conv)
        assert len(a.messages) == len(source_history)
        assert a.in_context_message_ids[0] == "message-0" and a.messages[0].role == "system"
        assert exported == await call(c, "export_agent", {"agent_id": agent_id, "conversation_id": conv}) | {
            "created_at": exported["created_at"]
        }
        empty = await call(c, "export_agent", {"agent_id": agent_id, "conversation_id": other})
        assert len(empty["agents"][0]["messages"]) == 1  # its system message

        back = await call(c, "import_agent", {"data": exported})
        assert back["skipped"] == {
            "tools": [],
            "tool_rules": [],
            "sources": [],
            "files": [],
            "agents": [],
            "groups": [],
            "skills": [],
            "mcp_servers": [],
            "blocks": [],
            "messages": 0,
        }
        new_agent = back["agent"]
        assert [(b["label"], b["value"]) for b in new_agent["memory_blocks"]] == [
            (b["label"], b["value"]) for b in (await call(c, "get_agent", {"agent_id": agent_id}))["memory_blocks"]
        ]
        copy = await everything(c, back["conversation"]["id"])
        kept = ("message_type", "role", "content", "tool_calls", "tool_call_id", "created_at", "in_context")
        assert [tuple(m[k] for k in kept) for m in copy[1:]] == [tuple(m[k] for k in kept) for m in source_history[1:]]

        fake_provider.enqueue("Same.")
        fake_provider.enqueue("Same.")
        await call(c, "send_message", {"conversation_id": conv, "content": "Next?"})
        await call(c, "send_message", {"conversation_id": back["conversation"]["id"], "content": "Next?"})
        first, second = fake_provider.requests[-2:]
        assert first.messages == second.messages
