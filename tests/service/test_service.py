"""The conversation service on a real SQLite file: validation, the default agent, update
semantics, memory blocks and pagination of agents, conversations and history."""

from __future__ import annotations

import asyncio
import base64
import json
import random
from collections.abc import AsyncIterator

import pytest
from foundation_helpers import count_rows, remove_from_context, say, sql_write, turn

from mcp_server_conversations.config import Settings
from mcp_server_conversations.errors import NotFoundError, ValidationError
from mcp_server_conversations.service.conversations import UNSET, ConversationService, check_handle
from mcp_server_conversations.storage import NewMessage, SQLiteStore
from mcp_server_conversations.util import encode_cursor, parse_date_bound


@pytest.fixture
async def svc(settings: Settings, store: SQLiteStore) -> AsyncIterator[ConversationService]:
    yield ConversationService(store, settings)


def field_of(exc: pytest.ExceptionInfo) -> str:
    return exc.value.field


# -- the default agent --


async def test_the_default_agent_is_made_on_first_use_with_persona_and_human(svc: ConversationService) -> None:
    conv = await svc.create_conversation()
    agent = await svc.get_agent(conv.agent_id)
    assert agent.model is None
    assert [b.label for b in agent.memory_blocks] == ["persona", "human"]
    again = await svc.create_conversation()
    assert again.agent_id == conv.agent_id


async def test_concurrent_first_calls_make_one_default_agent(svc: ConversationService, settings: Settings) -> None:
    convs = await asyncio.gather(*(svc.create_conversation() for _ in range(8)))
    assert len({c.agent_id for c in convs}) == 1
    assert count_rows(settings.resolved_db(), "agents") == 1


async def test_a_deleted_default_agent_is_made_again_on_next_use(svc: ConversationService) -> None:
    first = (await svc.create_conversation()).agent_id
    await svc.delete_agent(first)
    with pytest.raises(NotFoundError):
        await svc.get_agent(first)
    second = (await svc.create_conversation()).agent_id
    assert second != first
    assert (await svc.list_conversations()).conversations[0].agent_id == second


async def test_an_explicit_agent_id_must_exist(svc: ConversationService) -> None:
    with pytest.raises(NotFoundError, match="agent agent-nope not found"):
        await svc.create_conversation("agent-nope")
    with pytest.raises(NotFoundError):
        await svc.list_conversations("agent-nope")
    assert (await svc.list_agents()).agents == []  # no default agent was made on the way


# -- agents --


async def test_create_agent_validates_each_field(svc: ConversationService, settings: Settings) -> None:
    cases = [
        ({"name": "  "}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "a", "model": "gpt-4o"}, "model"),
        ({"name": "a", "model": "openai/"}, "model"),
        ({"name": "a", "model": "/gpt"}, "model"),
        ({"name": "a", "context_window_limit": 10}, "context_window_limit"),
        ({"name": "a", "system": "s" * (settings.max_message_chars + 1)}, "system"),
        ({"name": "a", "memory_blocks": [{"label": "", "value": "v"}]}, "memory_blocks[0].label"),
        ({"name": "a", "memory_blocks": [{"label": "bad<tag>", "value": "v"}]}, "memory_blocks[0].label"),
        ({"name": "a", "memory_blocks": [{"label": "p", "value": "toolong", "limit": 3}]}, "memory_blocks[0].value"),
        (
            {"name": "a", "memory_blocks": [{"label": "p", "value": ""}, {"label": "p", "value": ""}]},
            "memory_blocks[1].label",
        ),
    ]
    for kwargs, field in cases:
        with pytest.raises(ValidationError) as exc:
            await svc.create_agent(**kwargs)
        assert field_of(exc) == field, kwargs
        assert f"invalid {field}" in exc.value.message
    assert count_rows(settings.resolved_db(), "agents") == 0


