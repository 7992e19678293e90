"""Tool latency: stdio round trips to the spawned console script through a real MCP client
(`mcp.Client`, which validates every structured result against the tool's output schema with
jsonschema), beside the same call from a bare JSON-RPC client on the pipes (the server's own
share), itself beside the same reply returned prebuilt by a stand-in server (bench/floor_server.py:
what the MCP SDK, the pipes and the client's parse cost for those bytes) and an MCP `ping`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from .backends import SQLITE, Backend
from .common import QUIET_ENV, REPO, SERVER_SCRIPT, Figure, Sizes, child_env, child_pid, ms, now, percentile, wait_idle
from .corpus import Corpus
from .storage_bench import open_service, to_new


async def seed(db: str) -> dict[str, str]:
    """60 conversations of the default agent, one of them with 150 messages."""
    store, service = await open_service(db)
    try:
        convs = [await service.create_conversation(summary=f"thread {i}") for i in range(60)]
        (msgs,) = Corpus(seed=3, vocabulary=3_000, pool_tokens=50_000).conversations(150, 1)
        await store.import_messages([(convs[0].id, to_new(msgs))])
    finally:
        await store.close()
    return {"conversation_id": convs[0].id}


def floor_command(db: str, conversation_id: str) -> list[str]:
    """The stand-in serving each timed tool's reply prebuilt (bench/floor_server.py), run from REPO."""
    return [sys.executable, "-m", "bench.floor_server", str(db), conversation_id]


def connect(db: str, errlog: Any, floor: str | None = None) -> Client:
    """mcp.Client on the console script, or with `floor` (the seeded conversation's id) on the
    stand-in serving prebuilt replies."""
    if floor is None:
        params = StdioServerParameters(command=str(SERVER_SCRIPT), args=["--db", str(db)], env=dict(QUIET_ENV))
    else:
        command, *args = floor_command(db, floor)
        params = StdioServerParameters(command=command, args=args, env={**QUIET_ENV, "PYTHONPATH": str(REPO)}, cwd=REPO)
    return Client(stdio_client(params, errlog=errlog), mode="legacy")


