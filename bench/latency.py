"""Tool latency: stdio round trips to the spawned console script through a real MCP client
(`mcp.Client`, which validates every structured result against the tool's output schema with
jsonschema), beside the same call from a bare JSON-RPC client on the pipes (the server's own
share), itself beside an MCP `ping` (the stdio transport's floor) in the same session."""

from __future__ import annotations

import asyncio
import json
import subprocess
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from .common import QUIET_ENV, SERVER_SCRIPT, Figure, Sizes, child_env, child_pid, ms, now, percentile, wait_idle
from .corpus import Corpus
from .storage_bench import open_service, to_new


async def seed(db: Path) -> dict[str, str]:
    """60 conversations of the default agent, one of them with 150 messages."""
    store, service = await open_service(db)
    try:
        convs = [await service.create_conversation(summary=f"thread {i}") for i in range(60)]
        (msgs,) = Corpus(seed=3, vocabulary=3_000, pool_tokens=50_000).conversations(150, 1)
        await store.import_messages([(convs[0].id, to_new(msgs))])
    finally:
        await store.close()
    return {"conversation_id": convs[0].id}


def connect(db: Path, errlog: Any) -> Client:
    params = StdioServerParameters(command=str(SERVER_SCRIPT), args=["--db", str(db)], env=dict(QUIET_ENV))
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

    def __init__(self, db: Path, errlog: Any, settle: bool = True) -> None:
        self.proc = subprocess.Popen(
            [str(SERVER_SCRIPT), "--db", str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errlog,
            env=child_env(),
        )
        self.next_id = 0
        self.idle_after = 0.0
        self.rpc("initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                                "clientInfo": {"name": "bench", "version": "0"}})
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
    db: Path, log: Any, n: int, calls: dict[str, tuple[str, dict[str, Any]]], settle: bool
) -> tuple[dict[str, list[float]], list[float]]:
    raw = RawStdio(db, log, settle)
    try:
        times = {name: raw.timed(n, "tools/call", {"name": tool, "arguments": args})
                 for name, (tool, args) in calls.items()}
        return times, raw.timed(n, "ping", {})
    finally:
        raw.close()


async def run(sizes: Sizes) -> list[Figure]:
    n = sizes.latency_calls
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        db = Path(tmp) / "latency.db"
        ids = await seed(db)
        with open(Path(tmp) / "server.log", "w") as log:  # noqa: ASYNC230 (once, before timing)
            async with connect(db, log) as client:
                idle = 0.0
                if not sizes.quick:  # let the server finish importing litellm in the background first
                    idle = await asyncio.to_thread(wait_idle, child_pid(b"mcp-server-conversations"))

                async def tool(name: str, args: dict[str, Any]) -> Callable[[], Awaitable[Any]]:
                    async def call() -> None:
                        r = await client.call_tool(name, args)
                        if r.is_error:
                            raise RuntimeError(f"{name} failed: {r.content}")

                    await call()
                    return call

                results = {
                    name: await timed(n, await tool(t, arguments(args, ids))) for name, (t, args) in TOOLS.items()
                }
            templates = {name: (t, arguments(args, ids)) for name, (t, args) in TOOLS.items()}
            raw, raw_floor = await asyncio.to_thread(server_only_with, db, log, n, templates, not sizes.quick)
    figures = []
    f50, f99 = percentile(raw_floor, 50), percentile(raw_floor, 99)
    for name, t in results.items():
        p50, p99 = percentile(t, 50), percentile(t, 99)
        r50, r99 = percentile(raw[name], 50), percentile(raw[name], 99)
        figures.append(Figure(
            f"tool latency {name} via mcp.Client ({n} calls)", p50, "ms", "p50 ≤ 2 ms, p99 ≤ 10 ms",
            p50 <= 2 and p99 <= 10, baseline=r50, shown=f"p50 {p50:.2f} / p99 {p99:.2f} ms",
            shown_baseline=f"server only p50 {r50:.2f} ms (the rest is the client's)",
            details={"p50_ms": p50, "p99_ms": p99, "max_ms": max(t), "waited_for_idle_s": round(idle, 1)},
        ))
        figures.append(Figure(
            f"tool latency {name}, server only (raw JSON-RPC)", r50, "ms", "p50 ≤ 2 ms, p99 ≤ 10 ms",
            r50 <= 2 and r99 <= 10, baseline=f50, shown=f"p50 {r50:.2f} / p99 {r99:.2f} ms",
            shown_baseline=f"ping p50 {f50:.2f} / p99 {f99:.2f} ms",
            details={"p50_ms": r50, "p99_ms": r99, "max_ms": max(raw[name])},
        ))
    return figures
