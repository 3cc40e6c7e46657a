"""``python -m trainer.task``: the entry point of a Vertex AI custom training job.

Follows Vertex AI's conventions: the export goes to ``AIP_MODEL_DIR``, weight
checkpoints to ``AIP_CHECKPOINT_DIR`` and TensorBoard logs to
``AIP_TENSORBOARD_LOG_DIR`` when those are set (``gs://`` paths work through
``tf.io.gfile``); flags override them. The ``tf.distribute`` strategy follows
the hardware: MultiWorkerMirroredStrategy when ``TF_CONFIG`` names several
workers, MirroredStrategy on a machine with several GPUs, OneDeviceStrategy on
one GPU, the default strategy on CPU. In a multi-replica job every replica runs
this same command with the same ``AIP_*`` paths; the chief exports to
``AIP_MODEL_DIR`` and the other workers beside it (:func:`worker_model_dir`)::

    python -m trainer.task --examples gs://bucket/examples --config '{"epochs": 20}'
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Mapping

from trainer import cli
from trainer.distribute import is_chief
from trainer.train import tensorboard_installed

logger = logging.getLogger(__name__)


def resolve_paths(args: argparse.Namespace, environ: Mapping[str, str]) -> argparse.Namespace:
    """Fill --model-dir, --checkpoint-dir and --tensorboard-dir from Vertex AI's AIP_* variables."""
    args.model_dir = args.model_dir or environ.get("AIP_MODEL_DIR")
    args.checkpoint_dir = args.checkpoint_dir or environ.get("AIP_CHECKPOINT_DIR")
    if not args.tensorboard_dir and environ.get("AIP_TENSORBOARD_LOG_DIR"):
        if tensorboard_installed():
            args.tensorboard_dir = environ["AIP_TENSORBOARD_LOG_DIR"]
        else:
            logger.warning("AIP_TENSORBOARD_LOG_DIR is set but tensorboard is not installed: no TensorBoard logs")
    args.examples = args.examples or environ.get("RANKER_EXAMPLES")
    missing = [name for name in ("examples", "model_dir") if not getattr(args, name)]
    if missing:
        raise SystemExit(f"missing {', '.join(missing)}: pass the flag or set AIP_MODEL_DIR / RANKER_EXAMPLES")
    if not is_chief(environ):
        args.model_dir = worker_model_dir(args.model_dir, environ)
    return args


def worker_model_dir(model_dir: str, environ: Mapping[str, str]) -> str:
    """Where a non-chief worker exports: beside the chief's model dir, never inside it.

    Every worker must export (saving may read variables through collective ops
    that need all of them), but only the chief's copy, in ``model_dir``, is the
    model; a copy inside it would be uploaded and digested with it. The copy
    holds the same weights and can be deleted. Checkpoints and TensorBoard logs
    keep their folders on every worker: Keras writes a non-chief's share to a
    ``workertemp_<task index>`` folder and deletes it (a chief checkpointing
    alone runs collectives the others do not, and the job fails).
    """
    task = json.loads(environ["TF_CONFIG"])["task"]
    return f"{model_dir.rstrip('/')}.worker-{task.get('type')}-{task.get('index')}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.task", description=__doc__)
    cli.add_arguments(parser, require_paths=False)
    args = resolve_paths(parser.parse_args(argv), os.environ)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return cli.main(args)


if __name__ == "__main__":
    sys.exit(main())
