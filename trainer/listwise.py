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

from ranker_core.schema import POSITION, FeatureSpec
from ranker_core.step_configs import require_known_tasks
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
    require_known_tasks("listwise_tasks", config.listwise_tasks, spec.task_names)
    if not listwise_on(spec, config):
        return []
    return list(config.listwise_tasks) or list(spec.task_names)


class LoggedOrderLoss(tf.keras.layers.Layer):
    """ListMLE of each request's logged order: the negative Plackett-Luce log-likelihood, per candidate.

    The logged positions are the ranking the production ranker served. A head
    that learns to reproduce it (Xia et al., ICML 2008) teaches the shared
    experts what that ranker knew, from a label every impression carries (a
    favorite marks one row in 200). For a request whose candidates, in logged
    order, have logits ``s_1 .. s_n``::

        loss_q = (1 / n) * sum_i (logsumexp(s_i, ..., s_n) - s_i)

    which is the likelihood the Plackett-Luce model gives the logged order, the
    model a ranker that sorts noisy scores (Gumbel noise) samples from. It is
    divided by ``n`` so that the weight means the same for short and long
    slates. Requests with one candidate carry no order and add nothing; the
    loss is the mean over the others. The batch is flat, any row order, and
    must hold whole requests (:class:`trainer.inputs.RequestBatches`).

    Example::

        loss = LoggedOrderLoss()
        loss(
            positions=tf.constant([1, 0, 0]),
            logits=tf.constant([0.5, 2.0, 1.0]),
            request_ids=tf.constant(["a", "a", "b"]),   # "b" has one candidate: ignored
        )   # (logsumexp(2.0, 0.5) - 2.0 + 0) / 2
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(name=kwargs.pop("name", "logged_order_listmle"), **kwargs)

    def call(self, positions: tf.Tensor, logits: tf.Tensor, request_ids: tf.Tensor) -> tf.Tensor:
        losses, sizes = self.per_request(positions, logits, request_ids)
        ordered = sizes > 1
        requests = tf.reduce_sum(tf.cast(ordered, tf.float32))
        return tf.math.divide_no_nan(tf.reduce_sum(tf.where(ordered, losses, 0.0)), requests)

    @staticmethod
    def per_request(positions: tf.Tensor, logits: tf.Tensor, request_ids: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Each request's loss and its number of candidates, in order of first appearance.

        The rows are laid out as a ``[requests, longest request]`` block in
        logged order (ties keep the batch's row order), padded with a logit no
        softmax notices, so each suffix's log-sum-exp is one cumulative op.
        """
        requests, segments = tf.unique(request_ids)
        count = tf.size(requests)
        by_position = tf.argsort(positions, stable=True)
        order = tf.gather(by_position, tf.argsort(tf.gather(segments, by_position), stable=True))  # request, position
        segments = tf.gather(segments, order)
        sizes = tf.math.bincount(segments, minlength=count)
        ranks = tf.range(tf.size(segments)) - tf.gather(tf.cumsum(sizes, exclusive=True), segments)
        width = tf.reduce_max(sizes)
        padded = tf.fill([count, width], tf.constant(PADDED_LOGIT))
        block = tf.tensor_scatter_nd_update(
            padded, tf.stack([segments, ranks], axis=1), tf.gather(tf.cast(logits, tf.float32), order)
        )
        suffix = tf.math.cumulative_logsumexp(block, axis=1, reverse=True)
        steps = tf.where(tf.sequence_mask(sizes, width), suffix - block, 0.0)
        return tf.reduce_sum(steps, axis=1) / tf.cast(tf.maximum(sizes, 1), tf.float32), sizes


PADDED_LOGIT = -1e9
"""The logit of a padded slot: exp of it next to any real logit is 0, and it is finite, so no gradient is NaN."""


def logged_order_on(spec: FeatureSpec, config: TrainerConfig) -> bool:
    """Whether training adds the logged-order loss: ``logged_order_weight > 0``, request groups and positions."""
    if config.logged_order_weight <= 0:
        return False
    checks = (("request groups", spec.has_groups), ("position role", POSITION in spec.roles))
    missing = [what for what, present in checks if not present]
    if missing:
        weight, absent = config.logged_order_weight, " or ".join(missing)
        logger.info("logged_order_weight is %s but the data has no %s: no logged-order loss", weight, absent)
        return False
    return True
