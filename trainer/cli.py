"""``ranker train``: train the ranker on extracted examples and export it.

Settings come from TrainerConfig defaults, ``RANKER_TRAIN_<FIELD>`` environment
variables, ``--config`` (a JSON object or file) and the flags below, each
overriding the one before. Examples::

    ranker train --examples work/examples --model-dir work/model
    ranker train --examples work/examples --model-dir work/ple --architecture ple --epochs 5
    ranker train --examples work/examples --model-dir work/m --config '{"expert_types": ["mlp", "cross"]}'
    ranker train --examples work/examples --model-dir work/m --position-bias --embedding-l2 3
"""

from __future__ import annotations

import argparse
import json
import logging

from ranker_core.cli_support import require_path
from trainer.config import ARCHITECTURES, EXPERT_TYPES, NUMERIC_ENCODINGS, TrainerConfig

HELP = "train and export the MMoE ranker (or another architecture)"
logger = logging.getLogger(__name__)

# flag -> TrainerConfig field, for the settings most often changed by hand
_FLAG_FIELDS = (
    "architecture",
    "epochs",
    "batch_size",
    "learning_rate",
    "expert_types",
    "numeric_encoding",
    "gate_temperature",
    "embedding_l2",
    "position_bias",
    "seed",
    "ensemble_size",
)


def add_arguments(parser: argparse.ArgumentParser, require_paths: bool = True) -> None:
    parser.add_argument("--examples", required=require_paths, help="extracted-examples folder (local or gs://)")
    parser.add_argument("--model-dir", required=require_paths, help="where the SavedModel is exported")
    parser.add_argument("--config", help="TrainerConfig overrides: a JSON object or @file.json")
    parser.add_argument("--checkpoint-dir", help="write per-epoch weight checkpoints here")
    parser.add_argument("--tensorboard-dir", help="write TensorBoard logs here")
    parser.add_argument("--architecture", choices=ARCHITECTURES, help="model architecture (default mmoe)")
    parser.add_argument("--epochs", type=int, help="maximum epochs (early stopping may end sooner)")
    parser.add_argument("--batch-size", type=int, help="global batch size")
    parser.add_argument("--learning-rate", type=float, help="Adam learning rate")
    parser.add_argument("--expert-types", nargs="+", choices=EXPERT_TYPES, help="one type per shared expert")
    parser.add_argument("--numeric-encoding", choices=NUMERIC_ENCODINGS, help="force one encoding for all numerics")
    parser.add_argument("--gate-temperature", type=float, help="softmax temperature of every gate")
    parser.add_argument("--embedding-l2", type=float, help="L2 on looked-up embedding rows (default 10; 0 disables)")
    parser.add_argument(
        "--position-bias",
        action=argparse.BooleanOptionalAction,
        help="training-only position tower added to every task's logit (default off)",
    )
    parser.add_argument("--seed", type=int, help="random seed")
    parser.add_argument(
        "--ensemble-size", type=int, help="models trained at seeds seed, seed+1, ... served as their mean (default 1)"
    )


def config_from_args(args: argparse.Namespace) -> TrainerConfig:
    """Flags > environment > ``--config`` (a file, or an inline object: flags) > defaults."""
    return TrainerConfig.from_sources(args.config, {field: getattr(args, field) for field in _FLAG_FIELDS})


def main(args: argparse.Namespace) -> int:
    examples = require_path(args.examples, "--examples")  # before TensorFlow takes seconds to import
    from trainer.distribute import choose_strategy
    from trainer.train import train_and_export

    config = config_from_args(args)
    result = train_and_export(
        examples,
        args.model_dir,
        config,
        checkpoint_dir=args.checkpoint_dir,
        tensorboard_dir=args.tensorboard_dir,
        strategy=choose_strategy(),
    )
    print(json.dumps({"model_dir": result.model_dir, "best_epoch": result.best_epoch, **result.eval_metrics}, indent=2))
    return 0
