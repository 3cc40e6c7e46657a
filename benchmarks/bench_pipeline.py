"""How long the whole DAG takes under kfp.local, step by step, cold and then fully cached.

Runs ``ranker run``'s code path (``pipelines.local_run.run_locally``) on a
simulated marketplace in a fresh work folder, twice: the first run computes
every step, the second reuses them from kfp.local's cache. Prints each step's
duration and the totals::

    python -m benchmarks.bench_pipeline                        # the `make run` default size
    python -m benchmarks.bench_pipeline --impressions 50000 --model-config '{"epochs": 2}'
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from components.registry.core import RegistryConfig
from pipelines.config import PipelineSettings
from pipelines.local_run import StepProgress, format_duration, run_locally
from pipelines.summary import format_table


def run_once(settings: PipelineSettings) -> tuple[dict[str, str], float, bool]:
    """Step -> "status duration", the total seconds and the verdict of one run."""
    progress = StepProgress(open(os.devnull, "w"))  # noqa: SIM115 (lives as long as the run)
    started = time.perf_counter()
    result = run_locally(settings, progress)
    steps = {name: f"{step.status} {format_duration(step.seconds)}" for name, step in progress.steps.items()}
    return steps, time.perf_counter() - started, result.blessed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--impressions", type=int, default=PipelineSettings().n_impressions, help="simulated rows")
    parser.add_argument("--model-config", default="{}", help="trainer config overrides (JSON)")
    parser.add_argument("--work-dir", default="", help="work folder (default: a fresh temporary one)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_pipeline_") as scratch:
        work_dir = args.work_dir or scratch
        settings = PipelineSettings(
            work_dir=work_dir,
            n_impressions=args.impressions,
            model_config=args.model_config,
            registry=RegistryConfig(work_dir=work_dir),
        )
        cold, cold_seconds, blessed = run_once(settings)
        cached, cached_seconds, _ = run_once(settings)
    rows = [["step", "cold run", "identical rerun"]]
    rows += [[name, cold[name], cached.get(name, "-")] for name in cold]
    rows.append(["total", format_duration(cold_seconds), format_duration(cached_seconds)])
    print(f"kfp.local SubprocessRunner, {args.impressions} simulated impressions, blessed: {blessed}")
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
