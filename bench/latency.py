"""Tool latency: stdio round trips to the spawned console script through a real MCP client,
beside the round trip of an MCP `ping` (the transport's own floor) in the same session."""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from .common import QUIET_ENV, SERVER_SCRIPT, Figure, Sizes, ms, now, percentile
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


async def run(sizes: Sizes) -> list[Figure]:
    n = sizes.latency_calls
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        db = Path(tmp) / "latency.db"
        ids = await seed(db)
        with open(Path(tmp) / "server.log", "w") as log:  # noqa: ASYNC230 (once, before timing)
            async with connect(db, log) as client:

                async def tool(name: str, args: dict[str, Any]) -> Callable[[], Awaitable[Any]]:
                    async def call() -> None:
                        r = await client.call_tool(name, args)
                        if r.is_error:
                            raise RuntimeError(f"{name} failed: {r.content}")

                    await call()
                    return call

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # ping is deprecated in the 2026 protocol, fine on 2025-11-25
                    floor = await timed(n, client.send_ping)
                calls = {
                    "get_conversation": await tool("get_conversation", ids),
                    "create_conversation": await tool("create_conversation", {}),
                    "list_conversations(50)": await tool("list_conversations", {"limit": 50}),
                    "list_messages(100)": await tool("list_messages", {**ids, "limit": 100}),
                }
                results = {name: await timed(n, call) for name, call in calls.items()}
    f50, f99 = percentile(floor, 50), percentile(floor, 99)
    figures = []
    for name, t in results.items():
        p50, p99 = percentile(t, 50), percentile(t, 99)
        figures.append(Figure(
            f"tool latency {name} (stdio, {n} calls)", p50, "ms", "p50 ≤ 2 ms, p99 ≤ 10 ms", p50 <= 2 and p99 <= 10,
            baseline=f50, shown=f"p50 {p50:.2f} / p99 {p99:.2f} ms",
            shown_baseline=f"ping p50 {f50:.2f} / p99 {f99:.2f} ms",
            details={"p50_ms": p50, "p99_ms": p99, "max_ms": max(t), "ping_p50_ms": f50, "ping_p99_ms": f99},
        ))
    return figures
