"""Train the per-module and global LightGBM rankers the MMoE must beat.

Example::

    ranker train-baseline --examples work/examples --out work/baseline
    ranker train-baseline --examples work/examples --out work/baseline \\
        --config '{"num_leaves": 63, "n_estimators": 1000, "hashed": "hash"}'
    ranker train-baseline --examples work/examples --out work/baseline \\
        --config '{"tuning_trials": 16, "tuning_budget_seconds": 600}'   # a longer search; 0 trials: none

Every field of ``components.baseline.gbdt.BaselineConfig`` can be set in
``--config``; the flags below override it.
"""

from __future__ import annotations

import argparse
import json

from ranker_core.cli_support import require_path

HELP = "train the per-module and global LightGBM rankers"
RENAMED_FLAGS = {"--config-json": "--config"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--examples", required=True, help="extracted examples folder (with feature_spec.json)")
    parser.add_argument("--out", required=True, help="folder for the models and manifest.json")
    parser.add_argument(
        "--config", default="{}", help="BaselineConfig overrides: a JSON object or @file.json (default: {})"
    )
    parser.add_argument("--n-estimators", type=int, help="boosting rounds before early stopping (default: 500)")
    parser.add_argument("--num-leaves", type=int, help="leaves per tree (default: 31)")
    parser.add_argument("--learning-rate", type=float, help="shrinkage (default: 0.1)")
    parser.add_argument("--seed", type=int, help="LightGBM seed (default: 0)")


def main(args: argparse.Namespace) -> int:
    from components.baseline.gbdt import BaselineConfig, train_baseline

    flags = {"n_estimators": args.n_estimators, "num_leaves": args.num_leaves, "learning_rate": args.learning_rate}
    config = BaselineConfig.from_sources(args.config, {**flags, "seed": args.seed})
    manifest = train_baseline(config, require_path(args.examples, "--examples"), args.out)
    print(json.dumps({"global": manifest["global"], "fallbacks": manifest["fallbacks"]}, indent=2))
    print(f"baseline written to {args.out}")
    return 0
