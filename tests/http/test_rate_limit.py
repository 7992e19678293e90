"""--rate-limit N: over N requests in any 60 s by one principal, HTTP answers 429 with Retry-After, on
MCP and REST alike, counted across two server processes on one database; 401s are not counted, and
another principal is unaffected."""

from __future__ import annotations

import asyncio
import subprocess
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from http_helpers import CONSOLE_SCRIPT, console_env, mcp_client, spawned_http_server
from pg_helpers import TestDatabase

from mcp_server_conversations.storage import open_store

LIMIT = 5
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.fixture
def db(tmp_path: Path, pg_database: TestDatabase | None) -> str:
    return pg_database.url if pg_database else str(tmp_path / "limits.db")


def create_token(db: str, name: str) -> str:
    done = subprocess.run(
        [CONSOLE_SCRIPT, "tokens", "--db", db, "create", name], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.slow
@pytest.mark.processes
async def test_past_the_limit_requests_get_429_with_retry_after_across_two_servers(db: str) -> None:
    alice, bob = create_token(db, "alice"), create_token(db, "bob")
    with ExitStack() as stack:
        one, two = (
            stack.enter_context(
                spawned_http_server(db, "--rate-limit", str(LIMIT), "--stateless", headers=bearer(alice))
            )
            for _ in range(2)
        )
        # A connection per request: a kept-alive one the server closes between requests (its keep-alive
        # timeout, on a busy machine) would fail the next request for reasons of no interest here.
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_keepalive_connections=0)) as http:
            for i in range(12):  # refused credentials are nobody's requests: never counted
                got = await http.get(f"{(one, two)[i % 2].base_url}/v1/agents/", headers=bearer("mcsc_wrong"))
                assert got.status_code == 401
            for i in range(LIMIT):  # alice's N, spread over both servers
                got = await http.get(f"{(one, two)[i % 2].base_url}/v1/agents/", headers=bearer(alice))
                assert got.status_code == 200, got.text
            for server in (one, two):
                refused = await http.get(f"{server.base_url}/v1/agents/", headers=bearer(alice))
                assert refused.status_code == 429
                assert 1 <= int(refused.headers["Retry-After"]) <= 60
                assert "rate limit" in refused.json()["detail"]
                mcp = await http.post(f"{server.mcp_url}", json=INITIALIZE, headers=MCP_HEADERS | bearer(alice))
                assert mcp.status_code == 429
                assert 1 <= int(mcp.headers["Retry-After"]) <= 60
                body = mcp.json()
                assert body["jsonrpc"] == "2.0" and "rate limit" in body["error"]["message"]
            assert (await http.get(f"{one.base_url}/healthz")).status_code == 200  # the probe is exempt

            # Another principal is unaffected: bob's own N, on MCP through the SDK's client, then on REST.
            async with mcp_client(two.mcp_url, token=bob, mode="legacy") as session:
                assert not (await session.call_tool("list_agents", {})).is_error
            codes = [(await http.get(f"{one.base_url}/v1/agents/", headers=bearer(bob))).status_code for _ in range(6)]
            assert 429 in codes and codes == sorted(codes)  # bob's own limit, reached in his turn: 200s, then 429s


async def test_refused_credentials_never_count_against_the_principal_they_would_have_been(db: str) -> None:
    """With the single --auth-token (principal `local`), requests with a wrong token or none are 401 and
    leave `local`'s N untouched."""
    with spawned_http_server(db, "--auth-token", "the-operator-token", "--rate-limit", str(LIMIT)) as server:
        url = f"{server.base_url}/v1/agents/"
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_keepalive_connections=0)) as http:
            for headers in [{}, bearer("wrong")] * 6:
                assert (await http.get(url, headers=headers)).status_code == 401
            for _ in range(LIMIT):
                assert (await http.get(url, headers=bearer("the-operator-token"))).status_code == 200
            assert (await http.get(url, headers=bearer("the-operator-token"))).status_code == 429


async def test_without_the_flag_there_is_no_limit(db: str) -> None:
    with spawned_http_server(db) as server:
        async with httpx.AsyncClient(timeout=30) as http:
            statuses = await asyncio.gather(*(http.get(f"{server.base_url}/v1/agents/") for _ in range(40)))
    assert {s.status_code for s in statuses} == {200}


async def test_the_window_slides_and_the_wait_is_when_a_request_is_allowed_again(db: str) -> None:
    """Two stores on one database (as two processes): `limit` accepted in any `window`, a refused request
    not counted, and the wait told is when the oldest counted request leaves the window."""
    first, second = await open_store(db), await open_store(db)
    try:
        assert await first.take_request("token:carol", 2, 1.5) == 0.0
        await asyncio.sleep(0.5)
        assert await second.take_request("token:carol", 2, 1.5) == 0.0
        wait = await first.take_request("token:carol", 2, 1.5)
        assert 0.5 < wait <= 1.0  # the first request leaves the window 1.5 s after it was made
        assert await second.take_request("token:carol", 2, 1.5) > 0  # refused ones are not counted...
        assert await first.take_request("token:dave", 2, 1.5) == 0.0  # ...and another principal is apart
        await asyncio.sleep(wait + 0.05)
        assert await second.take_request("token:carol", 2, 1.5) == 0.0  # allowed again when told
        assert await first.take_request("token:carol", 2, 1.5) > 0  # the second one still counts
    finally:
        await first.close()
        await second.close()


@pytest.mark.sqlite_only("configuration checks, before any database")
def test_bad_values_get_a_clear_error(tmp_path: Path) -> None:
    for flag, value in (
        ("--rate-limit", "0"),
        ("--rate-limit", "20000"),
        ("--rate-limit", "lots"),
        ("--max-runs-per-principal", "-1"),
    ):
        done = subprocess.run(
            [CONSOLE_SCRIPT, "--db", str(tmp_path / "x.db"), flag, value],
            capture_output=True,
            text=True,
            timeout=60,
            env=console_env(),
        )
        assert done.returncode == 2, done.stderr
        assert flag.lstrip("-").replace("-", "_") in done.stderr or flag in done.stderr
        assert "Traceback" not in done.stderr
    env = console_env(CONVERSATIONS_MAX_RUNS_PER_PRINCIPAL="0")
    done = subprocess.run([CONSOLE_SCRIPT, "--db", str(tmp_path / "x.db")], capture_output=True, text=True, env=env)
    assert done.returncode == 2 and "max_runs_per_principal" in done.stderr
