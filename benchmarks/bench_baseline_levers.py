"""What a LightGBM lever costs and buys on the baseline's global models: same binned data, one run, one thread.

Reads the examples once, bins the global rows once (as ``train_baseline`` does) and fits the global
model of each ``--targets`` once per ``--variants`` entry (LightGBM parameters over the default
``BaselineConfig``'s), one after the other on one thread. Per fit it prints the CPU seconds, the
boosting rounds run, the trees early stopping kept, eval NDCG@10 (what early stopping and tuning
watch) and test NDCG@10 (requests with a positive, ties averaged: the evaluation's yardstick); and,
from the same fit's eval curve, what a shorter early-stopping patience would have kept and cost::

    python -m benchmarks.bench_baseline_levers      # bench_baseline's 1M examples (simulated and extracted once)
    python -m benchmarks.bench_baseline_levers --examples /tmp/bench_baseline/examples-1000000
    python -m benchmarks.bench_baseline_levers --examples <ex> --targets click \\
        --variants '{"config": {}, "63 bins": {"max_bin": 63}}'

The result also goes to ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import lightgbm as lgb
import numpy as np

from benchmarks.bench_baseline import cpu_model, default_examples, mean_ndcg
from components.baseline.encoding import FeatureEncoder
from components.baseline.gbdt import BaselineConfig, _only_sources, _read_splits, _Trainer
from ranker_core.schema import FeatureSpec
from ranker_core.targets import ENGAGEMENT
from trainer.examples import read_split

QUANTIZED = {"use_quantized_grad": True, "quant_train_renew_leaf": True}
DEFAULT_VARIANTS: dict[str, dict[str, Any]] = {
    "config": {},
    "quantized gradients": QUANTIZED,
    "goss": {"data_sample_strategy": "goss"},
    "goss, quantized": {"data_sample_strategy": "goss", **QUANTIZED},
    "binary objective": {"objective": "binary"},
    "binary, quantized": {"objective": "binary", **QUANTIZED},
    "learning rate 0.2, quantized": {"learning_rate": 0.2, **QUANTIZED},
}


class TestSet:
    """The test split encoded like the training rows, with NDCG@k of a booster's scores on it."""

    def __init__(self, examples: Path, spec: FeatureSpec, encoder: FeatureEncoder, k: int) -> None:
        self.spec, self.k = spec, k
        self.columns = read_split(examples, "test", _only_sources(spec, encoder))
        self.matrix = encoder.encode(self.columns)

    def ndcg(self, booster: lgb.Booster, target: str, trees: int) -> float:
        scores = booster.predict(self.matrix, num_iteration=trees)
        return mean_ndcg(self.columns, self.spec, target, scores, self.k)


def patience_stop(curve: Sequence[float], patience: int) -> int:
    """The trees early stopping with ``patience`` would keep on an eval curve (higher is better).

    >>> patience_stop([0.1, 0.3, 0.2, 0.25, 0.4], patience=2)
    2
    """
    best = 0
    for i, value in enumerate(curve):
        if value > curve[best]:
            best = i
        elif i - best >= patience:
            break
    return best + 1


def fit_variant(
    trainer: _Trainer, sets: tuple[lgb.Dataset, lgb.Dataset], overrides: Mapping[str, Any]
) -> tuple[lgb.Booster, float, list[float]]:
    """The booster of one variant, the CPU seconds of its fit (this thread) and its eval curve."""
    config = trainer.config
    params = {**config.lightgbm_params(True, len(trainer.spec.tasks)), **overrides}
    history: dict[str, Any] = {}
    callbacks = [lgb.early_stopping(config.early_stopping_rounds, verbose=False), lgb.record_evaluation(history)]
    started = time.thread_time()
    booster = lgb.train(params, sets[0], config.n_estimators, valid_sets=[sets[1]], callbacks=callbacks)
    return booster, time.thread_time() - started, list(history["valid_0"][config.eval_metric(True)])


def run(args: argparse.Namespace) -> dict[str, Any]:
    examples = Path(args.examples) if args.examples else default_examples()
    config = BaselineConfig.from_sources(args.config)
    spec = FeatureSpec.load(examples)
    encoder = FeatureEncoder.from_spec(spec, hashed=config.hashed, max_list_tokens=config.max_list_tokens)
    trainer = _Trainer(config, spec, encoder, *_read_splits(examples, spec, encoder, config.seed))
    everything = list(range(len(encoder.columns)))
    binned = trainer.bin(np.arange(len(trainer.train.request)), np.arange(len(trainer.eval.request)), everything)
    test = TestSet(examples, spec, encoder, config.eval_at)
    rows = []
    for target in args.targets:
        sets = trainer.datasets(binned, target)
        for name, overrides in json.loads(args.variants).items():
            if overrides.get("objective") == "binary" and target == ENGAGEMENT:
                continue  # graded labels: binary log-loss would only see "any engagement"
            booster, cpu, curve = fit_variant(trainer, sets, overrides)
            row = {"target": target, "variant": name, "cpu_s": round(cpu, 2), "rounds": len(curve)}
            for patience in sorted({config.early_stopping_rounds, *args.patience}, reverse=True):
                trees = patience_stop(curve, patience)
                row[f"patience {patience}"] = {
                    "rounds": min(trees + patience, len(curve)),
                    "trees": trees,
                    "eval": round(curve[trees - 1], 4),
                    "test": round(test.ndcg(booster, target, trees), 4),
                }
            print(json.dumps(row), flush=True)
            rows.append(row)
    return {"examples": str(examples), "cpu": cpu_model(), "load_average": os.getloadavg(), "fits": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--examples",
        help="extracted examples with train, eval and test (default: bench_baseline's 1M examples, made on first use)",
    )
    parser.add_argument("--targets", nargs="+", default=["click", "favorite", "engagement"])
    parser.add_argument("--variants", default=json.dumps(DEFAULT_VARIANTS), help="name -> LightGBM parameters (JSON)")
    parser.add_argument("--patience", type=int, nargs="*", default=[10, 5], help="shorter patiences to replay")
    parser.add_argument("--config", default='{"num_threads": 1}', help="BaselineConfig overrides (JSON)")
    parser.add_argument("--out", default="/tmp/bench_baseline_levers.json", help="where the JSON goes")
    args = parser.parse_args(argv)
    print(f"{cpu_model()}; load average {os.getloadavg()}")
    result = run(args)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
