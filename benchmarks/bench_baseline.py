"""How long the GBDT baseline (tuning included) trains next to the MMoE, on the same examples, in one run.

Simulates ``--impressions`` rows (cached in ``--work-dir``), extracts them with
``shop_page`` held out, then times ``train_baseline`` (``BaselineConfig``
defaults unless ``--config``) and the MMoE's ``ranker train`` step
(``train_and_export``, ``TrainerConfig`` defaults) one after the other in this
process, and prints both times (wall clock and the process's CPU seconds: on a
shared machine the CPU ratio is the steadier one), their ratios and how many
trees early stopping kept per model. The result also goes to ``<work-dir>/bench_baseline.json``::

    python -m benchmarks.bench_baseline                          # 1M impressions
    python -m benchmarks.bench_baseline --impressions 200000
    python -m benchmarks.bench_baseline --examples work/examples --config '{"tuning_trials": 0}' --skip-mmoe
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from benchmarks.bench_features import simulated
from benchmarks.bench_trainer import train_variant
from components.baseline.gbdt import BaselineConfig, train_baseline
from components.baseline.scoring import GbdtBaseline
from ranker_core.ranking_metrics import RequestGroups, ndcg_per_request
from ranker_core.runtime import usable_cores
from ranker_core.schema import REQUEST_ID, FeatureSpec
from ranker_core.targets import target_gains, target_labels
from trainer.config import TrainerConfig
from trainer.examples import read_split

HELD_OUT_MODULE = "shop_page"
WORK_DIR = "/tmp/bench_baseline"
IMPRESSIONS = 1_000_000


def extracted(impressions: int, work_dir: Path) -> Path:
    """Examples of ``impressions`` simulated rows with ``shop_page`` held out, extracted on first use."""
    from components.features.options import BeamOptions
    from components.features.pipeline import ExtractionConfig, extract_features

    examples = work_dir / f"examples-{impressions}"
    if not (examples / "feature_spec.json").exists():
        data = simulated(impressions, work_dir)
        extract_features(
            ExtractionConfig(
                str(data), "simulator", str(examples), held_out_module=HELD_OUT_MODULE, beam=BeamOptions.load()
            )
        )
    return examples


def default_examples() -> Path:
    """The examples this benchmark uses by default (1M impressions in ``WORK_DIR``), extracted on first use:
    the default input of the benchmarks that read examples."""
    return extracted(IMPRESSIONS, Path(WORK_DIR))


def cpu_model() -> str:
    """The CPU model name and the cores this process may use."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    names = [line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")]
    return f"{names[0] if names else platform.processor() or 'unknown CPU'}, {usable_cores()} cores"


def best_iterations(manifest: dict[str, Any]) -> dict[str, list[int]]:
    """Trees kept by early stopping, per model family (fallbacks have no model)."""
    per_module = [entry for models in manifest["per_module"].values() for entry in models.values()]
    return {
        "global": [entry["best_iteration"] for entry in manifest["global"].values()],
        "per_module": [entry["best_iteration"] for entry in per_module if "path" in entry],
    }


def distribution(values: list[int]) -> dict[str, float]:
    """Count, min, median, max and how many kept a single tree."""
    if not values:
        return {"models": 0}
    low, median, high = (float(value) for value in np.percentile(values, [0, 50, 100]))
    return {"models": len(values), "min": low, "median": median, "max": high, "one_tree": values.count(1)}


def mean_ndcg(columns: dict[str, np.ndarray], spec: FeatureSpec, target: str, scores: np.ndarray, k: int) -> float:
    """NDCG@k of ``scores`` for ``target`` over the requests with a positive, ties averaged (the evaluation's)."""
    labels = target_labels(columns, target, spec.task_names)
    gains = target_gains(labels, target, spec.task_names)
    groups = RequestGroups.from_ids(columns[REQUEST_ID])
    return float(np.nanmean(ndcg_per_request(groups, gains, scores, [k])[k]))