async def timed(n: int, call: Callable[[], Awaitable[Any]]) -> list[float]:
    for _ in range(max(2, n // 20)):  # warm-up
        await call()
    out = []
    for _ in range(n):
        t = now()
        await call()
        out.append(ms(now() - t))
    return out


class RawStdio:
    """A minimal JSON-RPC client on the server's pipes (no schema validation, no SDK): the server's
    own share of a round trip."""

    def __init__(self, db: str, errlog: Any, settle: bool = True, command: list[str] | None = None) -> None:
        self.proc = subprocess.Popen(
            command or [str(SERVER_SCRIPT), "--db", str(db)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errlog,
            env=child_env(PYTHONPATH=str(REPO)),
            cwd=REPO,
        )
        self.next_id = 0
        self.idle_after = 0.0
        self.rpc(
            "initialize",
            {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}},
        )
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        self.idle_after = wait_idle(self.proc.pid) if settle else 0.0

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        self.proc.stdin.flush()

    def rpc(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdout
        self.next_id += 1
        self.send({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        reply = json.loads(self.proc.stdout.readline())
        if "result" not in reply or reply["result"].get("isError"):
            raise RuntimeError(f"{method} failed: {reply}")
        return reply["result"]

    def timed(self, n: int, method: str, params: dict[str, Any]) -> list[float]:
        for _ in range(max(2, n // 20)):
            self.rpc(method, params)
        out = []
        for _ in range(n):
            t = now()
            self.rpc(method, params)
            out.append(ms(now() - t))
        return out

    def close(self) -> None:
        assert self.proc.stdin
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


TOOLS = {  # figure name -> (tool, arguments beyond the seeded conversation id)
    "get_conversation": ("get_conversation", {"conversation_id": None}),
    "create_conversation": ("create_conversation", {}),
    "list_conversations(50)": ("list_conversations", {"limit": 50}),
    "list_messages(100)": ("list_messages", {"conversation_id": None, "limit": 100}),
}


def arguments(template: dict[str, Any], ids: dict[str, str]) -> dict[str, Any]:
    return {k: ids[k] if v is None else v for k, v in template.items()}


def server_only_with(
    db: str, log: Any, n: int, calls: dict[str, tuple[str, dict[str, Any]]], settle: bool, conversation_id: str
) -> tuple[dict[str, list[float]], dict[str, list[float]], list[float]]:
    """Each tool from a bare JSON-RPC client, then the same reply prebuilt (bench/floor_server.py,
    its own process), alternating tool by tool; and ping, the transport's floor."""
    raw = RawStdio(db, log, settle)
    floor = RawStdio(db, log, settle, floor_command(db, conversation_id))
    try:
        times, floors = {}, {}
        for name, (tool, args) in calls.items():
            times[name] = raw.timed(n, "tools/call", {"name": tool, "arguments": args})
            floors[name] = floor.timed(n, "tools/call", {"name": f"prebuilt_{tool}", "arguments": {}})
        return times, floors, raw.timed(n, "ping", {})
    finally:
        raw.close()
        floor.close()


async def run(sizes: Sizes, backend: Backend = SQLITE) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        async with backend.scratch(Path(tmp), "latency") as db:
            return await measure(sizes, db, Path(tmp))


async def measure(sizes: Sizes, db: str, tmpdir: Path) -> list[Figure]:
    n = sizes.latency_calls
    ids = await seed(db)
    with open(tmpdir / "server.log", "w") as log:  # noqa: ASYNC230 (once, before timing)
        async with connect(db, log) as client, connect(db, log, floor=ids["conversation_id"]) as floor_client:
            idle = 0.0
            if not sizes.quick:  # let the servers finish importing litellm in the background first
                idle = await asyncio.to_thread(wait_idle, child_pid(b"mcp-server-conversations"))
                idle += await asyncio.to_thread(wait_idle, child_pid(b"bench.floor_server"))

            async def tool(c: Client, name: str, args: dict[str, Any]) -> Callable[[], Awaitable[Any]]:
                async def call() -> None:
                    r = await c.call_tool(name, args)
                    if r.is_error:
                        raise RuntimeError(f"{name} failed: {r.content}")

                await call()
                return call

            results, client_floor = {}, {}
            for name, (t, args) in TOOLS.items():  # alternating, so load drift hits both alike
                results[name] = await timed(n, await tool(client, t, arguments(args, ids)))
                client_floor[name] = await timed(n, await tool(floor_client, f"prebuilt_{t}", {}))
        templates = {name: (t, arguments(args, ids)) for name, (t, args) in TOOLS.items()}
        raw, prebuilt, raw_floor = await asyncio.to_thread(
            server_only_with, db, log, n, templates, not sizes.quick, ids["conversation_id"]
        )
    figures = []
    f50, f99 = percentile(raw_floor, 50), percentile(raw_floor, 99)
    for name, t in results.items():
        p50, p99 = percentile(t, 50), percentile(t, 99)
        r50, r99 = percentile(raw[name], 50), percentile(raw[name], 99)
        b50 = percentile(prebuilt[name], 50)
        c50 = percentile(client_floor[name], 50)
        figures.append(
            Figure(
                f"tool latency {name} via mcp.Client ({n} calls)",
                p50,
                "ms",
                "p50 ≤ 2 ms, p99 ≤ 10 ms",
                p50 <= 2 and p99 <= 10,
                baseline=c50,
                shown=f"p50 {p50:.2f} / p99 {p99:.2f} ms",
                shown_baseline=f"same reply prebuilt p50 {c50:.2f} ms; server only {r50:.2f} ms",
                details={
                    "p50_ms": p50,
                    "p99_ms": p99,
                    "max_ms": max(t),
                    "waited_for_idle_s": round(idle, 1),
                    "prebuilt_reply_p50_ms": c50,
                    "prebuilt_reply_p99_ms": percentile(client_floor[name], 99),
                    "server_only_p50_ms": r50,
                },
            )
        )
        figures.append(
            Figure(
                f"tool latency {name}, server only (raw JSON-RPC)",
                r50,
                "ms",
                "p50 ≤ 2 ms, p99 ≤ 10 ms",
                r50 <= 2 and r99 <= 10,
                baseline=b50,
                shown=f"p50 {r50:.2f} / p99 {r99:.2f} ms",
                shown_baseline=f"same reply prebuilt p50 {b50:.2f} ms; ping {f50:.2f} ms",
                details={
                    "p50_ms": r50,
                    "p99_ms": r99,
                    "max_ms": max(raw[name]),
                    "prebuilt_reply_p50_ms": b50,
                    "prebuilt_reply_p99_ms": percentile(prebuilt[name], 99),
                    "ping_p50_ms": f50,
                    "ping_p99_ms": f99,
                },
            )
        )
    return figures
