"""A console-script server spoken to in raw JSON-RPC over its stdin/stdout, for tests that check what a
started server writes: only JSON-RPC on stdout, a clean exit, no traceback on stderr."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

SCRIPT = shutil.which("mcp-server-conversations", path=os.path.dirname(sys.executable))


class RawStdio:
    """An initialized server process: `tool()` calls a tool and returns its structured result."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[bytes] = []  # every line the server wrote to stdout
        self._ids = 0

    async def rpc(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._ids += 1
        request = {"jsonrpc": "2.0", "id": self._ids, "method": method, "params": params}
        self.proc.stdin.write(json.dumps(request).encode() + b"\n")
        await self.proc.stdin.drain()
        while True:
            line = await asyncio.wait_for(self.proc.stdout.readline(), 60)
            assert line, "the server closed stdout"
            self.lines.append(line)
            message = json.loads(line)
            if message.get("id") == self._ids:
                return message["result"]

    async def tool(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        result = await self.rpc("tools/call", {"name": name, "arguments": arguments})
        assert result["isError"] is False, result["content"]
        return result["structuredContent"]


@asynccontextmanager
async def raw_stdio_server(*args: str, env: dict[str, str] | None = None) -> AsyncIterator[RawStdio]:
    """The console script with `args`, initialized (protocol 2025-11-25). On leaving: stdin closed, and
    the server must exit 0 within 60 s, with every stdout line JSON-RPC and no traceback on stderr."""
    assert SCRIPT, "the console script is not installed in this environment"
    proc = await asyncio.create_subprocess_exec(
        SCRIPT,
        *args,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHON_DOTENV_DISABLED": "1", **(env or {})},
    )
    server = RawStdio(proc)
    assert proc.stdin is not None
    try:
        info = {"name": "raw-stdio", "version": "0"}
        await server.rpc("initialize", {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": info})
        proc.stdin.write(b'{"jsonrpc": "2.0", "method": "notifications/initialized"}\n')
        yield server
    finally:
        proc.stdin.close()
        try:
            rest, err = await asyncio.wait_for(proc.communicate(), 60)
        except TimeoutError:
            proc.kill()
            raise
    server.lines += [line for line in rest.splitlines(keepends=True) if line.strip()]
    for line in server.lines:
        assert json.loads(line)["jsonrpc"] == "2.0", line
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    assert b"Traceback" not in err
