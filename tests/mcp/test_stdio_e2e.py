"""End to end over stdio: the installed console script in a subprocess, driven by the MCP
client and by hand-written JSON-RPC lines; data survives a restart on the same file."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from foundation_helpers import turn
from mcp import Client, StdioServerParameters

from mcp_server_conversations.storage import SQLiteStore

SCRIPT = shutil.which("mcp-server-conversations", path=os.path.dirname(sys.executable))
ENV = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHON_DOTENV_DISABLED": "1"}
HANG_GUARD = 60  # seconds: only so a broken server fails the test instead of hanging it


def server(db: Path, *extra: str) -> StdioServerParameters:
    assert SCRIPT, "the console script is not installed next to the test interpreter"
    return StdioServerParameters(command=SCRIPT, args=["--db", str(db), *extra], env=ENV)


async def ok(client: Client, tool: str, args: dict[str, Any] | None = None) -> Any:
    result = await client.call_tool(tool, args or {})
    assert not result.is_error, result.content
    return result.structured_content


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_create_list_fork_search_delete_then_restart(tmp_path: Path, mode: str) -> None:
    db = tmp_path / "e2e.db"
    async with Client(server(db), mode=mode) as c:
        assert c.server_info.name == "mcp-server-conversations"
        agent = await ok(c, "create_agent", {"name": "Ada", "memory_blocks": [{"label": "human", "value": "Ada"}]})
        src = await ok(c, "create_conversation", {"agent_id": agent["id"], "summary": "pottery"})
        other = await ok(c, "create_conversation", {"agent_id": agent["id"]})
        listed = await ok(c, "list_conversations", {"agent_id": agent["id"], "order": "asc"})
        assert [x["id"] for x in listed["conversations"]] == [src["id"], other["id"]]

        # messages written by another process (the runtime's part), through the same file
        store = await SQLiteStore.open(db)
        try:
            msgs = await turn(store, src["id"], "When does the pottery class start?", "Next Tuesday at six.")
            await turn(store, src["id"], "And the glazing workshop?", "In May.")
        finally:
            await store.close()

        fork = await ok(c, "fork_conversation", {"conversation_id": src["id"], "message_id": msgs[1].id})
        assert fork["message_count"] == 2 and fork["forked_from"]["message_id"] == msgs[1].id
        found = await ok(c, "conversation_search", {"query": "when is the pottery class?", "agent_id": agent["id"]})
        assert found["results"][0]["message_id"] == msgs[0].id
        assert found["results"][0]["conversation_id"] == src["id"]
        assert await ok(c, "delete_conversation", {"conversation_id": src["id"]}) == {"deleted": True, "id": src["id"]}
        gone = await c.call_tool("get_conversation", {"conversation_id": src["id"]})
        assert gone.is_error and f"conversation {src['id']} not found" in gone.content[0].text

    async with Client(server(db), mode=mode) as c:  # a new process on the same file
        assert (await ok(c, "get_agent", {"agent_id": agent["id"]}))["memory_blocks"][0]["value"] == "Ada"
        kept = await ok(c, "list_messages", {"conversation_id": fork["id"]})
        assert [(m["id"], m["conversation_id"]) for m in kept["messages"]] == [
            (msgs[0].id, src["id"]),
            (msgs[1].id, src["id"]),
        ]
        found = await ok(c, "conversation_search", {"query": "pottery glazing", "agent_id": agent["id"]})
        assert [r["message_id"] for r in found["results"]] == [msgs[0].id]
        assert found["results"][0]["conversation_id"] == fork["id"]
        listed = await ok(c, "list_conversations", {"agent_id": agent["id"], "order": "asc"})
        assert [x["id"] for x in listed["conversations"]] == [other["id"], fork["id"]]
        again = await c.call_tool("delete_conversation", {"conversation_id": src["id"]})
        assert again.is_error and "not found" in again.content[0].text


async def read_message(proc: asyncio.subprocess.Process, lines: list[bytes]) -> dict[str, Any]:
    """The next JSON-RPC message on stdout (every line is recorded for the purity check)."""
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), HANG_GUARD)
    assert line, "the server closed stdout"
    lines.append(line)
    return json.loads(line)


async def send(proc: asyncio.subprocess.Process, message: dict[str, Any]) -> None:
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(message).encode() + b"\n")
    await proc.stdin.drain()


@pytest.mark.parametrize("version", ["2025-06-18", "2025-11-25"])
async def test_raw_initialize_is_answered_and_stdout_carries_only_json_rpc(tmp_path: Path, version: str) -> None:
    assert SCRIPT
    proc = await asyncio.create_subprocess_exec(
        SCRIPT,
        "--db",
        str(tmp_path / "raw.db"),
        "--log-level",
        "debug",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **ENV},
    )
    lines: list[bytes] = []
    try:
        await send(
            proc,
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": version,
                    "capabilities": {},
                    "clientInfo": {"name": "raw", "version": "0"},
                },
            },
        )
        init = await read_message(proc, lines)
        assert init["id"] == 1 and init["result"]["protocolVersion"] == version
        assert init["result"]["serverInfo"]["name"] == "mcp-server-conversations"
        assert "tools" in init["result"]["capabilities"]
        await send(proc, {"jsonrpc": "2.0", "method": "notifications/initialized"})
        await send(proc, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        tools = await read_message(proc, lines)
        assert {"create_conversation", "conversation_search"} <= {t["name"] for t in tools["result"]["tools"]}
        await send(
            proc,
            {
                "jsonrpc": "2.0",
                "id": 3,
                "method": "tools/call",
                "params": {"name": "create_conversation", "arguments": {"summary": "raw"}},
            },
        )
        created = await read_message(proc, lines)
        assert created["result"]["structuredContent"]["summary"] == "raw"
        await send(
            proc,
            {
                "jsonrpc": "2.0",
                "id": 4,
                "method": "tools/call",
                "params": {"name": "conversation_search", "arguments": {"query": '"(NEAR* OR'}},
            },
        )
        searched = await read_message(proc, lines)
        assert searched["result"]["isError"] is False
        await send(
            proc,
            {
                "jsonrpc": "2.0",
                "id": 5,
                "method": "tools/call",
                "params": {"name": "get_conversation", "arguments": {"conversation_id": "conv-x"}},
            },
        )
        missing = await read_message(proc, lines)
        assert missing["result"]["isError"] is True
        assert "conversation conv-x not found" in missing["result"]["content"][0]["text"]
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            rest, err = await asyncio.wait_for(proc.communicate(), HANG_GUARD)
        except TimeoutError:
            proc.kill()
            raise
    lines += [line for line in rest.splitlines(keepends=True) if line.strip()]
    for line in lines:  # nothing but JSON-RPC on stdout, even with debug logging on
        assert json.loads(line)["jsonrpc"] == "2.0", line
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    assert b"Traceback" not in err


IMPORT_CHECKS = {
    "server module": "import mcp_server_conversations.mcp.server",
    "cli path to build_server": (
        "import sys; from mcp_server_conversations import cli; from mcp_server_conversations.mcp.server import "
        "build_server; build_server(cli.settings_from_args(cli.parse_args(['--db', sys.argv[1]])))"
    ),
    "package entry": "import mcp_server_conversations.__init__, mcp_server_conversations.cli",
}


@pytest.mark.parametrize("code", list(IMPORT_CHECKS.values()), ids=list(IMPORT_CHECKS))
def test_nothing_heavy_is_imported_before_initialize(tmp_path: Path, code: str) -> None:
    probe = f"{code}\nimport sys\nprint('litellm' in sys.modules, 'openai' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path / "x.db")],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        env={**os.environ, **ENV},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize(
    ("args", "env", "field"),
    [
        (["--log-level", "loud"], {}, "log_level"),
        (["--max-message-chars", "0"], {}, "max_message_chars"),
        ([], {"CONVERSATIONS_TRANSPORT": "http"}, "transport"),
    ],
)
def test_bad_configuration_exits_2_naming_the_setting(tmp_path: Path, args: list[str], env: dict, field: str) -> None:
    assert SCRIPT
    out = subprocess.run(
        [SCRIPT, "--db", str(tmp_path / "x.db"), *args],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **ENV, **env},
    )
    assert out.returncode == 2
    assert "bad configuration" in out.stderr and field in out.stderr
    assert out.stdout == ""


def test_log_level_is_accepted_in_any_case(tmp_path: Path) -> None:
    from mcp_server_conversations.cli import parse_args, settings_from_args
    from mcp_server_conversations.mcp.server import build_server

    settings = settings_from_args(parse_args(["--db", str(tmp_path / "x.db"), "--log-level", "debug"]))
    assert settings.log_level == "DEBUG"
    build_server(settings)  # the SDK accepts only upper case; this raised before


def test_model_retries_flag_and_its_bounds(tmp_path: Path) -> None:
    from mcp_server_conversations.cli import parse_args, settings_from_args

    assert settings_from_args(parse_args(["--model-retries", "2"])).model_retries == 2
    assert SCRIPT
    out = subprocess.run(
        [SCRIPT, "--db", str(tmp_path / "x.db"), "--model-retries", "11"],
        capture_output=True,
        text=True,
        env={**os.environ, **ENV},
        timeout=60,
    )
    assert out.returncode == 2 and "model_retries" in out.stderr and out.stdout == ""
