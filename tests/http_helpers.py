"""Helpers for tests that talk to the real HTTP server (MCP at /mcp, REST under /v1).

- `free_port()`: a loopback port that was free a moment ago.
- `async with running_http_server(settings) as base_url:` runs the real app (the same
  `build_http_app` + uvicorn config as `serve_http`) in this process on 127.0.0.1 and shuts it down
  cleanly. `serving(settings)` is the same but yields a `Served` with the open `App` too.
- `with spawned_http_server(db_path, *flags, env=...) as proc:` starts the installed console script
  `mcp-server-conversations --transport streamable-http` as a subprocess, waits for /healthz and
  stops it with SIGTERM.
- `async with mcp_client(url, token=None, mode="auto") as client:` the SDK's streamable-HTTP
  client (httpx2), with an optional bearer token.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.types import ASGIApp

from mcp_server_conversations.app import App, open_app
from mcp_server_conversations.config import Settings
from mcp_server_conversations.http.app import build_http_app, uvicorn_server

CONSOLE_SCRIPT = str(Path(sys.executable).with_name("mcp-server-conversations"))
START_TIMEOUT = 60.0  # generous: the machine is shared; this bounds a hang, it asserts nothing


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening_socket() -> socket.socket:
    """A bound loopback socket handed to uvicorn, so no other process can take the port meanwhile."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@dataclass
class Served:
    base_url: str  # http://127.0.0.1:PORT (no trailing slash)
    app: App
    port: int
    server: uvicorn.Server  # for introspection, e.g. server.server_state.connections

    @property
    def mcp_url(self) -> str:
        return f"{self.base_url}/mcp"


@asynccontextmanager
async def serving(settings: Settings, wrap: Callable[[ASGIApp], ASGIApp] | None = None) -> AsyncIterator[Served]:
    """Run the real HTTP app in-process under uvicorn on a free loopback port (`wrap`: around it)."""
    sock = _listening_socket()
    port = sock.getsockname()[1]
    settings = settings.model_copy(update={"port": port})
    try:
        async with open_app(settings) as app:
            asgi = build_http_app(settings, app)
            server = uvicorn_server(settings, wrap(asgi) if wrap else asgi)
            task = asyncio.create_task(server.serve(sockets=[sock]))
            while not server.started:
                if task.done():  # startup failed: surface uvicorn's error
                    task.result()
                    raise RuntimeError("uvicorn exited during startup")
                await asyncio.sleep(0.01)
            try:
                yield Served(base_url=f"http://127.0.0.1:{port}", app=app, port=port, server=server)
            finally:
                server.should_exit = True
                await task
    finally:
        sock.close()


@asynccontextmanager
async def running_http_server(settings: Settings) -> AsyncIterator[str]:
    """Yield the base URL (http://127.0.0.1:PORT) of the real app served in-process."""
    async with serving(settings) as served:
        yield served.base_url


@dataclass
class Spawned:
    proc: subprocess.Popen[bytes]
    base_url: str
    stderr_path: Path
    argv: list[str] = field(default_factory=list)

    @property
    def mcp_url(self) -> str:
        return f"{self.base_url}/mcp"

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = START_TIMEOUT) -> int:
        """Send `sig` and wait for the exit code (killing it if it hangs, which the caller should assert on)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return -9999
        return self.proc.returncode


def console_env(**extra: str) -> dict[str, str]:
    """The test process's environment minus CONVERSATIONS_* (flags say what the test means), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVERSATIONS_")}
    env.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    env.setdefault("PYTHON_DOTENV_DISABLED", "1")
    env.update(extra)
    return env


@contextmanager
def spawned_http_server(
    db: Path | str, *flags: str, env: dict[str, str] | None = None, headers: dict[str, str] | None = None
) -> Iterator[Spawned]:
    """Start `mcp-server-conversations --transport streamable-http --db DB --port N *flags` and wait
    until GET /healthz answers 200. Stops it with SIGTERM on exit (if the test has not already)."""
    port = free_port()
    argv = [CONSOLE_SCRIPT, "--transport", "streamable-http", "--db", str(db), "--port", str(port), *flags]
    stderr_path = (db if isinstance(db, Path) else Path(tempfile.mkdtemp()) / "db").with_name(f"server-{port}.stderr")
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=env if env is not None else console_env()
        )
    spawned = Spawned(proc=proc, base_url=f"http://127.0.0.1:{port}", stderr_path=stderr_path, argv=argv)
    try:
        wait_healthy(spawned, headers=headers)
        yield spawned
    finally:
        spawned.stop()


def wait_healthy(spawned: Spawned, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if spawned.proc.poll() is not None:
            raise RuntimeError(f"server exited with {spawned.proc.returncode}: {spawned.stderr()}")
        try:
            r = httpx.get(f"{spawned.base_url}/healthz", headers=headers, timeout=2.0)
            if r.status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"server did not become healthy: {spawned.stderr()}")
        time.sleep(0.05)


@asynccontextmanager
async def mcp_client(url: str, token: str | None = None, mode: str = "auto", **kwargs: Any) -> AsyncIterator[Any]:
    """A connected `mcp.Client` over streamable HTTP (httpx2, as the SDK requires), with a bearer
    token if given. `mode="legacy"` is the 2025-11-25 initialize handshake; "auto" negotiates 2026-07-28."""
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(60.0, read=300.0)) as http:
        async with Client(streamable_http_client(url, http_client=http), mode=mode, **kwargs) as client:
            yield client
