"""How long the evaluation takes on a million impressions (model scoring excluded).

Random requests of 20-50 candidates over a few modules, four tasks with a
funnel, and ``--models`` scorers that return precomputed scores (so only the
metrics are timed: NDCG at every cutoff for every target, the paired bootstrap,
the sign-flip test, AUC, calibration, the blessing and the HTML report)::

    python -m benchmarks.bench_evaluation                      # 1M impressions, 5 models, 1000 resamples
    python -m benchmarks.bench_evaluation --impressions 200000 --bootstrap-samples 200
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from collections.abc import Mapping

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np

from components.evaluation.blessing import decide
from components.evaluation.evaluate import EvaluationConfig, EvaluationResult, evaluate_split
from components.evaluation.report import render_html
from ranker_core.schema import DEFAULT_TASKS, MODULE, REQUEST_ID, FeatureSpec, label_key
from ranker_core.targets import targets


@dataclasses.dataclass
class FixedScorer:
    """Scores computed before the clock starts."""

    name: str
    scores: dict[str, np.ndarray]
    outputs_probabilities: bool = True

    def __call__(self, columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.scores


def make_impressions(impressions: int, modules: int, seed: int) -> tuple[FeatureSpec, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(20, 51, impressions // 20)
    sizes = sizes[np.cumsum(sizes) <= impressions]
    rows = int(sizes.sum())
    request = np.repeat(np.arange(len(sizes)), sizes)
    module_names = np.array([f"module_{i}" for i in range(modules)], dtype=object)
    columns = {
        REQUEST_ID: request.astype(str).astype(object),
        MODULE: module_names[request % modules],
    }
    relevance = rng.normal(size=rows)
    passed = np.ones(rows, dtype=bool)
    for depth, task in enumerate(DEFAULT_TASKS):
        passed &= rng.random(rows) < 1 / (1 + np.exp(-(relevance - 1.5 - 0.5 * depth)))
        columns[label_key(task.name)] = passed.astype(np.int64)
    columns["relevance"] = relevance
    spec = FeatureSpec(tasks=list(DEFAULT_TASKS), features=[], modules=list(module_names))
    return spec, columns


def make_scorers(spec: FeatureSpec, columns: Mapping[str, np.ndarray], models: int, seed: int) -> list[FixedScorer]:
    """Models of decreasing quality: relevance plus more and more noise; the second is the baseline."""
    rng = np.random.default_rng(seed + 1)
    names = ["candidate", "gbdt_per_module", "gbdt_global", "random", *(f"model_{i}" for i in range(models))]
    scorers = []
    for index, name in enumerate(names[:models]):
        signal = columns["relevance"] + (0.5 + 0.5 * index) * rng.normal(size=len(columns["relevance"]))
        probabilities = rng.random(len(signal)) if name == "random" else 1 / (1 + np.exp(-signal))
        scorers.append(FixedScorer(name, {target: probabilities for target in targets(spec)}))
    return scorers


def run(args: argparse.Namespace) -> dict[str, float]:
    spec, columns = make_impressions(args.impressions, args.modules, args.seed)
    scorers = make_scorers(spec, columns, args.models, args.seed)
    config = EvaluationConfig(bootstrap_samples=args.bootstrap_samples, permutation_samples=args.bootstrap_samples)
    primary = config.primary(spec)
    started = time.perf_counter()
    test = evaluate_split(config, spec, columns, scorers, primary, "test")
    metrics_seconds = time.perf_counter() - started
    started = time.perf_counter()
    blessing = decide(config, primary, test, "candidate", "gbdt_per_module", None)
    result = EvaluationResult(
        config, "candidate", "gbdt_per_module", [s.name for s in scorers], test, None, blessing, None, [], []
    )
    html = render_html(result)
    report_seconds = time.perf_counter() - started
    return {
        "impressions": test.impressions,
        "requests": test.requests,
        "models": len(scorers),
        "ndcg_rows": len(test.ndcg),
        "metrics_s": metrics_seconds,
        "report_s": report_seconds,
        "total_s": metrics_seconds + report_seconds,
        "report_kib": len(html) / 1024,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--impressions", type=int, default=1_000_000, help="impressions (default: 1000000)")
    parser.add_argument("--models", type=int, default=5, help="models evaluated (default: 5)")
    parser.add_argument("--modules", type=int, default=5, help="modules (default: 5)")
    parser.add_argument("--bootstrap-samples", type=int, default=1000, help="bootstrap/permutation draws (1000)")
    parser.add_argument("--seed", type=int, default=0)
    results = run(parser.parse_args(argv))
    width = max(len(key) for key in results)
    print(f"{'measure'.ljust(width)} | value")
    print(f"{'-' * width}-+-------")
    for key, value in results.items():
        print(f"{key.ljust(width)} | {value:.2f}" if isinstance(value, float) else f"{key.ljust(width)} | {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
