"""The HTTP server as operators run it (the installed console script, raw sockets): requests whose
headers or body do not arrive in time are closed, the bearer scheme is case-insensitive, health
probes need no Host header, the token can come from a file instead of the command line, and DEBUG
logs keep third-party loggers (which print message text) at INFO unless asked."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest
from http_helpers import CONSOLE_SCRIPT, console_env, mcp_client, spawned_http_server

from mcp_server_conversations.config import Settings

TOKEN = "file-token-7d1c"
CLOSE_WAIT = 20.0  # bounds a hang only: the server closes after --request-timeout 1


def connect(base_url: str) -> socket.socket:
    host, port = base_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=CLOSE_WAIT)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (socket.timeout if it never does)."""
    data = b""
    deadline = time.monotonic() + CLOSE_WAIT
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk
    raise TimeoutError(f"the server kept the connection open; got {data[:200]!r}")


def test_request_timeout_default_and_flag() -> None:
    from mcp_server_conversations.cli import parse_args, settings_from_args

    assert Settings().request_timeout == 30.0
    assert settings_from_args(parse_args(["--request-timeout", "2.5"])).request_timeout == 2.5


def test_late_headers_and_bodies_are_closed(tmp_path: Path) -> None:
    with spawned_http_server(tmp_path / "t.db", "--request-timeout", "1") as server:
        silent = connect(server.base_url)  # opens and sends nothing
        half_headers = connect(server.base_url)
        half_headers.sendall(b"GET /v1/agents HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        half_body = connect(server.base_url)
        half_body.sendall(
            b"POST /v1/agents HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"name": '
        )
        keep_alive = connect(server.base_url)  # one whole request, then half of the next
        keep_alive.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = b""
        while not first.endswith(b"}"):  # the whole response (its JSON body ends with a brace)
            first += keep_alive.recv(65536)
        assert first.startswith(b"HTTP/1.1 200"), first
        keep_alive.sendall(b"GET /healthz HTTP/1.1\r\nHo")

        assert read_until_closed(silent) == b""
        assert read_until_closed(half_headers) == b""
        answer = read_until_closed(half_body)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert b"--request-timeout" in answer
        assert read_until_closed(keep_alive) == b""
        for s in (silent, half_headers, half_body, keep_alive):
            s.close()
        r = httpx.get(f"{server.base_url}/v1/agents", timeout=10)
        assert r.status_code == 200  # and it goes on serving
        assert httpx.get(f"{server.base_url}/v1/agents", timeout=10).json() == []  # the half POST made nothing


def test_token_file_and_case_insensitive_bearer(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(f"  {TOKEN}\n")
    with spawned_http_server(tmp_path / "a.db", "--auth-token-file", str(token_file)) as server:
        assert TOKEN.encode() not in Path(f"/proc/{server.proc.pid}/cmdline").read_bytes()
        url = f"{server.base_url}/v1/agents"
        for scheme in ("Bearer", "bearer", "BEARER", "bEaReR"):
            r = httpx.get(url, headers={"Authorization": f"{scheme} {TOKEN}"}, timeout=10)
            assert r.status_code == 200, (scheme, r.text)
        for bad in (f"Basic {TOKEN}", f"bearer {TOKEN}x", "bearer", TOKEN, f"bearer{TOKEN}"):
            r = httpx.get(url, headers={"Authorization": bad}, timeout=10)
            assert r.status_code == 401, bad
        assert httpx.get(url, timeout=10).status_code == 401


def test_healthz_over_http10_without_host(tmp_path: Path) -> None:
    env = console_env(CONVERSATIONS_AUTH_TOKEN=TOKEN)
    with spawned_http_server(tmp_path / "h.db", env=env) as server:
        sock = connect(server.base_url)
        sock.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        answer = read_until_closed(sock)
        sock.close()
        assert answer.startswith(b"HTTP/1.1 200"), answer
        assert b'"status":"ok"' in answer
        sock = connect(server.base_url)  # other paths still check Host
        sock.sendall(b"GET /v1/agents HTTP/1.0\r\nAuthorization: Bearer " + TOKEN.encode() + b"\r\n\r\n")
        assert read_until_closed(sock).startswith(b"HTTP/1.1 421")
        sock.close()


def test_token_file_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(f"\t{TOKEN}  \n\n")
    monkeypatch.setenv("CONVERSATIONS_AUTH_TOKEN_FILE", str(token_file))
    assert Settings().auth_token == TOKEN


@pytest.mark.parametrize("content", [None, "", "  \n"], ids=["missing", "empty", "blank"])
def test_bad_token_file_exits_2(tmp_path: Path, content: str | None) -> None:
    import subprocess

    token_file = tmp_path / "token"
    if content is not None:
        token_file.write_text(content)
    argv = [
        CONSOLE_SCRIPT,
        "--transport",
        "streamable-http",
        "--db",
        str(tmp_path / "x.db"),
        "--port",
        "1",
        "--auth-token-file",
        str(token_file),
    ]
    done = subprocess.run(argv, env=console_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "auth_token_file" in done.stderr and str(token_file) in done.stderr
    assert ("cannot be read" if content is None else "is empty") in done.stderr


def test_token_and_token_file_together_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from mcp_server_conversations.cli import main

    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    with pytest.raises(SystemExit) as exited:
        main(["--transport", "streamable-http", "--auth-token", "x", "--auth-token-file", str(token_file)])
    assert exited.value.code == 2
    assert "either auth_token or auth_token_file" in capsys.readouterr().err


@pytest.mark.parametrize("debug_all", [False, True])
@pytest.mark.slow
@pytest.mark.processes
async def test_debug_logs_leave_out_third_party_message_text(tmp_path: Path, debug_all: bool) -> None:
    secret = "zebra-summary-5b8e"
    flags = ["--log-level", "DEBUG"] + (["--debug-all"] if debug_all else [])
    with spawned_http_server(tmp_path / "d.db", *flags) as server:
        async with mcp_client(server.mcp_url, mode="legacy") as client:  # its results stream as SSE
            r = await client.call_tool("create_conversation", {"summary": secret})
            assert not r.is_error
        server.stop()
        log = server.stderr()
    assert "uvicorn.access" in log  # logging is on (requests are logged at DEBUG)
    assert (secret in log) is debug_all, log[-3000:]  # sse_starlette logs every chunk it sends
