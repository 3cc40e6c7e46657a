"""How fast feature extraction turns simulated impressions into examples with the local Beam runner.

Simulates ``--impressions`` rows once (cached in ``--work-dir``), then runs the
whole extraction (read, parse, point-in-time history, split, statistics, write)
for each ``--modes`` of the DirectRunner and prints rows per second::

    python -m benchmarks.bench_features                              # 1M impressions, multi_processing
    python -m benchmarks.bench_features --impressions 200000 --modes in_memory multi_processing
    python -m benchmarks.bench_features --histories '{}' '{"sequences": [{"task": "click", "column": "listing_id"}]}'

Each ``--histories`` entry (JSON) updates the simulator spec's ``history`` section (``{}``: the spec as
shipped), so the cost of other history features is measured in the same run.

Memory is measured too: the peak of the proportional set size (PSS) summed over this process and every
process it started (the local runner's workers), sampled each second: what the run holds of the
machine's memory, shared pages counted once. Extraction spills the frames it shuffles to files on the
local runner, so this follows the rows per shard (``--num-shards``), not the rows.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from components.data.simulator import SimulatorConfig, simulate
from components.data.spec import spec_with_history
from components.features.options import BeamOptions
from components.features.pipeline import ExtractionConfig, extract_features


def simulated(impressions: int, work_dir: Path) -> Path:
    """The simulator's impressions folder for this size, simulated on first use."""
    folder = work_dir / f"sim-{impressions}"
    if not (folder / "impressions").is_dir():
        simulate(SimulatorConfig(n_impressions=impressions, seed=0), str(folder))
    return folder / "impressions"


def memory_mib(process: psutil.Process) -> float:
    """PSS of ``process`` and all its descendants in MiB (a process that ends meanwhile counts 0)."""
    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            total += member.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total / 2**20


@contextmanager
def peak_memory(every_seconds: float = 1.0) -> Iterator[dict[str, float]]:
    """Sample :func:`memory_mib` of this process tree while the block runs; ``{"peak_mib": ...}`` after it."""
    process, result, done = psutil.Process(), {"peak_mib": 0.0}, threading.Event()

    def sample() -> None:
        while True:
            result["peak_mib"] = max(result["peak_mib"], memory_mib(process))
            if done.wait(every_seconds):
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield result
    finally:
        done.set()
        sampler.join()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--impressions", type=int, default=1_000_000, help="rows to extract (1000000)")
    parser.add_argument("--work-dir", default="/tmp/bench_features", help="where data and examples go")
    parser.add_argument("--modes", nargs="+", default=["multi_processing"], help="DirectRunner running modes")
    parser.add_argument("--workers", type=int, default=0, help="DirectRunner workers (0: one per core)")
    parser.add_argument(
        "--num-shards", type=int, default=0, help="shuffle partitions and files per split (0: sized by the data)"
    )
    parser.add_argument("--held-out-module", default="email_digest", help="module written as `heldout`")
    parser.add_argument("--histories", nargs="+", default=["{}"], help="`history` updates to compare (JSON)")
    args = parser.parse_args(argv)

    work_dir = Path(args.work_dir)
    data = simulated(args.impressions, work_dir)
    print(f"{args.impressions:,} simulated impressions in {data}, {os.cpu_count()} cores")
    print(
        f"{'mode':<18} {'workers':>7} {'rows':>10} {'features':>8} {'seconds':>8} {'rows/s':>9} "
        f"{'peak MiB':>9}  history"
    )
    for number, history in enumerate(args.histories):
        spec = spec_with_history(json.loads(history), work_dir / f"spec-{number}.yaml")
        for mode in args.modes:
            config = ExtractionConfig(
                data_uri=str(data),
                dataset_spec=spec,
                output_dir=str(work_dir / f"examples-{mode}-{number}"),
                held_out_module=args.held_out_module,
                num_shards=args.num_shards,
                beam=BeamOptions(runner="DirectRunner", direct_num_workers=args.workers, direct_running_mode=mode),
            )
            started = time.perf_counter()
            with peak_memory() as memory:
                summary = extract_features(config)
            seconds = time.perf_counter() - started
            workers = args.workers or os.cpu_count()
            print(
                f"{mode:<18} {workers:>7} {summary.rows_written:>10,} {summary.features:>8} "
                f"{seconds:>8.1f} {summary.rows_written / seconds:>9,.0f} {memory['peak_mib']:>9,.0f}  {history}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
