"""Which ``tf.distribute`` strategy to train with, from the hardware and ``TF_CONFIG``.

strategy = choose_strategy()        # default strategy on a CPU-only machine
with strategy.scope():
    model = build_model(spec, config)
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

import tensorflow as tf


def cluster_workers(environ: Mapping[str, str]) -> int:
    """How many workers (chief included) ``TF_CONFIG`` describes; 1 without it."""
    raw = environ.get("TF_CONFIG")
    if not raw:
        return 1
    cluster = json.loads(raw).get("cluster", {})
    return len(cluster.get("chief", [])) + len(cluster.get("worker", []))


def choose_strategy(environ: Mapping[str, str] | None = None):
    """The tf.distribute strategy for this machine and cluster (see the module docstring)."""
    environ = os.environ if environ is None else environ
    if cluster_workers(environ) > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    if len(gpus) == 1:
        return tf.distribute.OneDeviceStrategy("/gpu:0")
    return tf.distribute.get_strategy()


def is_chief(environ: Mapping[str, str]) -> bool:
    """Whether this process writes the shared outputs (no TF_CONFIG, or the chief / worker 0 without a chief)."""
    raw = environ.get("TF_CONFIG")
    if not raw:
        return True
    config = json.loads(raw)
    task = config.get("task", {})
    has_chief = bool(config.get("cluster", {}).get("chief"))
    return task.get("type") == "chief" or (not has_chief and task.get("type") == "worker" and task.get("index") == 0)
