"""A listwise loss per request beside the pointwise heads: softmax cross-entropy within each request.

The pointwise heads (``tfrs.tasks.Ranking``, binary cross-entropy) learn each
candidate's probability on its own; the evaluation judges the order of a
request's candidates. :class:`ListwiseSoftmaxLoss` scores that order directly
(the softmax loss of Cao et al., ICML 2007, ListNet with top-one probabilities):
for each request ``q`` with candidates ``i``, labels ``y`` and logits ``s``::

    loss_q = -sum_i (y_i / sum_j y_j) * log softmax_q(s)_i

A request without a positive has no target distribution and contributes
nothing; the loss is the mean over the requests with a positive. The batch is
flat (one row per candidate, any order): the requests are found with segment
ops over the ``request_id`` column, so it needs batches of whole requests
(:class:`trainer.inputs.RequestBatches`). The loss is shift-invariant within a
request, so it leaves calibration to the pointwise heads.
"""

from __future__ import annotations

import logging

import tensorflow as tf

from ranker_core.schema import FeatureSpec
from trainer.config import TrainerConfig

logger = logging.getLogger(__name__)


def listwise_on(spec: FeatureSpec, config: TrainerConfig) -> bool:
    """Whether training adds the listwise loss: ``listwise_weight > 0`` and the data has request groups."""
    if config.listwise_weight <= 0:
        return False
    if not spec.has_groups:
        logger.info(
            "listwise_weight is %s but the data has no request groups: no listwise loss", config.listwise_weight
        )
        return False
    return True


class ListwiseSoftmaxLoss(tf.keras.layers.Layer):
    """Mean softmax cross-entropy per request over the requests with a positive label.

    Example::

        loss = ListwiseSoftmaxLoss()
        loss(
            labels=tf.constant([1.0, 0.0, 0.0, 1.0, 0.0]),
            logits=tf.constant([2.0, 0.0, 1.0, 0.5, -0.5]),
            request_ids=tf.constant(["a", "a", "b", "c", "c"]),   # "b" has no positive: ignored
        )   # (CE of request "a" + CE of request "c") / 2
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(name=kwargs.pop("name", "listwise_softmax"), **kwargs)

    def call(self, labels: tf.Tensor, logits: tf.Tensor, request_ids: tf.Tensor) -> tf.Tensor:
        losses, has_positive = self.per_request(labels, logits, request_ids)
        requests = tf.reduce_sum(tf.cast(has_positive, tf.float32))
        return tf.math.divide_no_nan(tf.reduce_sum(tf.where(has_positive, losses, 0.0)), requests)

    @staticmethod
    def per_request(labels: tf.Tensor, logits: tf.Tensor, request_ids: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Each request's cross-entropy and whether it has a positive, in order of first appearance."""
        requests, segments = tf.unique(request_ids)
        count = tf.size(requests)
        labels, logits = tf.cast(labels, tf.float32), tf.cast(logits, tf.float32)
        # log-sum-exp per request, shifted by the request's largest logit for stability
        top = tf.stop_gradient(tf.math.unsorted_segment_max(logits, segments, count))
        shifted = logits - tf.gather(top, segments)
        log_norm = tf.math.log(tf.math.unsorted_segment_sum(tf.exp(shifted), segments, count))
        label_sums = tf.math.unsorted_segment_sum(labels, segments, count)
        weighted_shifted = tf.math.unsorted_segment_sum(labels * shifted, segments, count)
        # -sum_i p_i (shifted_i - log_norm) with p_i = y_i / sum y
        losses = log_norm - tf.math.divide_no_nan(weighted_shifted, label_sums)
        return losses, label_sums > 0


def listwise_tasks(spec: FeatureSpec, config: TrainerConfig) -> list[str]:
    """The tasks the listwise loss ranks (``listwise_tasks``, or every task); none when it is off.

    Example::

        listwise_tasks(spec, TrainerConfig(listwise_weight=0.1, listwise_tasks=["favorite"]))   # ["favorite"]
    """
    unknown = sorted(set(config.listwise_tasks) - set(spec.task_names))
    if unknown:
        raise ValueError(f"listwise_tasks names unknown task(s) {unknown}; tasks: {list(spec.task_names)}")
    if not listwise_on(spec, config):
        return []
    return list(config.listwise_tasks) or list(spec.task_names)
