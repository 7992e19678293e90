"""export_conversation / import_conversation through the MCP client (both protocol eras, both backends):
a round trip keeps every message and the context's prompt order, so the imported conversation's next
turn sends the model exactly what the source's does; hostile exports are refused with nothing stored."""

from __future__ import annotations

import copy
import json
from typing import Any

from fake_provider import FakeProvider
from mcp import Client
from runtime_helpers import call, call_error, db_rows, new_conversation

from mcp_server_conversations.config import Settings
from mcp_server_conversations.service.export_format import FORMAT_VERSION
from mcp_server_conversations.storage import NewMessage, open_store

KEPT = ("message_type", "role", "content", "reasoning", "tool_calls", "tool_call_id", "status", "is_err", "model")


async def everything(c: Client, conv: str) -> list[dict[str, Any]]:
    page = await call(c, "list_messages", {"conversation_id": conv, "limit": 1000, "include_system": True})
    return page["messages"]


async def build_source(c: Client, fake: FakeProvider) -> tuple[str, str]:
    """A conversation with a memory tool call, reasoning, a failed turn and a compaction: its summary is
    listed where it was made but sent first in the prompt."""
    agent = await call(
        c, "create_agent", {"name": "Ada", "memory_blocks": [{"label": "human", "value": "Ada, a potter"}]}
    )
    conv = await new_conversation(c, agent_id=agent["id"])
    fake.enqueue(
        "Let me note that.",
        tool_calls=[{"name": "core_memory_append", "arguments": {"label": "human", "content": "likes tea"}}],
    )
    fake.enqueue("Noted: you like tea.")
    await call(c, "send_message", {"conversation_id": conv, "content": "I like green tea."})
    fake.enqueue("Zebras are striped.", reasoning="thinking about zebras")
    await call(c, "send_message", {"conversation_id": conv, "content": "Tell me about zebras."})
    fake.enqueue(error_status=400, error_message="bad request from the provider")
    await c.call_tool("send_message", {"conversation_id": conv, "content": "This turn fails."})
    fake.enqueue("SUMMARY: tea and zebras were discussed.", when="Write the summary")
    compacted = await call(c, "compact_conversation", {"conversation_id": conv})
    assert compacted["summary"], compacted
    fake.enqueue("Pottery class is on Tuesday.")
    await call(c, "send_message", {"conversation_id": conv, "content": "When is pottery class?"})
    return agent["id"], conv


def shape(messages: list[dict[str, Any]]) -> list[tuple]:
    kept = [m for m in messages if m["message_type"] != "system_message"]
    return [(*(m[k] for k in KEPT), m["created_at"], m["in_context"]) for m in kept]


async def test_round_trip_keeps_history_context_order_and_the_next_prompt(connect, fake_provider: FakeProvider) -> None:
    async with connect() as c:
        agent_id, src = await build_source(c, fake_provider)
        exported = await call(c, "export_conversation", {"conversation_id": src})
        data = exported["data"]
        assert data["format_version"] == FORMAT_VERSION and exported["format"] == "json"
        source_history = await everything(c, src)
        assert [m["id"] for m in data["messages"]] == [m["id"] for m in source_history]
        types = [m["message_type"] for m in source_history]
        assert {"tool_call_message", "tool_return_message", "reasoning_message", "summary_message"} <= set(types)
        assert any(m["is_err"] for m in source_history)
        # the context in prompt order: the summary right after the system message, though listed later
        context = data["context_message_ids"]
        by_id = {m["id"]: m for m in source_history}
        assert by_id[context[0]]["message_type"] == "system_message"
        assert by_id[context[1]]["message_type"] == "summary_message"
        history_order = [m["id"] for m in source_history if m["id"] in set(context)]
        assert history_order != context
        assert {r["status"] for r in data["runs"]} == {"completed", "failed"}
        assert all(r["usage"] for r in data["runs"] if r["status"] == "completed")

        imported = await call(c, "import_conversation", {"data": data})
        new = imported["conversation"]["id"]
        assert imported["agent_id"] == agent_id and not imported["agent_created"]
        assert imported["runs"] == len(data["runs"])
        copy_history = await everything(c, new)
        assert shape(copy_history) == shape(source_history)
        assert not {m["id"] for m in copy_history} & {m["id"] for m in source_history}
        assert all(m["conversation_id"] == new for m in copy_history)
        # grouping by run kept, with new run ids
        pairs = {(a["run_id"], b["run_id"]) for a, b in zip(source_history[1:], copy_history[1:], strict=True)}
        assert len({a for a, _ in pairs}) == len(pairs) == len({b for _, b in pairs})
        assert not {a for a, _ in pairs if a} & {b for _, b in pairs if b}
        again = (await call(c, "export_conversation", {"conversation_id": new}))["data"]
        position = {m["id"]: i for i, m in enumerate(data["messages"])}
        new_position = {m["id"]: i for i, m in enumerate(again["messages"])}
        assert [new_position[i] for i in again["context_message_ids"]] == [position[i] for i in context]
        assert (await call(c, "get_conversation", {"conversation_id": new}))["message_count"] == len(copy_history) - 1

        # searchable at once
        hits = await call(c, "conversation_search", {"conversation_id": new, "query": "green tea"})
        assert hits["results"] and hits["results"][0]["conversation_id"] == new

        # the next turn of each sends the model the same messages in the same order
        fake_provider.enqueue("Same answer.")
        fake_provider.enqueue("Same answer.")
        await call(c, "send_message", {"conversation_id": src, "content": "And what about glazing?"})
        await call(c, "send_message", {"conversation_id": new, "content": "And what about glazing?"})
        first, second = fake_provider.requests[-2:]
        assert first.messages == second.messages
        assert first.messages[1]["content"].endswith("SUMMARY: tea and zebras were discussed.")


