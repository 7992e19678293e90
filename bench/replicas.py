"""Parallel sends through replicas: N sends to N conversations at once, spread round-robin over 1
or 3 server processes (`--stateless` streamable HTTP, each its own process, sharing only the URL of
one scratch PostgreSQL database), each model call held `provider_delay` by the fake provider (its
own process); the wall time of the N ÷ one send alone. Sends go through Letta's REST API
(`streaming: false`), the cheapest client on this machine's shared cores. Beside it: what each
replica's CPU and the machine's load were meanwhile, which is what bounds the figure here.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import httpx

from .backends import Backend
from .common import Figure, Sizes, cpu_seconds, median, ms, now, wait_idle
from .load import TOKEN, free_port, send_turn, start_server
from .sends import Provider

REPLICAS = (1, 3)


class Replica:
    def __init__(self, url: str, provider: Provider, log: Path) -> None:
        port = free_port()
        self.proc = start_server(url, port, provider, log, "--stateless")
        self.http = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=120,
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=200),
        )

    async def send(self, conv: str, text: str) -> None:
        problem = await send_turn(self.http, conv, text)
        if problem is not None:
            raise RuntimeError(f"send through a replica failed: {problem}")

    async def stop(self) -> None:
        await self.http.aclose()
        self.proc.terminate()
        try:
            await asyncio.to_thread(self.proc.wait, 30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def parallel(replicas: list[Replica], provider: Provider, convs: list[str], delay: float, tag: str) -> float:
    """The wall time of one send to each conversation, all at once, the i-th through replica i mod k."""
    provider.enqueue(len(convs), delay=delay)
    t = now()
    await asyncio.gather(*(replicas[i % len(replicas)].send(c, f"{tag} {i}") for i, c in enumerate(convs)))
    return now() - t


async def measure(sizes: Sizes, url: str, provider: Provider, tmp: Path) -> list[Figure]:
    n, delay = sizes.parallel, sizes.provider_delay
    # One after another: the first applies the migrations, the others find them applied.
    servers = [Replica(url, provider, tmp / f"replica-{i}.log") for i in range(max(REPLICAS))]
    try:
        first = servers[0]
        r = await first.http.post("/v1/conversations/", json={"summary": "bench"})
        r.raise_for_status()
        convs = []
        for i in range(n):
            r = await first.http.post("/v1/conversations/", json={"summary": f"parallel {i}"})
            r.raise_for_status()
            convs.append(r.json()["id"])
        for k, s in enumerate(servers):  # the first sends import litellm in each replica
            for i in range(2 if sizes.quick else 4):
                await s.send(convs[k], f"warm-up {i}")
        await parallel(servers, provider, convs, 0.0, "warm-up all")
        if not sizes.quick:
            for s in servers:
                await asyncio.to_thread(wait_idle, s.proc.pid)
        figures = []
        for k in REPLICAS:
            used = servers[:k]
            ones, walls, cpu = [], [], [0.0] * k
            load = []
            for rnd in range(sizes.replica_rounds):
                provider.enqueue(1, delay=delay)
                t = now()
                await used[0].send(convs[0], f"alone {k} {rnd}")
                ones.append(now() - t)
                before = [cpu_seconds(s.proc.pid) for s in used]
                walls.append(await parallel(used, provider, convs, delay, f"together {k} {rnd}"))
                cpu = [c + cpu_seconds(s.proc.pid) - b for c, s, b in zip(cpu, used, before, strict=True)]
                load.append(os.getloadavg()[0])
            one, wall = median(ones), median(walls)
            ratio = wall / one
            details: dict[str, Any] = {
                "replicas": k,
                "sends": n,
                "provider_delay_s": delay,
                "rounds": sizes.replica_rounds,
                "one_ms": ms(one),
                "wall_ms": ms(wall),
                "walls_ms": [round(ms(w), 1) for w in walls],
                "server_cpu_ms_per_send": 1000 * sum(cpu) / (n * sizes.replica_rounds),
                "server_cpu_ms_per_round_each_replica": [round(1000 * c / sizes.replica_rounds) for c in cpu],
                "load_average_1min": load,
                "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            }
            figures.append(
                Figure(
                    f"parallel sends through {k} replica{'s' if k > 1 else ''}: {n} at once, wall ÷ one send",
                    ratio,
                    "x",
                    "towards 1.0 with replicas",
                    None,
                    baseline=ms(one),
                    baseline_unit="ms",
                    baseline_label="(one send)",
                    backend="PostgreSQL",
                    details=details,
                )
            )
        return figures
    finally:
        for s in servers:
            await s.stop()


async def run(sizes: Sizes) -> list[Figure]:
    provider = Provider()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-replicas-") as tmp:
            async with Backend("postgres").scratch(Path(tmp), "replicas") as url:
                return await measure(sizes, url, provider, Path(tmp))
    finally:
        provider.stop()
