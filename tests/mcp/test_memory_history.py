"""Memory history through the real MCP client (both eras, both backends): versions without gaps under
parallel edits by runs, stale writes refused, restores, pruning, and clear errors for bad input."""

from __future__ import annotations

import asyncio

from fake_provider import FakeProvider
from runtime_helpers import call, call_error, eventually, new_conversation

from mcp_server_conversations.config import Settings


async def history(client, label: str, agent_id: str, **args) -> dict:
    return await call(client, "get_memory_block_history", {"label": label, "agent_id": agent_id, **args})


async def test_parallel_runs_edit_one_block_without_losing_a_version(connect, fake_provider: FakeProvider) -> None:
    async with connect() as client:
        blocks = [{"label": "notes", "value": "start"}]
        agent = await call(client, "create_agent", {"name": "m", "memory_blocks": blocks})
        convs = [await new_conversation(client, agent_id=agent["id"]) for _ in range(10)]
        for i in range(10):
            fake_provider.enqueue(
                tool_calls=[{"name": "core_memory_append", "arguments": {"label": "notes", "content": f"fact {i}"}}],
                when=f"note {i}",
                delay=0.01 * (i % 3),
            )
            fake_provider.enqueue("ok", when=f"note {i}", delay=0.5)  # runs still in flight at the stale write
        sends = [
            asyncio.ensure_future(call(client, "send_message", {"conversation_id": c, "content": f"note {i}"}))
            for i, c in enumerate(convs)
        ]

        async def edited() -> bool:
            return (await history(client, "notes", agent["id"]))["current_version"] > 1

        await eventually(edited, "a first edit", within=120)  # the first send imports litellm: slow on a busy machine
        # Meanwhile a client that read version 1 tries to write: refused, naming the current version.
        error = await call_error(
            client,
            "update_memory_block",
            {"agent_id": agent["id"], "label": "notes", "value": "clobber", "expected_version": 1},
        )
        assert "is at version" in error and "not 1" in error
        runs = await asyncio.wait_for(asyncio.gather(*sends), 60)

        returns = [m for r in runs for m in r["messages"] if m["message_type"] == "tool_return_message"]
        assert [r["status"] for r in returns] == ["success"] * 10  # the agent's own edits never lose a race
        block = (await call(client, "get_agent", {"agent_id": agent["id"]}))["memory_blocks"][0]
        assert block["version"] == 11 and "clobber" not in block["value"]
        assert sorted(block["value"].split("\n")) == sorted(["start", *(f"fact {i}" for i in range(10))])
        got = await history(client, "notes", agent["id"], limit=100)
        assert [v["version"] for v in got["versions"]] == list(range(11, 0, -1))  # no gaps, newest first
        assert got["versions"][0]["value"] == block["value"]
        assert got["versions"][-1]["value"] == "start"
        assert got["versions"][-1]["changed_by"] == {"tool": "create_agent"}
        by = [v["changed_by"] for v in got["versions"][:-1]]
        assert sorted(b["conversation_id"] for b in by) == sorted(convs)
        assert {b["run_id"] for b in by} == {r["id"] for r in runs}
        # Each version is the one before plus one fact: nothing was applied to a stale value.
        values = [v["value"] for v in reversed(got["versions"])]
        assert all(b.startswith(a + "\n") for a, b in zip(values, values[1:], strict=False))


async def test_expected_version_update_restore_and_pages(connect) -> None:
    async with connect() as client:
        agent = (await call(client, "create_agent", {"name": "h"}))["id"]
        made = await call(client, "update_memory_block", {"agent_id": agent, "label": "todo", "value": "a"})
        assert made["version"] == 1
        second = await call(
            client, "update_memory_block", {"agent_id": agent, "label": "todo", "value": "b", "expected_version": 1}
        )
        assert second["version"] == 2 and second["value"] == "b"
        # A change of the description alone is no new version of the value.
        same = await call(client, "update_memory_block", {"agent_id": agent, "label": "todo", "description": "d"})
        assert same["version"] == 2
        error = await call_error(
            client, "update_memory_block", {"agent_id": agent, "label": "todo", "value": "c", "expected_version": 1}
        )
        assert "version 2" in error
        # expected_version 0: create only if missing.
        assert "version 2" in await call_error(
            client, "update_memory_block", {"agent_id": agent, "label": "todo", "value": "x", "expected_version": 0}
        )
        fresh = await call(
            client, "update_memory_block", {"agent_id": agent, "label": "new", "value": "n", "expected_version": 0}
        )
        assert fresh["version"] == 1

        restored = await call(client, "restore_memory_block", {"agent_id": agent, "label": "todo", "version": 1})
        assert restored["value"] == "a" and restored["version"] == 3
        page = await history(client, "todo", agent, limit=2)
        assert [v["version"] for v in page["versions"]] == [3, 2] and page["next_cursor"]
        assert page["versions"][0]["changed_by"] == {"tool": "restore_memory_block"}
        assert page["versions"][1]["changed_by"] == {"tool": "update_memory_block"}
        rest = await history(client, "todo", agent, limit=2, after=page["next_cursor"])
        assert [v["version"] for v in rest["versions"]] == [1] and rest["next_cursor"] is None
        assert "cursor" in await call_error(
            client, "get_memory_block_history", {"agent_id": agent, "label": "new", "after": page["next_cursor"]}
        )


async def test_history_is_pruned_oldest_first(connect, model_settings: Settings) -> None:
    async with connect(model_settings.model_copy(update={"memory_history_limit": 3})) as client:
        agent = (await call(client, "create_agent", {"name": "p"}))["id"]
        for i in range(6):
            await call(client, "update_memory_block", {"agent_id": agent, "label": "log", "value": f"v{i}"})
        got = await history(client, "log", agent)
        assert [(v["version"], v["value"]) for v in got["versions"]] == [(6, "v5"), (5, "v4"), (4, "v3")]
        error = await call_error(client, "restore_memory_block", {"agent_id": agent, "label": "log", "version": 2})
        assert "no longer kept" in error and "oldest kept is 4" in error


async def test_bad_history_inputs_get_clear_errors(connect) -> None:
    async with connect() as client:
        agent = (await call(client, "create_agent", {"name": "b", "memory_blocks": [{"label": "k", "value": "v"}]}))[
            "id"
        ]
        cases = [
            ("get_memory_block_history", {"agent_id": agent, "label": "nope"}, "block nope not found"),
            ("get_memory_block_history", {"agent_id": agent, "label": "k", "limit": -1}, "limit"),
            ("get_memory_block_history", {"agent_id": agent, "label": "k", "limit": 0}, "limit"),
            ("get_memory_block_history", {"agent_id": agent, "label": "k", "after": "garbage"}, "cursor"),
            ("get_memory_block_history", {"agent_id": "agent-missing", "label": "k"}, "not found"),
            ("restore_memory_block", {"agent_id": agent, "label": "k", "version": 0}, "version"),
            ("restore_memory_block", {"agent_id": agent, "label": "k", "version": -3}, "version"),
            ("restore_memory_block", {"agent_id": agent, "label": "k", "version": 99}, "has no version 99"),
            ("restore_memory_block", {"agent_id": agent, "label": "nope", "version": 1}, "block nope not found"),
            ("update_memory_block", {"agent_id": agent, "label": "k", "expected_version": -1}, "expected"),
        ]
        for tool, args, expected in cases:
            assert expected in await call_error(client, tool, args), (tool, args)
        # Nothing above changed the block.
        got = await history(client, "k", agent)
        assert [v["version"] for v in got["versions"]] == [1]
