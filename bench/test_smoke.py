"""The benchmarks stay runnable: `bench/run.py --quick` exits 0, prints the table and writes JSON.

No timing is asserted here (numbers from a shared CI box mean little); bench/ measures speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(240)
def test_quick_bench_run_prints_the_table_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVERSATIONS_")}
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--quick", "--json", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=230,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == "| figure | measured | baseline | target | pass |"
    results = json.loads(out.read_text())
    names = [f["name"] for f in results["figures"]]
    for expected in (
        "cold start",
        "tool latency list_messages",
        "send overhead",
        "streaming overhead",
        "database trips",
        "parallel sends",
        "same-conversation queue",
        "server RSS",
        "ingest",
        "database size",
        "search",
        "fork cost",
        "search recall lexical: all",
        "HTTP load",
    ):
        assert any(n.startswith(expected) for n in names), f"{expected!r} missing from {names}"
    assert len(lines) == 2 + len(names)  # header, rule, one row per figure
    for f in results["figures"]:
        assert f["measured"] == f["measured"], f"{f['name']} measured NaN"  # a number, whatever its value
    for f in results["figures"]:  # each latency figure beside the same reply from the prebuilt stand-in
        if f["name"].startswith("tool latency"):
            assert f["details"]["prebuilt_reply_p50_ms"] > 0, f["name"]
    load = next(f for f in results["figures"] if f["name"].startswith("HTTP load"))
    assert load["details"]["errors"] == 0 and load["details"]["turns"] > 0, load["details"]  # correctness only
    queue = next(f for f in results["figures"] if f["name"].startswith("same-conversation queue"))
    assert queue["details"]["in_order"] is True  # correctness, not speed: the queued turns kept their order


def _postgres() -> str | None:
    """Why PostgreSQL cannot be used here, or None when it answers."""
    import socket

    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
    except OSError as e:
        return f"no PostgreSQL at 127.0.0.1:5432 ({e})"
    return None


@pytest.mark.timeout(900)
def test_side_by_side_run_measures_each_backend_and_the_replicas(tmp_path: Path) -> None:
    """`--backend sqlite,postgres` at a tiny scale: every database figure once per backend (each on a
    scratch database, dropped after), the side-by-side table, and 1 vs 3 replicas on PostgreSQL."""
    missing = _postgres()
    if missing:
        if os.environ.get("CONVERSATIONS_TEST_PG_REQUIRED") == "1":
            pytest.fail(missing)
        pytest.skip(missing)
    out = tmp_path / "bench.json"
    before = _databases()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVERSATIONS_")}
    argv = ["--quick", "--scale", "0.25", "--backend", "sqlite,postgres", "--only", "latency", "sends", "storage"]
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), *argv, "replicas", "--json", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=880,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads(out.read_text())
    assert results["backends"] == ["sqlite", "postgres"] and results["scale"] == 0.25
    figures = results["figures"]
    by_backend: dict[str, set[str]] = {}
    for f in figures:
        by_backend.setdefault(f["backend"], set()).add(f["name"])
        assert f["measured"] == f["measured"], f"{f['name']} measured NaN"
    shared = by_backend["SQLite"] & by_backend["PostgreSQL"]
    for expected in ("tool latency get_conversation", "send overhead", "ingest", "database size at 1,", "search 1,"):
        assert any(n.startswith(expected) for n in shared), f"{expected!r} not measured on both: {by_backend}"
    size = {f["backend"]: f for f in figures if f["name"].startswith("database size")}
    assert size["PostgreSQL"]["details"]["measured"].startswith("pg_total_relation_size")
    assert size["PostgreSQL"]["details"]["bytes"] > 0
    replicas = [f for f in figures if f["name"].startswith("parallel sends through")]
    assert [f["details"]["replicas"] for f in replicas] == [1, 3]
    assert all(f["details"]["wall_ms"] > 0 and f["backend"] == "PostgreSQL" for f in replicas)
    assert "| figure | SQLite | PostgreSQL |" in proc.stdout  # the side-by-side table
    assert _databases() <= before  # every scratch database was dropped


def _databases() -> set[str]:
    import asyncio

    import asyncpg

    async def names() -> set[str]:
        conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres", timeout=5)
        try:
            rows = await conn.fetch("SELECT datname FROM pg_database WHERE datname LIKE 'bench\\_%'")
            return {r[0] for r in rows}
        finally:
            await conn.close()

    return asyncio.run(names())
