"""How fast extraction's CSV reader turns a file into row batches, with and without quoted fields.

Writes the simulator's impressions as one CSV file (``plain``) and again with a quoted text column
on every line (``quoted``: the lines :mod:`components.data.readers` checks one by one only when a block
does not add up), then reads each with :func:`components.data.readers.read_batches` and reports the
best of ``--repeats`` reads (wall and CPU seconds, rows per second)::

    python -m benchmarks.bench_readers                          # 1M impressions
    python -m benchmarks.bench_readers --impressions 200000 --repeats 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from components.data.readers import read_batches
from components.data.simulator import SimulatorConfig, simulate
from components.data.spec import SourceSpec


def write_csv_files(impressions: int, folder: Path) -> dict[str, Path]:
    """The simulated impressions as ``plain.csv`` and ``quoted.csv`` (a quoted title with a comma on each line)."""
    simulate(SimulatorConfig(n_impressions=impressions, seed=0), str(folder / "sim"))
    frame = pd.read_parquet(folder / "sim" / "impressions")
    files = {"plain": folder / "plain.csv", "quoted": folder / "quoted.csv"}
    frame.to_csv(files["plain"], index=False)
    frame.assign(title='a "quoted", title').to_csv(files["quoted"], index=False)
    return files


def read_seconds(path: Path) -> tuple[int, float, float]:
    """Rows read, wall and CPU seconds of one read of every column."""
    columns = pd.read_csv(path, nrows=0).columns.tolist()
    started, cpu_started, rows = time.perf_counter(), time.process_time(), 0
    for batch in read_batches(str(path), SourceSpec(format="csv"), columns):
        rows += len(batch.rows) + len(batch.errors)
    return rows, time.perf_counter() - started, time.process_time() - cpu_started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--impressions", type=int, default=1_000_000, help="rows of the CSV files (default: 1000000)")
    parser.add_argument("--repeats", type=int, default=3, help="reads per file; the best is reported (default: 3)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_readers_") as folder:
        files = write_csv_files(args.impressions, Path(folder))
        print("| file | rows | MiB | wall s | CPU s | rows/s (wall) |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, path in files.items():
            rows, seconds, cpu = min((read_seconds(path) for _ in range(args.repeats)), key=lambda run: run[1])
            mib = path.stat().st_size / 2**20
            print(f"| {name} | {rows:,} | {mib:.0f} | {seconds:.2f} | {cpu:.2f} | {rows / seconds:,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