async def test_import_without_the_agent_makes_it_from_the_export(connect, fake_provider: FakeProvider) -> None:
    async with connect() as c:
        agent = await call(
            c,
            "create_agent",
            {"name": "Bo", "system": "Be terse.", "memory_blocks": [{"label": "project/notes", "value": "kiln"}]},
        )
        conv = await new_conversation(c, agent_id=agent["id"], summary="kiln talk")
        fake_provider.enqueue("Hot.")
        await call(c, "send_message", {"conversation_id": conv, "content": "How hot is the kiln?"})
        data = (await call(c, "export_conversation", {"conversation_id": conv}))["data"]
        await call(c, "delete_agent", {"agent_id": agent["id"]})
        text = json.dumps(data)  # its JSON text is accepted too
        result = await call(c, "import_conversation", {"data": text})
        assert result["agent_created"] and result["agent_id"] != agent["id"]
        made = await call(c, "get_agent", {"agent_id": result["agent_id"]})
        assert made["name"] == "Bo" and made["system"] == "Be terse."
        assert [(b["label"], b["value"]) for b in made["memory_blocks"]] == [("project/notes", "kiln")]
        assert result["conversation"]["summary"] == "kiln talk" and result["messages"] == 2
        twice = await call(c, "import_conversation", {"data": data, "agent_id": result["agent_id"]})
        assert twice["conversation"]["id"] != result["conversation"]["id"]  # the same export again: new ids
        other = await call(c, "create_agent", {"name": "Other"})
        into = await call(c, "import_conversation", {"data": data, "agent_id": other["id"]})
        assert into["agent_id"] == other["id"] and not into["agent_created"]


async def test_markdown_is_a_readable_transcript(connect, fake_provider: FakeProvider) -> None:
    async with connect() as c:
        _, conv = await build_source(c, fake_provider)
        md = await call(c, "export_conversation", {"conversation_id": conv, "format": "markdown"})
        assert md["format"] == "markdown" and md["data"] is None
        text = md["markdown"]
        assert text.startswith(f"# {conv}")
        for piece in (
            "### User",
            "I like green tea.",
            "`core_memory_append`",
            "> thinking about zebras",
            "### Summary of earlier messages",
            "failed turn",
            "out of context",
            "Pottery class is on Tuesday.",
        ):
            assert piece in text, piece
        assert text.index("I like green tea.") < text.index("Pottery class is on Tuesday.")


