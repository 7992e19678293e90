"""Named tokens end to end: the `tokens` command through the installed console script (the token
alone on stdout, once; `list` never shows one; exit 1 for an existing or unknown name), and servers
on SQLite and PostgreSQL that accept a token created after they started and refuse it at once
after a revoke."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from http_helpers import CONSOLE_SCRIPT, console_env, mcp_client, spawned_http_server
from letta_client import AuthenticationError, Letta
from pg_helpers import TestDatabase


@pytest.fixture
def db(tmp_path: Path, pg_database: TestDatabase | None) -> str:
    return pg_database.url if pg_database else str(tmp_path / "tokens.db")


def tokens(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CONSOLE_SCRIPT, "tokens", *args], capture_output=True, text=True, timeout=60, env=env or console_env()
    )


def create(db: str, name: str) -> str:
    done = tokens("--db", db, "create", name)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and done.stdout == lines[0] + "\n"
    assert lines[0].startswith("mcsc_") and len(lines[0]) > 40
    return lines[0]


def test_create_list_revoke_through_the_console_script(db: str) -> None:
    alice = create(db, "alice")
    bob = create(db, "bob")
    assert alice != bob
    again = tokens("--db", db, "create", "alice")
    assert again.returncode == 1 and again.stdout == "" and "alice" in again.stderr

    listed = tokens("--db", db, "list")
    assert listed.returncode == 0, listed.stderr
    assert "alice" in listed.stdout and "bob" in listed.stdout and "never" in listed.stdout
    for secret in (alice, bob, alice[5:], alice[-12:]):
        assert secret not in listed.stdout + listed.stderr

    gone = tokens("revoke", "bob", "--db", db)  # --db after the subcommand too
    assert gone.returncode == 0, gone.stderr
    assert gone.stdout == ""
    assert "bob" not in tokens("--db", db, "list").stdout
    assert "bob" in tokens("--db", db, "list", "--all").stdout
    unknown = tokens("--db", db, "revoke", "bob")
    assert unknown.returncode == 1 and "bob" in unknown.stderr
    assert tokens("--db", db, "revoke", "nobody").returncode == 1
    create(db, "bob")  # a revoked name can be given again


def test_the_database_comes_from_conversations_db(tmp_path: Path) -> None:
    path = tmp_path / "from-env.db"
    env = console_env(CONVERSATIONS_DB=str(path))
    done = tokens("create", "erin", env=env)
    assert done.returncode == 0, done.stderr
    assert path.exists()
    assert "erin" in tokens("list", env=env).stdout


@pytest.mark.sqlite_only("argument checks, before any database")
def test_bad_names_and_arguments_get_a_clear_error(db: str) -> None:
    for bad in ("", "a b", "../x", "x" * 65):
        done = tokens("--db", db, "create", bad)
        assert done.returncode == 2 and done.stdout == ""
        assert "invalid token name" in done.stderr and "letters, digits" in done.stderr
    assert tokens("--db", db).returncode == 2
    assert tokens("--db", db, "frobnicate").returncode == 2
    unreachable = tokens("--db", "postgresql://nobody@127.0.0.1:1/x", "list")
    assert unreachable.returncode == 1 and "cannot open" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr


def status(url: str, token: str | None = None) -> int:
    """GET `url` (blocking: the server is another process) and return the status code."""
    return httpx.get(url, headers={"Authorization": f"Bearer {token}"} if token else {}).status_code


def wait_for(check: Callable[[], bool], within: float) -> float:
    """Seconds until `check()` held; fails after `within`."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < within, "not within the time allowed"
        time.sleep(0.05)
    return time.monotonic() - start


@pytest.mark.slow
@pytest.mark.processes
async def test_a_running_server_takes_new_tokens_and_refuses_revoked_ones_at_once(db: str) -> None:
    with spawned_http_server(db) as server:  # loopback, no --auth-token: open until a named token exists
        agents = f"{server.base_url}/v1/agents/"
        assert status(agents) == 200
        alice = create(db, "alice")  # by another process, after the server started
        closed = wait_for(lambda: status(agents) == 401, within=10)
        assert closed < 5  # the server looks again every second; the rest is a loaded machine
        assert status(agents, "mcsc_guessed") == 401

        letta = Letta(base_url=server.base_url, api_key=alice, max_retries=0)
        made = letta.agents.create(name="alice-agent", model="openai/fake-model")
        assert made.id in [a.id for a in letta.agents.list()]
        async with mcp_client(server.mcp_url, token=alice, mode="legacy") as session:
            listed = await session.call_tool("list_agents", {})
            assert not listed.is_error
            wait_for(lambda: "never" not in tokens("--db", db, "list").stdout, within=10)  # last use recorded

            assert tokens("--db", db, "revoke", "alice").returncode == 0
            # A new client: the first one's kept-alive connection may have idled out while the
            # tokens command ran (the server closes idle ones), and this client never retries.
            with pytest.raises(AuthenticationError):  # at once: no wait, no restart
                Letta(base_url=server.base_url, api_key=alice, max_retries=0).agents.list()
            with pytest.raises(BaseException) as refused:  # the open MCP session is refused too
                await session.call_tool("list_agents", {})
            assert "401" in repr(refused.value) or "unauthorized" in repr(refused.value)


@pytest.mark.slow
@pytest.mark.processes
def test_a_named_token_lets_a_server_bind_beyond_loopback(db: str, backend: str) -> None:
    argv = [CONSOLE_SCRIPT, "--transport", "streamable-http", "--db", db, "--host", "0.0.0.0", "--port", "1"]
    if backend == "postgres":  # an empty database holds no token: refused after a look
        refused = subprocess.run(argv, env=console_env(), capture_output=True, text=True, timeout=60)
        assert refused.returncode == 2 and "tokens create NAME" in refused.stderr
    erin = create(db, "erin")
    with spawned_http_server(db, "--host", "0.0.0.0", headers={"Authorization": f"Bearer {erin}"}) as server:
        assert status(f"{server.base_url}/v1/agents/") == 401
        assert status(f"{server.base_url}/v1/agents/", erin) == 200


@pytest.mark.slow
@pytest.mark.processes
async def test_the_single_auth_token_and_named_tokens_work_side_by_side(db: str) -> None:
    frank = create(db, "frank")
    with spawned_http_server(db, "--auth-token", "the-operator-token") as server:
        for token in ("the-operator-token", frank):
            async with mcp_client(server.mcp_url, token=token) as session:
                assert not (await session.call_tool("list_agents", {})).is_error
        assert status(f"{server.base_url}/v1/agents/") == 401