def ndcg_on_test(examples: Path, baseline_dir: Path, k: int = 10) -> dict[str, dict[str, float]]:
    """Test-split NDCG@k of every target, for the per-module and the global GBDT (all modules together)."""
    baseline = GbdtBaseline.load(baseline_dir)
    columns = read_split(examples, "test", baseline.spec)
    result = {}
    for scorer in (baseline.per_module_scorer(), baseline.global_scorer()):
        scores = scorer(columns)
        result[scorer.name] = {
            target: round(mean_ndcg(columns, baseline.spec, target, scores[target], k), 4) for target in scores
        }
    return result


def timed(work: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall-clock seconds, CPU seconds of this process (every thread) and the result of ``work()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def run(args: argparse.Namespace) -> dict[str, Any]:
    work_dir = Path(args.work_dir)
    examples = Path(args.examples) if args.examples else extracted(args.impressions, work_dir)
    config = BaselineConfig.from_sources(args.config)
    load_before = os.getloadavg()
    baseline_seconds, baseline_cpu, manifest = timed(lambda: train_baseline(config, examples, work_dir / "baseline"))
    mmoe_seconds = mmoe_cpu = None
    if not args.skip_mmoe:
        mmoe_config = TrainerConfig.from_sources(None)
        mmoe_seconds, mmoe_cpu, _ = timed(lambda: train_variant(examples, mmoe_config, work_dir / "mmoe", reuse=False))
    iterations = best_iterations(manifest)
    tuning = manifest["tuning"]
    return {
        "examples": str(examples),
        "train_rows": manifest["global"][manifest["targets"][0]]["train_rows"],
        "cpu": cpu_model(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_average_before": [round(value, 2) for value in load_before],
        "load_average_after": [round(value, 2) for value in os.getloadavg()],
        "baseline_seconds": round(baseline_seconds, 1),
        "baseline_phases": manifest["seconds"],
        "tuning_trials_run": {target: search["trials_run"] for target, search in tuning["targets"].items()},
        "mmoe_seconds": None if mmoe_seconds is None else round(mmoe_seconds, 1),
        "ratio": None if mmoe_seconds is None else round(baseline_seconds / mmoe_seconds, 3),
        "baseline_cpu_seconds": round(baseline_cpu, 1),
        "mmoe_cpu_seconds": None if mmoe_cpu is None else round(mmoe_cpu, 1),
        "cpu_ratio": None if mmoe_cpu is None else round(baseline_cpu / mmoe_cpu, 3),
        "best_iteration": {family: distribution(values) for family, values in iterations.items()},
        "best_iterations": iterations,
        "global_eval_scores": {target: entry["eval_scores"] for target, entry in manifest["global"].items()},
        "test_ndcg@10": ndcg_on_test(examples, work_dir / "baseline"),
        "config": manifest["config"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--impressions", type=int, default=IMPRESSIONS, help=f"simulated impressions ({IMPRESSIONS})")
    parser.add_argument("--work-dir", default=WORK_DIR, help="where data, models and the JSON go")
    parser.add_argument("--examples", help="extracted examples to use instead of simulating")
    parser.add_argument("--config", default="{}", help="BaselineConfig overrides (JSON) (default: {})")
    parser.add_argument("--skip-mmoe", action="store_true", help="time the baseline only")
    args = parser.parse_args(argv)
    result = run(args)
    out = Path(args.work_dir) / "bench_baseline.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{result['examples']}: {result['train_rows']:,} train rows of the first target; {result['cpu']}")
    print(f"load average before {result['load_average_before']}, after {result['load_average_after']}")
    print(f"baseline {result['baseline_seconds']} s: {result['baseline_phases']}")
    if result["mmoe_seconds"] is not None:
        print(f"MMoE {result['mmoe_seconds']} s; baseline / MMoE = {result['ratio']:.0%}")
        print(
            f"CPU seconds: baseline {result['baseline_cpu_seconds']}, MMoE {result['mmoe_cpu_seconds']}; "
            f"baseline / MMoE = {result['cpu_ratio']:.0%}"
        )
    print(f"tuning trials run per target: {result['tuning_trials_run']}")
    print(f"global eval scores: {result['global_eval_scores']}")
    for model, scores in result["test_ndcg@10"].items():
        print(f"test NDCG@10, {model}: {scores}")
    for family, stats in result["best_iteration"].items():
        print(f"best iteration, {family}: {stats}")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
