"""Cold start: spawn the console script over stdio until its `initialize` result arrives,
beside the floor of a bare `python -c "import mcp.server"` measured in the same run."""

from __future__ import annotations

import asyncio
import compileall
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import mcp_server_conversations
from mcp_server_conversations.storage import SQLiteStore

from .common import SERVER_SCRIPT, Figure, Sizes, child_env, median, now

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}},
}


def server_cold_start(db: Path) -> float:
    """Seconds from spawning the server to reading its `initialize` result from stdout."""
    started = now()
    proc = subprocess.Popen(
        [str(SERVER_SCRIPT), "--db", str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=child_env(),
    )
    assert proc.stdin and proc.stdout
    proc.stdin.write((json.dumps(INITIALIZE) + "\n").encode())
    proc.stdin.flush()
    line = proc.stdout.readline()
    elapsed = now() - started
    proc.stdin.close()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    reply = json.loads(line)
    if "result" not in reply:
        raise RuntimeError(f"initialize failed: {reply}")
    return elapsed


def import_floor() -> float:
    """Seconds from spawning `python -c "import mcp.server"` to the import being done (the child
    then says so on stdout); its exit is not counted, as the server's is not."""
    started = now()
    proc = subprocess.Popen(
        [sys.executable, "-c", "import mcp.server; print('imported', flush=True)"],
        stdout=subprocess.PIPE,
        env=child_env(),
    )
    assert proc.stdout
    line = proc.stdout.readline()
    elapsed = now() - started
    proc.wait(timeout=30)
    if not line.startswith(b"imported"):
        raise RuntimeError("python -c 'import mcp.server' failed")
    return elapsed


async def _create(db: Path) -> None:
    store = await SQLiteStore.open(db)
    await store.close()


def measure(runs: int) -> tuple[list[float], list[float]]:
    # Byte-compile the package as an install does (pip writes .pyc files; an editable checkout run
    # with PYTHONDONTWRITEBYTECODE would otherwise compile every module at every start).
    compileall.compile_dir(str(Path(mcp_server_conversations.__file__).parent), quiet=1)
    with tempfile.TemporaryDirectory(prefix="bench-start-") as tmp:
        db = Path(tmp) / "start.db"
        asyncio.run(_create(db))  # an existing, migrated file: starts open it as a user's would
        if runs > 1:  # warm the OS file cache for both commands
            server_cold_start(db)
            import_floor()
        servers, floors = [], []
        for _ in range(runs):  # interleaved, so drift in machine load hits both alike
            floors.append(import_floor())
            servers.append(server_cold_start(db))
    return servers, floors


async def run(sizes: Sizes) -> list[Figure]:
    servers, floors = await asyncio.to_thread(measure, sizes.cold_starts)
    s, f = median(servers), median(floors)
    return [
        Figure(
            f"cold start → initialize (median of {len(servers)})",
            s,
            "s",
            "≤ 1.0 s and ≤ 1.5× floor",
            s <= 1.0 and s <= 1.5 * f,
            baseline=f,
            baseline_label="`import mcp.server`",
            details={"server_s": servers, "floor_s": floors, "ratio": s / f},
        )
    ]
