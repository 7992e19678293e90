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