def _base(data: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(data)


def _hostile(data: dict[str, Any]) -> list[tuple[Any, str]]:
    """(data, what the error must say)."""
    cases: list[tuple[Any, str]] = [
        ("{not json", "not valid JSON"),
        ([1, 2], "import_conversationArguments\ndata"),  # refused by the tool's own argument schema
        ({"messages": []}, "data.format_version: missing"),
    ]

    def case(edit, expect: str) -> None:
        d = _base(data)
        edit(d)
        cases.append((d, expect))

    deep: dict[str, Any] = {}
    for _ in range(100):
        deep = {"a": deep}
    case(lambda d: d["messages"][1].update(extra=deep), "nested deeper than 64 levels")
    case(lambda d: d.update(format_version="conversations/99"), "'conversations/99' is not a known layout")
    case(lambda d: d.pop("agent"), "data.agent: Field required")
    case(lambda d: d["messages"][1].update(created_at=5), "data.messages[1].created_at")
    case(lambda d: d["messages"][1].update(created_at="last tuesday"), "not an ISO 8601 time")
    case(lambda d: d["messages"][1].update(message_type="bogus_message"), "data.messages[1].message_type")
    case(lambda d: d["messages"][1].update(content=["a", "list"]), "data.messages[1].content")
    case(lambda d: d["messages"][2].update(id=d["messages"][1]["id"]), "appears twice")
    case(lambda d: d["context_message_ids"].append("message-nope"), "names no message in data.messages")
    case(lambda d: d["context_message_ids"].append(d["context_message_ids"][-1]), "appears twice")
    case(lambda d: d["messages"][1].update(run_id="run-elsewhere"), "names no run in data.runs")
    case(lambda d: d["runs"].append(dict(d["runs"][0])), "data.runs[1].id")
    case(lambda d: d["runs"][0].update(status="exploded"), "data.runs[0].status")
    case(lambda d: d["messages"][1].update(content="x" * 5000), "over the limit of 4000")
    case(lambda d: d["messages"][1].update(content="bad \ud800 text"), "lone surrogate")
    case(lambda d: d["conversation"].update(model="no handle"), "data.conversation.model")
    return cases


def rows_per_table(settings: Settings) -> list[int]:
    tables = ("agents", "blocks", "conversations", "messages", "runs")
    return [db_rows(settings, f"SELECT count(*) AS n FROM {t}")[0]["n"] for t in tables]


async def test_hostile_exports_are_refused_and_nothing_is_stored(
    connect, model_settings: Settings, fake_provider: FakeProvider
) -> None:
    settings = model_settings.model_copy(update={"max_message_chars": 4000})
    async with connect(settings) as c:
        conv = await new_conversation(c)
        fake_provider.enqueue("Fine.")
        await call(c, "send_message", {"conversation_id": conv, "content": "Hello there."})
        data = (await call(c, "export_conversation", {"conversation_id": conv}))["data"]
        assert len(data["messages"]) == 3 and len(data["runs"]) == 1
        counts = rows_per_table(settings)
        for bad, expect in _hostile(data):
            error = await call_error(c, "import_conversation", {"data": bad})
            assert expect in error, (expect, error)
        error = await call_error(c, "import_conversation", {"data": data, "agent_id": "agent-missing"})
        assert "agent agent-missing not found" in error
        assert rows_per_table(settings) == counts


async def test_a_conversation_over_the_tool_limit_points_to_the_streamed_route(
    connect, model_settings: Settings
) -> None:
    async with connect() as c:
        conv = await new_conversation(c)
        store = await open_store(model_settings.resolved_db())
        try:
            rows = [NewMessage("user_message", "user", content=f"line {i}") for i in range(5000)]
            await store.import_messages([(conv, rows)])
        finally:
            await store.close()
        error = await call_error(c, "export_conversation", {"conversation_id": conv})
        assert "over the limit of 5000" in error and f"GET /v1/conversations/{conv}/export" in error


async def test_a_fork_exports_its_inherited_messages_and_their_runs(connect, fake_provider: FakeProvider) -> None:
    async with connect() as c:
        conv = await new_conversation(c)
        fake_provider.enqueue("First answer.")
        await call(c, "send_message", {"conversation_id": conv, "content": "First question."})
        fork = (await call(c, "fork_conversation", {"conversation_id": conv}))["id"]
        fake_provider.enqueue("Fork answer.")
        await call(c, "send_message", {"conversation_id": fork, "content": "Fork question."})
        data = (await call(c, "export_conversation", {"conversation_id": fork}))["data"]
        assert len(data["runs"]) == 2 and len(data["messages"]) == 5
        new = (await call(c, "import_conversation", {"data": data}))["conversation"]["id"]
        assert shape(await everything(c, new)) == shape(await everything(c, fork))
        fake_provider.enqueue("Same.")
        fake_provider.enqueue("Same.")
        await call(c, "send_message", {"conversation_id": fork, "content": "Again?"})
        await call(c, "send_message", {"conversation_id": new, "content": "Again?"})
        first, second = fake_provider.requests[-2:]
        assert first.messages == second.messages
