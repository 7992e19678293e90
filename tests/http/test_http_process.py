"""The installed console script serving streamable HTTP as a subprocess: refusing an unsafe bind,
and shutting down cleanly on SIGTERM/SIGINT with the database intact."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import subprocess
import threading
from pathlib import Path

import pytest
from fake_provider import FakeProvider
from http_helpers import CONSOLE_SCRIPT, console_env, mcp_client, spawned_http_server

pytestmark = pytest.mark.slow

TOKEN = "process-token"


@pytest.mark.parametrize("how", ["flag", "env"])
def test_refuses_non_loopback_bind_without_token(tmp_path: Path, how: str) -> None:
    db = tmp_path / "refused.db"
    argv = [CONSOLE_SCRIPT, "--transport", "streamable-http", "--db", str(db), "--port", "1"]
    env = console_env()
    if how == "flag":
        argv += ["--host", "0.0.0.0"]
    else:
        env["CONVERSATIONS_HOST"] = "0.0.0.0"
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "refusing to serve on '0.0.0.0' without authentication" in done.stderr
    assert "--auth-token" in done.stderr and "--allow-unauthenticated" in done.stderr
    assert done.stdout == ""
    assert not db.exists(), "nothing is opened before the refusal"


def test_non_loopback_bind_with_token_from_env_starts(tmp_path: Path) -> None:
    env = console_env(CONVERSATIONS_AUTH_TOKEN=TOKEN)
    with spawned_http_server(tmp_path / "open.db", "--host", "0.0.0.0", env=env) as server:
        import httpx

        assert httpx.get(f"{server.base_url}/healthz").json()["status"] == "ok"
        assert httpx.post(f"{server.mcp_url}", json={}).status_code == 401
        assert server.stop() == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_signal_shuts_down_cleanly_with_database_intact(
    tmp_path: Path, sig: signal.Signals, fake_provider: FakeProvider
) -> None:
    db = tmp_path / "conversations.db"
    code: int | None = None
    """SIGTERM with a background run waiting on the model (it ends `interrupted`); SIGINT on an idle server."""
    hold = threading.Event()
    fake_provider.enqueue("never sent", wait_for=hold)
    with_run = sig == signal.SIGTERM
    env = console_env(CONVERSATIONS_DEFAULT_MODEL="openai/fake-model")  # and the fake provider's OPENAI_* vars
    with spawned_http_server(db, "--auth-token", TOKEN, env=env) as server:
        client_cm = mcp_client(server.mcp_url, token=TOKEN, mode="legacy")
        client = await client_cm.__aenter__()
        agent = (await client.call_tool("create_agent", {"name": "durable"})).structured_content
        conv = await client.call_tool("create_conversation", {"agent_id": agent["id"], "summary": "kept"})
        assert not conv.is_error
        if with_run:
            send = {"conversation_id": conv.structured_content["id"], "content": "slow one", "background": True}
            run = (await client.call_tool("send_message", send)).structured_content
            await fake_provider.await_requests(1, within=60)  # the run is waiting on the model
        # Signal while this session (and its open GET event stream) is still connected.
        server.proc.send_signal(sig)
        code = await asyncio.to_thread(server.proc.wait, 60)
        with contextlib.suppress(Exception):  # the server is gone: leaving may fail, it must not hang
            await client_cm.__aexit__(None, None, None)
        stderr = server.stderr()
    assert code == 0, stderr
    assert "Traceback" not in stderr, stderr
    assert not Path(f"{db}-wal").exists() or Path(f"{db}-wal").stat().st_size == 0, "WAL left behind: not closed"
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("SELECT name FROM agents WHERE id = ?", (agent["id"],)).fetchone() == ("durable",)
        assert con.execute("SELECT summary FROM conversations WHERE agent_id = ?", (agent["id"],)).fetchall() == [
            ("kept",)
        ]
        if with_run:
            status = con.execute("SELECT status, stop_reason FROM runs WHERE id = ?", (run["run_id"],)).fetchone()
            assert status == ("interrupted", "interrupted")
    hold.set()


@pytest.mark.parametrize("flags", [["--max-body-bytes", "0"], ["--port", "70000"]], ids=["body-limit", "port"])
def test_bad_http_settings_exit_2_with_the_setting_named(flags: list[str], capsys: pytest.CaptureFixture) -> None:
    from mcp_server_conversations.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["--transport", "streamable-http", *flags])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "bad configuration" in err and flags[0].removeprefix("--").replace("-", "_") in err