async def test_create_agent_keeps_what_was_given(svc: ConversationService) -> None:
    agent = await svc.create_agent(
        " Ada ",
        "anthropic/claude-haiku-4-5",
        "be brief",
        [{"label": "project", "value": "pottery", "description": "what we build", "limit": 50, "read_only": True}],
        4096,
    )
    assert (agent.name, agent.model, agent.system, agent.context_window_limit) == (
        "Ada",
        "anthropic/claude-haiku-4-5",
        "be brief",
        4096,
    )
    (block,) = agent.memory_blocks
    assert (block.label, block.value, block.description, block.limit, block.read_only) == (
        "project",
        "pottery",
        "what we build",
        50,
        True,
    )
    assert (await svc.get_agent(agent.id)) == agent


async def test_model_handles(svc: ConversationService) -> None:
    for ok in ("openai/gpt-5-mini", "ollama/llama3.2", "openrouter/anthropic/claude-3.5", " openai/x "):
        assert check_handle("model", ok) == ok.strip()
    for bad in ("gpt", "openai/", "/x", "", "open ai/x", "openai/ x"):
        with pytest.raises(ValidationError):
            check_handle("model", bad)


async def test_update_agent_leaves_omitted_fields_and_clears_explicit_nulls(svc: ConversationService) -> None:
    agent = await svc.create_agent("a", "openai/m1", "custom", None, 4096)
    same = await svc.update_agent(agent.id, name=UNSET, model=UNSET, system=UNSET, context_window_limit=UNSET)
    assert same == agent
    renamed = await svc.update_agent(agent.id, name="b", model=UNSET, system=UNSET, context_window_limit=UNSET)
    assert (renamed.name, renamed.model, renamed.system, renamed.context_window_limit) == (
        "b",
        "openai/m1",
        "custom",
        4096,
    )
    cleared = await svc.update_agent(agent.id, model=None, context_window_limit=None, system=None)
    assert cleared.model is None and cleared.context_window_limit is None
    assert cleared.system == (await svc.get_agent((await svc.create_conversation()).agent_id)).system  # the default
    for kwargs, field in [
        ({"name": None}, "name"),
        ({"name": ""}, "name"),
        ({"model": "nope"}, "model"),
        ({"context_window_limit": 5}, "context_window_limit"),
    ]:
        with pytest.raises(ValidationError) as exc:
            await svc.update_agent(agent.id, **kwargs)
        assert field_of(exc) == field
    with pytest.raises(NotFoundError):
        await svc.update_agent("agent-nope", name="x")


async def test_list_agents_pages_by_creation(svc: ConversationService) -> None:
    made = [(await svc.create_agent(f"a{i}")).id for i in range(7)]
    seen, after = [], None
    while True:
        page = await svc.list_agents(limit=3, after=after)
        seen += [a.id for a in page.agents]
        after = page.next_cursor
        if after is None:
            break
    assert seen == made
    with pytest.raises(ValidationError) as exc:
        await svc.list_agents(limit=2, after=encode_cursor({"kind": "agents", "order": "asc"}))
    assert field_of(exc) == "after"


# -- memory blocks --


async def test_update_memory_block_creates_then_changes_a_block(svc: ConversationService) -> None:
    created = await svc.update_memory_block(None, "project", value="pottery class", description="notes")
    assert (created.value, created.description, created.limit, created.read_only) == (
        "pottery class",
        "notes",
        20_000,
        False,
    )
    changed = await svc.update_memory_block(None, "project", value=UNSET, description=None, limit=100, read_only=True)
    assert (changed.id, changed.value, changed.description, changed.limit, changed.read_only) == (
        created.id,
        "pottery class",
        None,
        100,
        True,
    )
    agent_id = (await svc.create_conversation()).agent_id
    labels = [b.label for b in (await svc.get_agent(agent_id)).memory_blocks]
    assert labels == ["persona", "human", "project"]
    assert "pottery class" in await svc.system_text(agent_id)


