"""Position bias: a shallow tower whose logit is added to every task's logit during training only.

Logged engagement mixes relevance with exposure: a candidate in the top slot is
examined, and so clicked, more often than the same candidate further down. A
model trained on such logs learns "looks like what used to be shown on top".
The standard remedy (Zhao et al., "Recommending What Video to Watch Next: A
Multitask Ranking System", RecSys 2019) explains the position effect with a
separate shallow tower whose output is added to the main model's logits::

    logit_task = main_model(features)[task] + position_tower(position, module)[task]

so the main model is left to learn relevance. Dropout on the tower (a share of
training examples get no position term at all) keeps the main model from
leaning on it. At serving there is no logged position: the tower is evaluated
at a fixed reference position (``position_reference``, default 0: calibrated
probabilities "as if shown in the top slot") or dropped (``None``). Either way
the term is the same for every candidate of a request (one module per
request), so it does not change the ranking within a request.

Example::

    bias = PositionBias(["click", "purchase"], PositionBiasSettings(buckets=16), with_module=True)
    bias(tf.constant([0, 3, 250]), module_embedding, training=True).shape   # (3, 2): one offset per task
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import tensorflow as tf

from ranker_core.schema import POSITION, FeatureSpec

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class PositionBiasSettings:
    """The position tower's knobs (``TrainerConfig.position_*``, documented there)."""

    buckets: int = 16
    embedding_dim: int = 4
    dropout: float = 0.1
    reference: int | None = 0


def position_buckets(positions: tf.Tensor, buckets: int) -> tf.Tensor:
    """Bucket ids of 0-based positions: exact below ``buckets // 2``, log2-wide beyond, the last one open.

    With 16 buckets: positions 0..7 get buckets 0..7, 8..15 bucket 8, 16..31
    bucket 9, ..., and everything from 8 * 2**7 on shares bucket 15. Negative
    positions count as 0.

    Example::

        position_buckets(tf.constant([0, 7, 8, 20, 10_000]), 16)   # [0, 7, 8, 9, 15]
    """
    exact = max(buckets // 2, 1)
    positions = tf.maximum(tf.cast(positions, tf.float32), 0.0)
    log_bucket = exact + tf.floor(tf.math.log(tf.maximum(positions, float(exact)) / exact) / tf.math.log(2.0))
    ids = tf.where(positions < exact, positions, log_bucket)
    return tf.cast(tf.minimum(ids, buckets - 1), tf.int64)


class PositionBias(tf.keras.layers.Layer):
    """Per-task logit offsets from the bucketed position, crossed with the module embedding when given.

    ``call(positions, module, training)`` returns ``(batch, tasks)``. In
    training, a ``dropout`` share of the rows get no offset. The model passes
    the logged positions when computing the loss and the reference position
    when serving (``settings.reference``; ``None`` skips the tower).
    """

    def __init__(self, tasks: Sequence[str], settings: PositionBiasSettings, with_module: bool, **kwargs) -> None:
        super().__init__(name=kwargs.pop("name", "position_bias"), **kwargs)
        self.tasks, self.settings = list(tasks), settings
        self.embedding = tf.keras.layers.Embedding(settings.buckets, settings.embedding_dim)
        # Crossed with the module, the tower needs a hidden layer; alone, position -> offset is a lookup.
        self.hidden = tf.keras.layers.Dense(settings.embedding_dim, activation="relu") if with_module else None
        self.offsets = tf.keras.layers.Dense(len(self.tasks), name="offsets")

    def call(self, positions: tf.Tensor, module: tf.Tensor | None, training: bool | None = None) -> tf.Tensor:
        x = self.embedding(position_buckets(positions, self.settings.buckets))
        if self.hidden is not None:
            x = self.hidden(tf.concat([x, module], axis=1))
        offsets = self.offsets(x)
        if training and self.settings.dropout > 0:
            kept = tf.random.uniform([tf.shape(offsets)[0], 1]) >= self.settings.dropout
            offsets = offsets * tf.cast(kept, offsets.dtype)
        return offsets


def has_positions(spec: FeatureSpec) -> bool:
    """Whether the data declares a position column (the spec's roles name one); logs when not."""
    if POSITION in spec.roles:
        return True
    logger.info("position_bias is on but the feature spec has no position role: training without the position tower")
    return False


def positions_all_zero(batches: tf.data.Dataset) -> bool:
    """Whether every row of a batched split has position 0 (stops at the first batch that has another)."""
    nonzero = batches.map(lambda batch: tf.reduce_any(batch[POSITION] != 0)).filter(lambda found: found)
    return not any(True for _ in nonzero.take(1))
