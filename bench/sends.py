"""Send figures: overhead per turn, streaming overhead, parallel sends, the same-conversation
queue, and server memory after many sends — all through the spawned console script over
stdio, against the fake OpenAI-compatible provider the tests use (run as its own process),
each beside a baseline taken in the same run.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from .backends import SQLITE, Backend
from .common import (
    QUIET_ENV,
    REPO,
    SERVER_SCRIPT,
    Figure,
    Sizes,
    child_env,
    child_pid,
    cpu_seconds,
    ms,
    now,
    percentile,
    rss_mib,
    wait_idle,
)

MODEL = "openai/fake"


class Provider:
    """tests/fake_provider.py in its own process, scripted over its HTTP remote control."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "tests" / "fake_provider.py"), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=child_env(),
            text=True,
        )
        assert self.proc.stdout
        line = self.proc.stdout.readline()  # "fake provider at http://127.0.0.1:PORT/v1  (…)"
        if "http://" not in line:
            self.stop()
            raise RuntimeError(f"fake provider did not start: {line!r}")
        self.base_url = line.split()[3]

    def env(self) -> dict[str, str]:
        return {"OPENAI_API_BASE": self.base_url, "OPENAI_API_KEY": "test"}

    def _call(self, path: str, body: dict[str, Any] | None = None) -> Any:
        root = self.base_url.removesuffix("/v1")
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(root + path, data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def enqueue(self, n: int, **reply: Any) -> None:
        for _ in range(n):
            self._call("/_fake/enqueue", reply)

    def requests(self) -> list[dict[str, Any]]:
        return self._call("/_fake/requests")["requests"]

    def reset(self) -> None:
        self._call("/_fake/reset", {})

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def server_pid() -> int:
    """The spawned server: our child process running the console script."""
    return child_pid(b"mcp-server-conversations")


async def direct_completion(provider: Provider, first_delta: list[float] | None = None) -> float:
    """One streamed litellm call straight to the provider, consumed to the end (the baseline);
    `first_delta` gets the monotonic time the first text delta reached this process."""
    import litellm

    t = now()
    stream = await litellm.acompletion(
        model=MODEL,
        api_base=provider.base_url,
        api_key="test",
        stream=True,
        stream_options={"include_usage": True},
        timeout=30,
        num_retries=1,  # as the server is run here
        messages=[
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "hello there"},
        ],
    )
    async for chunk in stream:
        if first_delta is not None and not first_delta and chunk.choices and chunk.choices[0].delta.content:
            first_delta.append(time.monotonic())
    return now() - t


class Session:
    """The spawned server with a connected client, plus helpers for timed sends."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def conversation(self) -> str:
        r = await self.client.call_tool("create_conversation", {})
        return r.structured_content["id"]

    async def send(self, conv: str, text: str, on_progress: Any = None) -> dict[str, Any]:
        r = await self.client.call_tool(
            "send_message", {"conversation_id": conv, "content": text}, progress_callback=on_progress
        )
        if r.is_error:
            raise RuntimeError(f"send_message failed: {r.content}")
        return r.structured_content

    async def timed_send(self, conv: str, text: str) -> float:
        t = now()
        await self.send(conv, text)
        return now() - t


async def send_overhead(s: Session, provider: Provider, sizes: Sizes) -> Figure:
    convs = [await s.conversation() for _ in range(10)]
    sends, direct = [], []
    server, server_cpu, own_cpu = server_pid(), 0.0, 0.0
    for i in range(sizes.send_samples):  # interleaved, so load drift hits both alike
        before = cpu_seconds(server)
        sends.append(ms(await s.timed_send(convs[i % len(convs)], f"hello number {i}")))
        server_cpu += cpu_seconds(server) - before
        before = time.process_time()
        direct.append(ms(await direct_completion(provider)))
        own_cpu += time.process_time() - before
    p50, base = percentile(sends, 50), percentile(direct, 50)
    over = p50 - base
    return Figure(
        "send overhead per turn (send_message p50 − direct litellm p50)",
        over,
        "ms",
        "≤ 10 ms",
        over <= 10,
        baseline=base,
        baseline_label="direct `litellm.acompletion`",
        details={
            "send_p50_ms": p50,
            "send_p99_ms": percentile(sends, 99),
            "direct_p50_ms": base,
            "samples": len(sends),
            "server_cpu_ms_per_send": 1000 * server_cpu / len(sends),
            "litellm_cpu_ms_per_direct_call": 1000 * own_cpu / len(direct),
        },
    )


async def database_trips(provider: Provider, sizes: Sizes, backend: Backend) -> Figure:
    """Hand-offs to the database threads per one-step send, counted in process (over stdio they cannot
    be seen). Cancel requests are not looked for meanwhile: that watcher is not the send's work."""
    from mcp_server_conversations.app import open_app
    from mcp_server_conversations.config import Settings
    from mcp_server_conversations.runs import remote_cancel

    os.environ.update(provider.env())
    poll, remote_cancel.CANCEL_POLL = remote_cancel.CANCEL_POLL, 3600.0
    trips: list[int] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-trips-") as tmp:
            async with (
                backend.scratch(Path(tmp), "trips") as location,
                open_app(Settings(db=location, default_model=MODEL)) as app,
            ):
                database = app.store.database  # type: ignore[attr-defined]
                conv = await app.service.create_conversation()
                await app.runtime.send(conv.id, content="warm-up")
                for i in range(5 if sizes.quick else 20):
                    before = database.trips
                    await app.runtime.send(conv.id, content=f"count {i}")
                    trips.append(database.trips - before)
    finally:
        remote_cancel.CANCEL_POLL = poll
    return Figure(
        "database trips per one-step send",
        max(trips),
        "trips",
        "≤ 3",
        max(trips) <= 3,
        details={"sends": len(trips), "min": min(trips)},
    )