async def test_update_memory_block_rejects_bad_values(svc: ConversationService, settings: Settings) -> None:
    await svc.update_memory_block(None, "small", value="abc", limit=5)
    cases = [
        (("",), {"value": "x"}, "label"),
        (("a\nb",), {"value": "x"}, "label"),
        (("x" * 101,), {"value": "x"}, "label"),
        (("small",), {"value": "toolong"}, "value"),
        (("small",), {"limit": 2}, "value"),  # the current value no longer fits
        (("small",), {"limit": 0}, "limit"),
        (("big",), {"value": "v" * (settings.max_message_chars + 1), "limit": 10**7}, "value"),
        (("big",), {"description": "d" * (settings.max_message_chars + 1)}, "description"),
    ]
    for args, kwargs, field in cases:
        with pytest.raises(ValidationError) as exc:
            await svc.update_memory_block(None, *args, **kwargs)
        assert field_of(exc) == field, (args, kwargs)
    with pytest.raises(NotFoundError):
        await svc.update_memory_block("agent-nope", "x", value="y")
    block = await svc.get_block(None, "small")
    assert (block.value, block.limit) == ("abc", 5)
    assert await svc.store.get_block(await svc.resolve_agent(None), "big") is None


async def test_max_message_chars_applies_to_block_values(tmp_path) -> None:
    settings = Settings(db=tmp_path / "small.db", max_message_chars=50)
    store = await SQLiteStore.open(settings.resolved_db())
    try:
        svc = ConversationService(store, settings)
        await svc.update_memory_block(None, "notes", value="v" * 50)
        with pytest.raises(ValidationError, match="max-message-chars") as exc:
            await svc.update_memory_block(None, "notes", value="v" * 51)
        assert field_of(exc) == "value"
    finally:
        await store.close()


# -- conversations --


async def test_update_conversation_omitted_vs_null(svc: ConversationService) -> None:
    conv = await svc.create_conversation(None, "openai/m", "title")
    same = await svc.update_conversation(conv.id, model=UNSET, summary=UNSET)
    assert (same.model, same.summary) == ("openai/m", "title")
    only_summary = await svc.update_conversation(conv.id, model=UNSET, summary=None)
    assert (only_summary.model, only_summary.summary) == ("openai/m", None)
    cleared = await svc.update_conversation(conv.id, model=None)
    assert cleared.model is None
    with pytest.raises(ValidationError) as exc:
        await svc.update_conversation(conv.id, model="bad")
    assert field_of(exc) == "model"
    with pytest.raises(NotFoundError, match=r"conversation conv-nope not found"):
        await svc.update_conversation("conv-nope", summary="x")


async def make_convs(svc: ConversationService, store: SQLiteStore, completions: list[str | None]) -> list[str]:
    """Conversations with the given last_run_completion values; created_at has ties in pairs."""
    ids = []
    for i, done in enumerate(completions):
        conv = await svc.create_conversation()
        await store.update_conversation(conv.id, {"last_run_completion": done})
        await sql_write(  # ties in created_at, broken by id
            store, "UPDATE conversations SET created_at = ? WHERE id = ?", (f"2026-01-0{1 + i // 2}", conv.id)
        )
        ids.append(conv.id)
    return ids


async def walk_conversations(svc: ConversationService, order_by: str, order: str, limit: int) -> list[str]:
    seen, after = [], None
    for _ in range(100):
        page = await svc.list_conversations(None, order_by, order, limit, after)  # type: ignore[arg-type]
        assert len(page.conversations) <= limit
        seen += [c.id for c in page.conversations]
        after = page.next_cursor
        if after is None:
            return seen
    raise AssertionError("pagination did not end")


