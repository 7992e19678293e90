"""Run the benchmarks: `python bench/run.py [--quick] [--only NAME ...] [--json PATH]`.

Prints a markdown table (figure | measured | baseline | target | pass) and writes every
number, with its details, to JSON (bench/results/latest.json by default). Each figure is
measured beside its baseline in the same run. `--quick` uses small sizes (CI smoke run:
it proves the scripts work, its numbers mean little).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import latency, load, quality, sends, startup, storage_bench  # noqa: E402
from bench.common import RESULTS, Figure, Sizes  # noqa: E402

GROUPS: dict[str, Callable[[Sizes], Awaitable[list[Figure]]]] = {
    "startup": startup.run,
    "latency": latency.run,
    "sends": sends.run,
    "load": load.run,
    "storage": storage_bench.run,
    "quality": quality.run,
}


def table(figures: list[Figure]) -> str:
    lines = ["| figure | measured | baseline | target | pass |", "|---|---|---|---|---|"]
    return "\n".join(lines + [f.row() for f in figures])


async def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes (CI smoke run)")
    p.add_argument("--only", nargs="+", choices=sorted(GROUPS), metavar="NAME", help=f"groups: {', '.join(GROUPS)}")
    p.add_argument("--json", type=Path, help="results file (default bench/results/latest.json)")
    args = p.parse_args(argv)
    sizes = Sizes.make(args.quick)
    figures: list[Figure] = []
    timings: dict[str, float] = {}
    for name in args.only or list(GROUPS):
        print(f"… {name}", file=sys.stderr, flush=True)
        started = time.perf_counter()
        figures += await GROUPS[name](sizes)
        timings[name] = round(time.perf_counter() - started, 2)
    print(table(figures))
    out = args.json or RESULTS / "latest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "quick": args.quick,
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
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 0)


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
