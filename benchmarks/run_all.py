"""Run every benchmark in this folder, one process each, and print their tables.

``make benchmark`` calls this. Each ``benchmarks/bench_<area>.py`` is a module
with its own ``--help``; run one alone with ``python -m benchmarks.bench_<area>``.
The numbers are copied into ``docs/benchmarks.md`` by hand, with the machine.

    python -m benchmarks.run_all                 # all of them
    python -m benchmarks.run_all serving trainer # only these areas
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCHMARKS_DIR = Path(__file__).resolve().parent


def available() -> list[str]:
    """The areas that have a benchmark module, sorted."""
    return sorted(path.stem.removeprefix("bench_") for path in BENCHMARKS_DIR.glob("bench_*.py"))


def run(area: str) -> int:
    """Run one benchmark module in its own process; its exit status."""
    print(f"\n=== benchmarks.bench_{area} ===", flush=True)
    started = time.perf_counter()
    status = subprocess.call([sys.executable, "-m", f"benchmarks.bench_{area}"], cwd=BENCHMARKS_DIR.parent)
    print(f"=== bench_{area}: exit {status} after {time.perf_counter() - started:.0f} s ===", flush=True)
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("areas", nargs="*", help=f"areas to run (default: all of {', '.join(available())})")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.areas) - set(available()))
    if unknown:
        parser.error(f"no benchmark for {', '.join(unknown)}; available: {', '.join(available())}")
    failed = [area for area in args.areas or available() if run(area) != 0]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