@pytest.mark.parametrize("order_by", ["created_at", "last_run_completion"])
@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_list_conversations_pages_are_stable_and_complete(
    svc: ConversationService, store: SQLiteStore, order_by: str, order: str
) -> None:
    completions = [None, "2026-02-03", "2026-02-01", None, "2026-02-03", "2026-02-02", None, "2026-02-01"]
    ids = await make_convs(svc, store, completions)
    rows = [
        {"id": i, "created_at": f"2026-01-0{1 + n // 2}", "last_run_completion": c}
        for n, (i, c) in enumerate(zip(ids, completions, strict=True))
    ]
    done = sorted(
        (r for r in rows if r[order_by] is not None), key=lambda r: (r[order_by], r["id"]), reverse=order == "desc"
    )
    never = sorted((r for r in rows if r[order_by] is None), key=lambda r: r["id"], reverse=order == "desc")
    expected = [r["id"] for r in done + never]  # never-run conversations last in both orders
    for limit in (1, 2, 3, 5, 8, 50):
        assert await walk_conversations(svc, order_by, order, limit) == expected, limit


async def test_a_conversation_cursor_only_works_with_its_own_ordering(svc: ConversationService, store) -> None:
    await make_convs(svc, store, [None, "2026-02-01", None])
    page = await svc.list_conversations(None, "last_run_completion", "asc", 1)
    assert page.next_cursor
    for order_by, order in [("created_at", "asc"), ("last_run_completion", "desc"), ("created_at", "desc")]:
        with pytest.raises(ValidationError, match="start again without") as exc:
            await svc.list_conversations(None, order_by, order, 1, page.next_cursor)  # type: ignore[arg-type]
        assert field_of(exc) == "after"
    other = await svc.create_agent("other")
    with pytest.raises(ValidationError):
        await svc.list_conversations(other.id, "last_run_completion", "asc", 1, page.next_cursor)


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!!",
        "",
        "e30",  # {}
        base64.urlsafe_b64encode(b"[1,2]").decode(),
        encode_cursor({"kind": "conversations", "order_by": "created_at", "order": "desc"}),
        encode_cursor({"kind": "conversations", "order_by": "created_at", "order": "desc", "k": [1, 2]}),
        encode_cursor({"kind": "conversations", "order_by": "created_at", "order": "desc", "k": "ab"}),
        encode_cursor({"kind": "messages", "order": "desc", "k": [0, 0]}),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
)
async def test_bad_conversation_cursors_are_validation_errors(svc: ConversationService, cursor: str) -> None:
    await svc.create_conversation()
    with pytest.raises(ValidationError) as exc:
        await svc.list_conversations(None, "created_at", "desc", 1, cursor or " ")
    assert field_of(exc) == "after"


async def test_list_limits(svc: ConversationService) -> None:
    conv = await svc.create_conversation()
    for bad in (0, -1, 1001):
        for call in (svc.list_agents(bad), svc.list_conversations(limit=bad), svc.list_messages(conv.id, bad)):
            with pytest.raises(ValidationError) as exc:
                await call
            assert field_of(exc) == "limit"
    for bad in (0, 101):
        with pytest.raises(ValidationError) as exc:
            await svc.search("x", limit=bad)
        assert field_of(exc) == "limit"
    assert (await svc.search("x", limit=100)).results == []


# -- history --


async def history_fixture(svc: ConversationService, store: SQLiteStore) -> tuple[str, list, list]:
    """A fork with inherited messages of several types and its own; returns (fork id, inherited, own)."""
    src = await svc.create_conversation()
    inherited = []
    for i in range(4):
        inherited += await store.append_messages(
            src.id,
            [
                NewMessage("user_message", "user", content=f"q{i}"),
                NewMessage("reasoning_message", "assistant", reasoning=f"r{i}"),
                NewMessage(
                    "tool_call_message",
                    "assistant",
                    tool_calls=[{"tool_call_id": f"t{i}", "name": "memory_insert", "arguments": "{}"}],
                ),
                NewMessage("tool_return_message", "tool", content="ok", tool_call_id=f"t{i}", status="success"),
                NewMessage("assistant_message", "assistant", content=f"a{i}"),
            ],
        )
    await say(store, src.id, "past the fork point")  # in the source's context, after message_id: not inherited
    fork = await svc.fork_conversation(src.id, inherited[-1].id)
    await say(store, src.id, "source only")
    own = []
    for i in range(3):
        own += await turn(store, fork.id, f"fq{i}", f"fa{i}")
    return fork.id, inherited, own


