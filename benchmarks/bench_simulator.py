"""How fast the marketplace simulator writes impressions, and how much memory it holds.

Runs :func:`components.data.simulator.simulate` with the default config at
each size (users, listings and shops scale with the size) into a temporary
folder and reports wall time, rows per second, parquet bytes written and the
process's peak resident memory (CPU seconds too: the wall time depends on what
else the machine runs)::

    python -m benchmarks.bench_simulator                          # 1M impressions, 2 repeats
    python -m benchmarks.bench_simulator --impressions 1000000 10000000 --repeats 1
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from components.data.simulator import SimulatorConfig, simulate


def measure(impressions: int, seed: int) -> dict[str, float]:
    """Simulate once into a temporary folder: rows, requests, wall and CPU seconds, bytes written."""
    with tempfile.TemporaryDirectory(prefix="bench_simulator_") as folder:
        started, cpu_started = time.perf_counter(), time.process_time()
        summary = simulate(SimulatorConfig(n_impressions=impressions, seed=seed), folder)
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
        written = sum(path.stat().st_size for path in Path(folder).rglob("*.parquet"))
    return {
        "rows": summary.rows,
        "requests": summary.requests,
        "seconds": seconds,
        "cpu": cpu_seconds,
        "bytes": written,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--impressions", type=int, nargs="+", default=[1_000_000], help="sizes (default: 1000000)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per size; the best is reported (default: 2)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    print("| impressions | requests | wall s | CPU s | rows/s (wall) | parquet MiB | peak RSS MiB |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for impressions in args.impressions:
        runs = [measure(impressions, args.seed) for _ in range(args.repeats)]
        best = min(runs, key=lambda run: run["seconds"])
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"| {best['rows']:,} | {best['requests']:,} | {best['seconds']:.1f} | {best['cpu']:.1f}"
            f" | {best['rows'] / best['seconds']:,.0f}"
            f" | {best['bytes'] / 2**20:.0f} | {peak_mib:.0f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
