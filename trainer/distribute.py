"""Which ``tf.distribute`` strategy to train with, from the hardware and ``TF_CONFIG``.

strategy = choose_strategy()        # default strategy on a CPU-only machine
with strategy.scope():
    model = build_model(spec, config)

Several workers in ``TF_CONFIG`` (a Vertex AI custom job with more than one
replica: worker pool 0 is the ``chief``, pool 1 the ``worker`` tasks) get
MultiWorkerMirroredStrategy: one replica per worker (per GPU on GPU machines),
the global batch split evenly over them, gradients all-reduced every step, so
every worker holds the same weights. Each worker reads its own files of a split
when there are at least as many files as workers, else every worker reads all
of them and keeps its share of the batches (:func:`shard_policy`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping

import tensorflow as tf

logger = logging.getLogger(__name__)


def cluster_workers(environ: Mapping[str, str] | None = None) -> int:
    """How many workers (chief included) ``TF_CONFIG`` describes; 1 without it."""
    raw = (os.environ if environ is None else environ).get("TF_CONFIG")
    if not raw:
        return 1
    cluster = json.loads(raw).get("cluster", {})
    return len(cluster.get("chief", [])) + len(cluster.get("worker", []))


def choose_strategy(environ: Mapping[str, str] | None = None) -> tf.distribute.Strategy:
    """The tf.distribute strategy for this machine and cluster (see the module docstring)."""
    strategy = _strategy(os.environ if environ is None else environ)
    # The global batch is split evenly over these replicas.
    logger.info("%s with %d replicas in sync", type(strategy).__name__, strategy.num_replicas_in_sync)
    return strategy


def _strategy(environ: Mapping[str, str]) -> tf.distribute.Strategy:
    # Decided before anything initializes TensorFlow's runtime, which MultiWorkerMirroredStrategy must do itself.
    if cluster_workers(environ) > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    if len(gpus) == 1:
        return tf.distribute.OneDeviceStrategy("/gpu:0")
    return tf.distribute.get_strategy()


def shard_policy(files: int, environ: Mapping[str, str] | None = None) -> tf.data.experimental.AutoShardPolicy:
    """How workers split a dataset of ``files`` files: by file when each gets one, else by record (DATA).

    AUTO shards by file and fails outright when a split has fewer files than
    there are workers (a small eval split written as one shard).
    """
    if files < cluster_workers(environ):
        return tf.data.experimental.AutoShardPolicy.DATA
    return tf.data.experimental.AutoShardPolicy.AUTO


def is_chief(environ: Mapping[str, str]) -> bool:
    """Whether this process writes the shared outputs (no TF_CONFIG, or the chief / worker 0 without a chief)."""
    raw = environ.get("TF_CONFIG")
    if not raw:
        return True
    config = json.loads(raw)
    task = config.get("task", {})
    has_chief = bool(config.get("cluster", {}).get("chief"))
    return task.get("type") == "chief" or (not has_chief and task.get("type") == "worker" and task.get("index") == 0)