@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize(
    "types",
    [None, ["user_message"], ["assistant_message", "tool_return_message"], ["system_message"], ["summary_message"]],
)
@pytest.mark.parametrize("include_system", [False, True])
async def test_list_messages_pages_across_system_inherited_and_own(
    svc: ConversationService, store: SQLiteStore, order: str, types: list[str] | None, include_system: bool
) -> None:
    fork_id, inherited, own = await history_fixture(svc, store)
    system = (await store.context_messages(fork_id))[0]
    full = ([system] if include_system else []) + inherited + own
    want = [m.id for m in full if types is None or m.message_type in types]
    if order == "desc":
        want.reverse()
    for limit in (1, 2, 3, 7, 1000):
        seen, after = [], None
        for _ in range(200):
            page = await svc.list_messages(fork_id, limit, after, order, types, include_system)  # type: ignore[arg-type]
            assert len(page.messages) <= limit
            seen += [m.id for m in page.messages]
            after = page.next_cursor
            if after is None:
                break
        assert seen == want, (limit, order, types)


async def test_list_messages_reports_in_context_and_writer(svc: ConversationService, store: SQLiteStore) -> None:
    fork_id, inherited, own = await history_fixture(svc, store)
    page = await svc.list_messages(fork_id, 1000)
    src_id = inherited[0].conversation_id
    assert [m.conversation_id for m in page.messages] == [src_id] * len(inherited) + [fork_id] * len(own)
    assert all(m.in_context for m in page.messages)
    await remove_from_context(store, fork_id, [own[0].id], mark_err=True)
    first_own = (await svc.list_messages(fork_id, 1000)).messages[len(inherited)]
    assert (first_own.id, first_own.in_context, first_own.is_err) == (own[0].id, False, True)
    assert (await svc.get_conversation(fork_id)).message_count == len(inherited) + len(own)


async def test_a_message_cursor_belongs_to_one_conversation_and_order(svc: ConversationService, store) -> None:
    a = await svc.create_conversation()
    b = await svc.create_conversation()
    await say(store, a.id, "1", "2", "3")
    page = await svc.list_messages(a.id, 1)
    for conv, order in ((b.id, "asc"), (a.id, "desc")):
        with pytest.raises(ValidationError) as exc:
            await svc.list_messages(conv, 1, page.next_cursor, order)  # type: ignore[arg-type]
        assert field_of(exc) == "after"
    forged = encode_cursor({"kind": "messages", "order": "asc", "conv": a.id, "k": ["x", None]})
    with pytest.raises(ValidationError):
        await svc.list_messages(a.id, 1, forged)
    with pytest.raises(ValidationError) as exc:
        await svc.list_messages(a.id, 1, message_types=["bogus_message"])
    assert field_of(exc) == "message_types"
    with pytest.raises(NotFoundError):
        await svc.list_messages("conv-nope")


# -- dates --


