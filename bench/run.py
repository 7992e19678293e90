"""Run the benchmarks: `python bench/run.py [--quick] [--scale F] [--backend sqlite,postgres] [--only NAME ...]`.

Prints a markdown table (figure | measured | baseline | target | pass) and writes every
number, with its details, to JSON (bench/results/latest.json by default). Each figure is
measured beside its baseline in the same run. `--quick` uses small sizes (CI smoke run:
it proves the scripts work, its numbers mean little); `--scale F` multiplies the search
corpus (0.01: 10,000 messages instead of 1,000,000). With `--backend sqlite,postgres` the
groups that touch the database (latency, sends, storage) run once per backend, each on a
scratch database, the group `replicas` runs (PostgreSQL only), and a side-by-side table follows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import backends, latency, load, quality, replicas, sends, startup, storage_bench  # noqa: E402
from bench.backends import Backend  # noqa: E402
from bench.common import RESULTS, Figure, Sizes  # noqa: E402

GROUPS: dict[str, Callable[[Sizes], Awaitable[list[Figure]]]] = {
    "startup": startup.run,
    "load": load.run,
    "quality": quality.run,
}
# Groups run once per backend.
PER_BACKEND: dict[str, Callable[[Sizes, Backend], Awaitable[list[Figure]]]] = {
    "latency": latency.run,
    "sends": sends.run,
    "storage": storage_bench.run,
}
ORDER = ["startup", "latency", "sends", "load", "storage", "quality", "replicas"]


def table(figures: list[Figure]) -> str:
    lines = ["| figure | measured | baseline | target | pass |", "|---|---|---|---|---|"]
    return "\n".join(lines + [f.row() for f in figures])


def side_by_side(figures: list[Figure], labels: list[str]) -> str:
    """One row per figure measured on several backends, one column per backend."""
    cells: dict[str, dict[str, str]] = {}
    for f in figures:
        if f.backend:
            cells.setdefault(f.name, {})[f.backend] = f.cell()
    lines = ["| figure | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    lines += [f"| {name} | " + " | ".join(row.get(b, "") for b in labels) + " |" for name, row in cells.items()]
    return "\n".join(lines)


async def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes (CI smoke run)")
    p.add_argument("--scale", type=float, default=1.0, help="multiply the search corpus size (e.g. 0.01)")
    p.add_argument("--backend", default="", help="sqlite (default), postgres, or sqlite,postgres side by side")
    p.add_argument("--only", nargs="+", choices=ORDER, metavar="NAME", help=f"groups: {', '.join(ORDER)}")
    p.add_argument("--json", type=Path, help="results file (default bench/results/latest.json)")
    args = p.parse_args(argv)
    sizes = Sizes.make(args.quick, args.scale)
    chosen = backends.parse(args.backend or "sqlite")
    compared = bool(args.backend)  # label each figure with its backend
    figures: list[Figure] = []
    timings: dict[str, float] = {}
    wanted = args.only or [g for g in ORDER if g != "replicas" or any(b.is_pg for b in chosen)]
    for name in [g for g in ORDER if g in wanted]:
        started = time.perf_counter()
        if name in PER_BACKEND:
            for backend in chosen:
                print(f"… {name} [{backend.label}]", file=sys.stderr, flush=True)
                got = await PER_BACKEND[name](sizes, backend)
                for f in got:
                    f.backend = backend.label if compared else ""
                figures += got
        elif name == "replicas":
            print("… replicas [PostgreSQL]", file=sys.stderr, flush=True)
            figures += await replicas.run(sizes)
        else:
            print(f"… {name}", file=sys.stderr, flush=True)
            figures += await GROUPS[name](sizes)
        timings[name] = round(time.perf_counter() - started, 2)
    print(table(figures))
    if len(chosen) > 1:
        print("\n" + side_by_side(figures, [b.label for b in chosen]))
    out = args.json or RESULTS / "latest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "quick": args.quick,
                "scale": args.scale,
                "backends": [b.name for b in chosen],
                "load_average": os.getloadavg(),
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": _cpus()},
                "group_seconds": timings,
                "figures": [f.as_json() for f in figures],
            },
            indent=1,
            default=str,
        )
    )
    print(f"\nresults written to {out}", file=sys.stderr)
    return 0


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 0)


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
