"""The configurations and examples users copy work as written: examples/http_client.py streams a
reply from the real HTTP server, and both entries of mcp.json connect."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tomllib
from pathlib import Path

import pytest
from fake_provider import FakeProvider
from http_helpers import CONSOLE_SCRIPT, mcp_client, serving

from mcp_server_conversations.config import Settings

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "example-token"


async def test_http_client_example_prints_deltas_as_they_arrive(
    settings: Settings, fake_provider: FakeProvider
) -> None:
    text = " ".join(f"piece{i}" for i in range(30))
    reply = fake_provider.enqueue(text, chunk_delay=0.05)
    s = settings.model_copy(update={"default_model": "openai/fake-model", "auth_token": TOKEN})
    async with serving(s) as served:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(ROOT / "examples" / "http_client.py"),
            "--url",
            served.mcp_url,
            "Tell me in pieces",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "CONVERSATIONS_AUTH_TOKEN": TOKEN},
        )
        assert proc.stdout is not None and proc.stderr is not None
        first = await asyncio.wait_for(proc.stdout.read(6), 60)
        streaming_when_printed = not reply.finished.is_set()
        rest = await proc.stdout.read()
        err = (await proc.stderr.read()).decode()
        assert await proc.wait() == 0, err
    assert (first + rest).decode() == text + "\n"
    assert streaming_when_printed, "the first delta was printed while the model was still streaming"
    assert "completed, end_turn, model openai/fake-model" in err
    assert "conversation conv-" in err


@pytest.mark.above_storage("the token is refused before any storage is reached")
async def test_http_client_example_reports_a_missing_token(settings: Settings) -> None:
    s = settings.model_copy(update={"auth_token": TOKEN})
    async with serving(s) as served:
        env = {k: v for k, v in os.environ.items() if k != "CONVERSATIONS_AUTH_TOKEN"}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(ROOT / "examples" / "http_client.py"),
            "--url",
            served.mcp_url,
            "hi",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        out, err = await proc.communicate()
    assert proc.returncode == 1
    assert err.decode().strip() == (
        "http_client: could not talk to the server: unauthorized: missing Authorization: Bearer <token> header"
    )


def test_mcp_json_is_valid_and_names_the_console_script() -> None:
    config = json.loads((ROOT / "mcp.json").read_text())
    servers = config["mcpServers"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert servers["conversations"]["command"] in scripts
    http = servers["conversations-http"]
    assert http["type"] == "http"
    assert http["url"] == "http://127.0.0.1:8283/mcp"
    assert http["headers"] == {"Authorization": "Bearer ${CONVERSATIONS_AUTH_TOKEN}"}


def expand(value: str, env: dict[str, str]) -> str:
    """${VAR} expansion as Claude Code does it for .mcp.json."""
    for key, val in env.items():
        value = value.replace("${" + key + "}", val)
    return value


@pytest.mark.above_storage("about the config entry and the handshake")
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_mcp_json_http_entry_connects(settings: Settings, mode: str) -> None:
    entry = json.loads((ROOT / "mcp.json").read_text())["mcpServers"]["conversations-http"]
    s = settings.model_copy(update={"auth_token": TOKEN})
    async with serving(s) as served:
        url = entry["url"].replace("127.0.0.1:8283", f"127.0.0.1:{served.port}")  # the test's free port
        headers = {k: expand(v, {"CONVERSATIONS_AUTH_TOKEN": TOKEN}) for k, v in entry["headers"].items()}
        token = headers["Authorization"].removeprefix("Bearer ")
        async with mcp_client(url, token=token, mode=mode) as client:
            assert not (await client.call_tool("create_agent", {"name": "from mcp.json"})).is_error


async def test_mcp_json_stdio_entry_connects(tmp_path: Path) -> None:
    from mcp import Client, StdioServerParameters

    entry = json.loads((ROOT / "mcp.json").read_text())["mcpServers"]["conversations"]
    command = str(Path(CONSOLE_SCRIPT).with_name(entry["command"]))  # the installed script, as on PATH
    env = {k: expand(v, {"OPENAI_API_KEY": "sk-test"}) for k, v in entry["env"].items()}
    env["CONVERSATIONS_DB"] = str(tmp_path / "stdio.db")
    params = StdioServerParameters(command=command, args=entry["args"], env={**os.environ, **env})
    async with Client(params) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        assert {"send_message", "create_conversation"} <= tools