def test_date_bounds() -> None:
    assert parse_date_bound("start_date", "2026-03-04", end=False) == "2026-03-04T00:00:00.000000Z"
    assert parse_date_bound("end_date", "2026-03-04", end=True) == "2026-03-04T23:59:59.999999Z"
    assert parse_date_bound("end_date", "20260304", end=True) == "2026-03-04T23:59:59.999999Z"
    assert parse_date_bound("start_date", "2026-03-04T10:00:00Z", end=False) == "2026-03-04T10:00:00.000000Z"
    assert parse_date_bound("start_date", "2026-03-04T12:00:00+02:00", end=False) == "2026-03-04T10:00:00.000000Z"
    assert parse_date_bound("start_date", "2026-03-04 10:00", end=False) == "2026-03-04T10:00:00.000000Z"
    assert parse_date_bound("start_date", None, end=False) is None
    for bad in (
        "yesterday",
        "2026-13-01",
        "2026-02-30",
        "",
        "  ",
        "2026-03-04T25:00",
        "0001-01-01T00:00:00+05:00",
        "'; DROP TABLE messages; --",
    ):
        for field, end in (("start_date", False), ("end_date", True)):
            with pytest.raises(ValidationError) as exc:
                parse_date_bound(field, bad, end=end)
            assert field_of(exc) == field


async def test_search_validates_its_inputs(svc: ConversationService, settings: Settings) -> None:
    cases = [
        ({"query": ""}, "query"),
        ({"query": "   "}, "query"),
        ({"query": "q" * (settings.max_message_chars + 1)}, "query"),
        ({"query": "x", "roles": ["system"]}, "roles"),
        ({"query": "x", "start_date": "soon"}, "start_date"),
        ({"query": "x", "end_date": "2026-02-31"}, "end_date"),
        ({"query": "x", "start_date": "2026-02-02", "end_date": "2026-02-01"}, "start_date"),
    ]
    for kwargs, field in cases:
        with pytest.raises(ValidationError) as exc:
            await svc.search(**kwargs)
        assert field_of(exc) == field, kwargs
    with pytest.raises(NotFoundError):
        await svc.search("x", conversation_id="conv-nope")
    a = await svc.create_agent("a")
    conv = await svc.create_conversation(a.id)
    other = await svc.create_agent("b")
    with pytest.raises(ValidationError) as exc:
        await svc.search("x", agent_id=other.id, conversation_id=conv.id)
    assert field_of(exc) == "agent_id"


def test_cursor_json_is_opaque_base64() -> None:
    c = encode_cursor({"kind": "agents", "k": ["a", "b"]})
    assert "=" not in c and json.loads(base64.urlsafe_b64decode(c + "=" * (-len(c) % 4)))["kind"] == "agents"


# -- list_conversations order: pages read in index order equal one sorted list --


@pytest.mark.parametrize("order_by", ["created_at", "last_run_completion"])
@pytest.mark.parametrize("desc", [True, False])
async def test_pages_concatenate_to_the_sorted_list(store: SQLiteStore, order_by: str, desc: bool) -> None:
    rng = random.Random(5)
    agent = await store.create_agent(name="a", model=None, system="s", context_window_limit=None, blocks=[])
    other = await store.create_agent(name="b", model=None, system="s", context_window_limit=None, blocks=[])
    await store.create_conversation(other.id, model=None, summary=None, system_text="x")  # never listed here
    convs = []
    for _ in range(23):
        c = await store.create_conversation(agent.id, model=None, summary=None, system_text="x")
        if rng.random() < 0.6:  # some ran (with ties), the rest never did
            c = await store.update_conversation(c.id, {"last_run_completion": f"2025-01-0{rng.randrange(1, 4)}Z"})
        convs.append(c)

    def key(c):  # never-run last in both orders, then the value, then the id
        value = getattr(c, order_by)
        return (value is None, value or "", c.id)

    expected = sorted(convs, key=key)
    if desc:
        ran = [c for c in expected if getattr(c, order_by) is not None][::-1]
        expected = ran + [c for c in expected if getattr(c, order_by) is None][::-1]
    for page in (1, 4, 7, 50):
        got, after = [], None
        while True:
            rows = await store.list_conversations(agent.id, order_by=order_by, desc=desc, limit=page + 1, after=after)
            got += rows[:page]
            if len(rows) <= page:
                break
            after = [getattr(rows[page - 1], order_by), rows[page - 1].id]
        assert [c.id for c in got] == [c.id for c in expected], (order_by, desc, page)
