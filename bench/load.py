"""Sustained HTTP load: many concurrent clients, each sending turns through Letta's REST API
(`POST /v1/conversations/{id}/messages`, `streaming: false`) to its own conversation for a fixed
time, against the spawned console script serving streamable HTTP, with models answered by the fake
OpenAI-compatible provider (its own process). Reports turns/s, p50/p99 turn latency, errors (any
non-200, or a reply that is not the one for that turn's text: must be 0) and the server's RSS growth
from after warm-up to the end; beside the same clients calling the provider alone.

`python bench/load.py [--quick] [--clients N] [--seconds S]` prints the table; `bench/run.py` runs it
as the group `load`.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    SERVER_SCRIPT,
    Figure,
    Sizes,
    child_env,
    cpu_seconds,
    ms,
    now,
    percentile,
    rss_mib,
    wait_idle,
)
from bench.sends import MODEL, Provider  # noqa: E402

TOKEN = "bench-load-token"
START_TIMEOUT = 60.0


@dataclass
class Tally:
    """What the clients saw."""

    latencies: list[float] = field(default_factory=list)  # seconds per successful turn
    errors: list[str] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(db: Path | str, port: int, provider: Provider, log: Path, *flags: str) -> subprocess.Popen[bytes]:
    """The console script serving streamable HTTP on `port` (bearer TOKEN), once /healthz answers."""
    argv = [
        str(SERVER_SCRIPT),
        "--transport",
        "streamable-http",
        "--db",
        str(db),
        "--port",
        str(port),
        "--model",
        MODEL,
        *flags,
    ]
    # One model retry, as a deployment would set (see bench/sends.py); the token from the environment.
    env = child_env(**provider.env(), CONVERSATIONS_MODEL_RETRIES="1", CONVERSATIONS_AUTH_TOKEN=TOKEN)
    with open(log, "wb") as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=env)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("server did not become healthy")
        time.sleep(0.05)


async def send_turn(http: httpx.AsyncClient, conv: str, text: str) -> str | None:
    """One turn; None when it worked, else what went wrong."""
    body = {"messages": [{"role": "user", "content": text}], "streaming": False}
    try:
        r = await http.post(f"/v1/conversations/{conv}/messages", json=body)
    except httpx.HTTPError as e:
        return f"{type(e).__name__}: {e}"
    if r.status_code != 200:
        return f"HTTP {r.status_code}: {r.text[:200]}"
    replies = [m.get("content") for m in r.json().get("messages", []) if m.get("message_type") == "assistant_message"]
    if replies != [f"Fake reply to: {text}"]:
        return f"unexpected reply {replies!r}"
    return None


async def client_loop(base: str, conv: str, until: float, tally: Tally, n: int) -> int:
    """Send turns back to back until `until` (perf_counter); returns the turns sent."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    sent = 0
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as http:
        while now() < until:
            t = now()
            problem = await send_turn(http, conv, f"client {n} turn {sent}")
            if problem is None:
                tally.latencies.append(now() - t)
            else:
                tally.errors.append(problem)
            sent += 1
    return sent


async def provider_alone(provider: Provider, clients: int, seconds: float) -> float:
    """Completions/s of the same number of clients calling the provider directly (non-streamed)."""
    done = 0
    until = now() + seconds

    async def one(n: int) -> None:
        nonlocal done
        async with httpx.AsyncClient(base_url=provider.base_url, timeout=60) as http:
            i = 0
            while now() < until:
                body = {"model": "fake", "messages": [{"role": "user", "content": f"client {n} turn {i}"}]}
                r = await http.post("/chat/completions", json=body, headers={"Authorization": "Bearer test"})
                r.raise_for_status()
                done += 1
                i += 1

    started = now()
    await asyncio.gather(*(one(n) for n in range(clients)))
    return done / (now() - started)


async def reset_provider_every(provider: Provider, seconds: float, stop: asyncio.Event) -> None:
    """The provider records every request; forgetting them keeps its memory flat over a long run."""
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=seconds)
        except TimeoutError:
            await asyncio.to_thread(provider.reset)