async def streaming_overhead(s: Session, provider: Provider, sizes: Sizes) -> Figure:
    """First progress notification at the client minus the provider's first SSE chunk, beside the
    same gap for litellm alone (first text delta in this process): the floor any server pays."""
    conv = await s.conversation()
    gaps, floor = [], []
    for i in range(max(5, sizes.send_samples // 4)):
        provider.reset()
        first: list[float] = []

        async def on_progress(progress: float, total: float | None, message: str | None, first=first) -> None:
            if message and not first:
                first.append(time.monotonic())  # CLOCK_MONOTONIC: the same clock as the provider process

        await s.send(conv, f"stream number {i}", on_progress)
        (req,) = provider.requests()
        gaps.append(ms(first[0] - req["first_chunk_at"]))
        provider.reset()
        direct: list[float] = []
        await direct_completion(provider, direct)
        (req,) = provider.requests()
        floor.append(ms(direct[0] - req["first_chunk_at"]))
    p50, base = percentile(gaps, 50), percentile(floor, 50)
    return Figure(
        "streaming overhead (first progress at client − first SSE chunk)",
        p50,
        "ms",
        "≤ 5 ms",
        p50 <= 5,
        baseline=base,
        baseline_label="litellm alone (first delta)",
        details={"p50_ms": p50, "p95_ms": percentile(gaps, 95), "litellm_p50_ms": base, "samples": len(gaps)},
    )


async def parallel_sends(s: Session, provider: Provider, sizes: Sizes) -> Figure:
    """N sends to N conversations at once over one connection, beside the same for N bare
    litellm calls from this process (litellm's own CPU per call is what a single process shares)."""
    n, delay = sizes.parallel, sizes.provider_delay
    convs = [await s.conversation() for _ in range(n)]
    provider.enqueue(1, delay=delay)
    one = await s.timed_send(convs[0], "alone")
    provider.enqueue(n, delay=delay)
    t = now()
    await asyncio.gather(*(s.send(c, f"together {i}") for i, c in enumerate(convs)))
    wall = now() - t
    provider.enqueue(1, delay=delay)
    bare_one = await direct_completion(provider)
    provider.enqueue(n, delay=delay)
    t = now()
    await asyncio.gather(*(direct_completion(provider) for _ in range(n)))
    bare_wall = now() - t
    ratio, bare = wall / one, bare_wall / bare_one
    return Figure(
        f"parallel sends: {n} conversations at once, wall ÷ one send",
        ratio,
        "x",
        "≤ 1.5",
        ratio <= 1.5,
        baseline=bare,
        baseline_label=f"{n} bare litellm calls ÷ one",
        details={
            "provider_delay_s": delay,
            "wall_ms": ms(wall),
            "one_ms": ms(one),
            "bare_wall_ms": ms(bare_wall),
            "bare_one_ms": ms(bare_one),
        },
    )


async def same_conversation_queue(s: Session, provider: Provider, sizes: Sizes) -> Figure:
    n, delay = sizes.queue, sizes.provider_delay
    conv = await s.conversation()
    provider.enqueue(1, delay=delay)
    one = await s.timed_send(conv, "warm-up")
    provider.enqueue(n, delay=delay)
    texts = [f"queued message {i}" for i in range(n)]
    t = now()
    tasks = []
    for text in texts:  # started one after another, so their requests reach the server in this order
        tasks.append(asyncio.create_task(s.send(conv, text)))
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    wall = now() - t
    r = await s.client.call_tool("list_messages", {"conversation_id": conv, "limit": 1000})
    history = [(m["role"], m["content"]) for m in r.structured_content["messages"]][2:]  # after the warm-up turn
    expected = [x for text in texts for x in (("user", text), ("assistant", f"Fake reply to: {text}"))]
    in_order = history == expected
    ratio = wall / (n * one)
    return Figure(
        f"same-conversation queue: {n} sends at once, wall ÷ ({n} × one send)",
        ratio,
        "x",
        "≤ 1.1, all in order",
        ratio <= 1.1 and in_order,
        baseline=ms(one),
        baseline_unit="ms",
        baseline_label="(one send)",
        details={"in_order": in_order, "wall_ms": ms(wall), "history_head": history[:4]},
    )


def bare_rss() -> float:
    """RSS of a bare interpreter that imported litellm and the MCP server package."""
    code = (
        "import litellm, mcp.server\n"
        "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmRSS:')][0])"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=child_env())
    return int(out.stdout.strip()) / 1024


async def memory_after_sends(s: Session, sizes: Sizes) -> Figure:
    convs = [await s.conversation() for _ in range(20)]
    queue = asyncio.Queue()
    for i in range(sizes.sends):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            await s.send(convs[i % len(convs)], f"message {i} for the memory figure")

    await asyncio.gather(*(worker() for _ in range(4)))
    rss = rss_mib(server_pid())
    floor = await asyncio.to_thread(bare_rss)
    ratio = rss / floor
    return Figure(
        f"server RSS after warm-up and {sizes.sends:,} sends",
        rss,
        "MiB",
        "≤ 1.3× floor",
        ratio <= 1.3,
        baseline=floor,
        baseline_label="`import litellm, mcp.server`",
        details={"ratio": ratio},
    )


async def run(sizes: Sizes, backend: Backend = SQLITE) -> list[Figure]:
    provider = Provider()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-sends-") as tmp:
            async with backend.scratch(Path(tmp), "sends") as db:
                return await measure(sizes, backend, provider, db, Path(tmp))
    finally:
        provider.stop()


async def measure(sizes: Sizes, backend: Backend, provider: Provider, db: str, tmp: Path) -> list[Figure]:
    params = StdioServerParameters(
        command=str(SERVER_SCRIPT),
        args=["--db", str(db), "--model", MODEL],
        # One retry, as a deployment would set: a keep-alive connection the fake provider closes
        # just as litellm reuses it otherwise fails one send in a thousand ("Connection error").
        env={**QUIET_ENV, **provider.env(), "CONVERSATIONS_MODEL_RETRIES": "1"},
    )
    with open(tmp / "server.log", "w") as log:  # noqa: ASYNC230 (once, before timing)
        async with Client(stdio_client(params, errlog=log), mode="legacy") as client:
            s = Session(client)
            warm = await s.conversation()

            async def warm_up() -> None:  # the first send imports litellm in the server
                for i in range(2 if sizes.quick else 5):
                    await s.send(warm, f"warm-up {i}")

            # litellm's import (seconds) in this process overlaps the server's.
            await asyncio.gather(warm_up(), asyncio.to_thread(importlib.import_module, "litellm"))
            await direct_completion(provider)
            if not sizes.quick:
                await asyncio.to_thread(wait_idle, server_pid())
            figures = [await send_overhead(s, provider, sizes)]
            figures.append(await streaming_overhead(s, provider, sizes))
            figures.append(await database_trips(provider, sizes, backend))
            figures.append(await parallel_sends(s, provider, sizes))
            figures.append(await same_conversation_queue(s, provider, sizes))
            figures.append(await memory_after_sends(s, sizes))
            import litellm

            await litellm.close_litellm_async_clients()
    return figures
