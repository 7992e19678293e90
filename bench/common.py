"""Shared pieces of the benchmarks: the result record, sizes, paths and small statistics."""

from __future__ import annotations

import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
BIN = Path(sys.executable).parent
SERVER_SCRIPT = BIN / "mcp-server-conversations"

# litellm must neither fetch its cost map nor read a .env file (see the shared notes).
QUIET_ENV = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHON_DOTENV_DISABLED": "1"}
os.environ.update(QUIET_ENV)


@dataclass
class Figure:
    """One row of the results table. `ok` is None when the figure has no target (reported only)."""

    name: str
    measured: float
    unit: str
    target: str
    ok: bool | None
    baseline: float | None = None
    baseline_label: str = ""
    baseline_unit: str = ""  # when the baseline is in another unit than `measured` (default: the same)
    details: dict[str, Any] = field(default_factory=dict)
    shown: str = ""  # how to print `measured` when one number is not the whole story (p50 / p99)
    shown_baseline: str = ""
    backend: str = ""  # "SQLite" / "PostgreSQL" when the run compares backends

    @property
    def title(self) -> str:
        return f"{self.name} [{self.backend}]" if self.backend else self.name

    def row(self) -> str:
        base = self.shown_baseline
        if not base and self.baseline is not None:
            base = f"{fmt(self.baseline, self.baseline_unit or self.unit)} {self.baseline_label}".strip()
        verdict = {True: "pass", False: "**MISS**", None: "—"}[self.ok]
        return f"| {self.title} | {self.cell()} | {base} | {self.target} | {verdict} |"

    def cell(self) -> str:
        return self.shown or fmt(self.measured, self.unit)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Sizes:
    """How big each benchmark is; `--quick` shrinks everything so CI can run it in seconds."""

    quick: bool
    cold_starts: int = 5
    latency_calls: int = 1000
    search_messages: int = 1_000_000
    search_conversations: int = 1_000
    search_queries: int = 300
    fork_big: int = 10_000
    fork_small: int = 100
    fork_repeats: int = 15
    sends: int = 1_000
    send_samples: int = 200
    parallel: int = 32
    queue: int = 10
    provider_delay: float = 0.25
    load_clients: int = 50
    load_seconds: float = 60.0
    replica_rounds: int = 3

    @classmethod
    def make(cls, quick: bool, scale: float = 1.0) -> Sizes:
        """`scale` shrinks (or grows) the search corpus: small iterations of the 1M-message figures."""
        sizes = cls._make(quick)
        if scale != 1.0:
            sizes.search_messages = max(1_000, round(sizes.search_messages * scale))
            sizes.search_conversations = max(10, round(sizes.search_conversations * scale))
        return sizes

    @classmethod
    def _make(cls, quick: bool) -> Sizes:
        if not quick:
            return cls(quick=False)
        return cls(
            quick=True,
            cold_starts=1,
            latency_calls=10,
            search_messages=4_000,
            search_conversations=20,
            search_queries=30,
            fork_big=1_000,
            fork_small=100,
            fork_repeats=3,
            sends=20,
            send_samples=10,
            parallel=4,
            queue=3,
            provider_delay=0.05,
            load_clients=8,
            load_seconds=3.0,
            replica_rounds=1,
        )


def fmt(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "ms":
        return f"{value:.2f} ms" if value < 100 else f"{value:.0f} ms"
    if unit == "MiB":
        return f"{value:.1f} MiB"
    if unit == "x":
        return f"{value:.2f}×"
    if unit == "msg/s":
        return f"{value:,.0f} msg/s"
    if unit == "turns/s":
        return f"{value:,.0f} turns/s"
    if unit == "B":
        return f"{value:,.0f} B"
    if unit == "%":
        return f"{value:.1f} %"
    return f"{value:g} {unit}".strip()


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (0-100), nearest-rank on the sorted values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def median(values: list[float]) -> float:
    return statistics.median(values)


def ms(seconds: float) -> float:
    return seconds * 1000.0


def now() -> float:
    return time.perf_counter()


def rss_mib(pid: int) -> float:
    """Resident set size of a live process (Linux /proc)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a live process has used (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_idle(pid: int, timeout: float = 40.0, quiet_for: float = 2.0) -> float:
    """Wait until a process has been idle (under 5% of a core) for `quiet_for` seconds: the server
    starts importing litellm in the background half a second after start-up, and that import
    (seconds of CPU, holding the GIL) would otherwise be timed with the first requests.
    Returns the seconds waited."""
    started = time.perf_counter()
    last, quiet = cpu_seconds(pid), 0.0
    while time.perf_counter() - started < timeout and quiet < quiet_for:
        time.sleep(0.25)
        used = cpu_seconds(pid)
        quiet = quiet + 0.25 if used - last < 0.0125 else 0.0
        last = used
    return time.perf_counter() - started


def child_pid(marker: bytes) -> int:
    """The pid of this process's child whose command line contains `marker`."""
    me = str(os.getpid())
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = f.read().rsplit(")", 1)[1].split()[1]
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if ppid == me and marker in cmd:
            return int(entry)
    raise RuntimeError(f"no child process running {marker!r}")


def child_env(**extra: str) -> dict[str, str]:
    """The environment for spawned servers: ours, minus CONVERSATIONS_* leftovers, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVERSATIONS_")}
    env.update(QUIET_ENV)
    env.update(extra)
    return env