async def run(sizes: Sizes) -> list[Figure]:
    clients, seconds = sizes.load_clients, sizes.load_seconds
    provider = Provider()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
            port = free_port()
            log = Path(tmp) / "server.log"
            proc = start_server(Path(tmp) / "load.db", port, provider, log)
            try:
                return await measure(proc, f"http://127.0.0.1:{port}", provider, clients, seconds, sizes.quick)
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                if proc.returncode not in (0, -15):
                    print(log.read_text(errors="replace")[-3000:], file=sys.stderr)
    finally:
        provider.stop()


async def measure(
    proc: subprocess.Popen[bytes], base: str, provider: Provider, clients: int, seconds: float, quick: bool
) -> list[Figure]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as http:
        convs = []
        for i in range(clients):
            r = await http.post("/v1/conversations/", json={"summary": f"load {i}"})
            r.raise_for_status()
            convs.append(r.json()["id"])
        for i in range(3):  # the first turns import litellm in the server
            assert await send_turn(http, convs[0], f"warm-up {i}") is None
        await asyncio.gather(*(send_turn(http, c, "warm-up all") for c in convs))
    if not quick:
        await asyncio.to_thread(wait_idle, proc.pid)
    rss_start, cpu_start = rss_mib(proc.pid), cpu_seconds(proc.pid)
    tally, stop = Tally(), asyncio.Event()
    resetter = asyncio.create_task(reset_provider_every(provider, 10.0, stop))
    started = now()
    until = started + seconds
    sent = await asyncio.gather(*(client_loop(base, c, until, tally, n) for n, c in enumerate(convs)))
    wall = now() - started
    stop.set()
    await resetter
    rss_end, cpu = rss_mib(proc.pid), cpu_seconds(proc.pid) - cpu_start
    async with httpx.AsyncClient(timeout=10) as http:
        healthy = (await http.get(f"{base}/healthz")).status_code == 200
    turns = len(tally.latencies)
    rate = turns / wall
    p50, p99 = ms(percentile(tally.latencies, 50)), ms(percentile(tally.latencies, 99))
    errors = len(tally.errors)
    baseline = await provider_alone(provider, clients, min(10.0, seconds / 4))
    details = {
        "clients": clients,
        "seconds": round(wall, 2),
        "turns": turns,
        "attempts": sum(sent),
        "errors": errors,
        "first_errors": tally.errors[:5],
        "p50_ms": p50,
        "p99_ms": p99,
        "rss_start_mib": rss_start,
        "rss_end_mib": rss_end,
        "healthy_after": healthy,
        "provider_alone_per_s": baseline,
        "server_cpu_ms_per_turn": 1000 * cpu / max(1, turns),
        "server_cpu_share": cpu / wall,
    }
    label = f"{clients} clients × {seconds:g} s"
    return [
        Figure(
            f"HTTP load: {label}, REST sends (turns/s, errors)",
            rate,
            "turns/s",
            "errors = 0",
            errors == 0 and healthy,
            baseline=baseline,
            baseline_label="provider alone",
            shown=f"{rate:,.0f} turns/s, {errors} errors",
            details=details,
        ),
        Figure(
            f"HTTP load: {label}, turn latency p50 / p99",
            p99,
            "ms",
            "",
            None,
            shown=f"{p50:.0f} / {p99:.0f} ms",
            details=details,
        ),
        Figure(
            f"HTTP load: {label}, server CPU per turn",
            details["server_cpu_ms_per_turn"],
            "ms",
            "",
            None,
            shown=f"{details['server_cpu_ms_per_turn']:.1f} ms ({cpu / wall:.0%} of a core)",
            details=details,
        ),
        Figure(
            f"HTTP load: {label}, server RSS growth",
            rss_end - rss_start,
            "MiB",
            "",
            None,
            shown=f"{rss_end - rss_start:+.1f} MiB ({rss_start:.0f} → {rss_end:.0f})",
            details=details,
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    from bench.run import table

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a few clients for a few seconds (smoke run)")
    p.add_argument("--clients", type=int, help="concurrent clients (default 50; 8 with --quick)")
    p.add_argument("--seconds", type=float, help="how long they send (default 60; 3 with --quick)")
    args = p.parse_args(argv)
    sizes = Sizes.make(args.quick)
    if args.clients:
        sizes.load_clients = args.clients
    if args.seconds:
        sizes.load_seconds = args.seconds
    figures = asyncio.run(run(sizes))
    print(table(figures))
    return 0 if all(f.ok is not False for f in figures) else 1


if __name__ == "__main__":
    raise SystemExit(main())
