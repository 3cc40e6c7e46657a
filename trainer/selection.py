"""Which epoch wins: early stopping and best-epoch selection by mean eval loss or by ranking quality.

With ``early_stopping_metric="ndcg@10"`` the trainer adds a
:class:`RankingMetric` callback: after every epoch it scores the eval split
once (in its batches), computes NDCG@10 of the primary target per request with
the evaluation's own functions (:mod:`ranker_core.ranking_metrics`), and writes
it into the epoch's logs, so early stopping, the History (MLflow curves),
TensorBoard and the epoch log line all see it::

    selection = Selection.resolve(TrainerConfig(early_stopping_metric="ndcg@10"), spec)
    selection.monitor, selection.mode        # ("val_favorite_ndcg_at_10", "max")
    callbacks = [RankingMetric(eval_batches, spec, selection), tf.keras.callbacks.EarlyStopping(
        monitor=selection.monitor, mode=selection.mode, restore_best_weights=True)]
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from ranker_core import ranking_metrics as m
from ranker_core.schema import REQUEST_ID, FeatureSpec, label_key
from ranker_core.step_configs import AUC_METRIC, LOSS_METRIC, TrainerConfig
from ranker_core.targets import ENGAGEMENT, default_primary_task, target_gains, target_labels
from trainer.model import SCORE

logger = logging.getLogger(__name__)

LOSS_MONITOR = "val_ranking_loss"


@dataclasses.dataclass(frozen=True)
class Selection:
    """The epoch metric that early stopping watches and the best epoch maximises or minimises.

    ``target`` and ``cutoff`` are set for an NDCG selection (``None`` for the loss).

    >>> Selection(LOSS_MONITOR, "min").monitor
    'val_ranking_loss'
    """

    monitor: str
    mode: str
    target: str | None = None
    cutoff: int | None = None

    @classmethod
    def resolve(cls, config: TrainerConfig, spec: FeatureSpec) -> Selection:
        """The selection ``config.early_stopping_metric`` asks for on this data.

        The eval loss instead when the metric cannot be measured there: NDCG without request groups, or a
        primary task whose eval labels are all of one class.
        """
        metric = config.early_stopping_metric
        if metric == LOSS_METRIC:
            return cls(LOSS_MONITOR, "min")
        if metric != AUC_METRIC and not spec.has_groups:
            return cls.by_loss(f"early_stopping_metric is {metric} but the data has no request groups")
        target = default_primary_task(spec.task_names, metric)
        if target in spec.one_class_tasks("eval"):
            return cls.by_loss(
                f"early_stopping_metric is {metric} of {target!r}, whose eval labels are all of one class"
            )
        return cls.auc(spec) if metric == AUC_METRIC else cls.ranking(metric, spec)

    @classmethod
    def by_loss(cls, reason: str) -> Selection:
        """The eval loss, with a warning that says why the configured metric is not used."""
        logger.warning("%s: selecting by the eval loss", reason)
        return cls(LOSS_MONITOR, "min")

    @classmethod
    def ranking(cls, metric: str, spec: FeatureSpec) -> Selection:
        """The selection by ``metric`` (``ndcg@<k>`` or ``ndcg``) of the primary target (data with request groups)."""
        cutoff = m.parse_metric(metric)
        target = default_primary_task(spec.task_names, metric)
        suffix = "" if cutoff == m.FULL_LIST else f"_at_{cutoff}"
        return cls(f"val_{target}_ndcg{suffix}", "max", target, cutoff)

    @classmethod
    def auc(cls, spec: FeatureSpec) -> Selection:
        """The selection by the eval AUC of the primary binary task: Keras's epoch metric of that task's output."""
        return cls(f"val_{default_primary_task(spec.task_names, AUC_METRIC)}_auc", "max")

    @property
    def by_ranking(self) -> bool:
        return self.target is not None

    @property
    def name(self) -> str:
        """The metric's key in ``eval_metrics`` (the epoch log's without ``val_``): ``favorite_ndcg_at_10``."""
        return self.monitor.removeprefix("val_")

    @property
    def output(self) -> str:
        """The served output an NDCG selection ranks by: the target task's probability, or ``score`` for engagement."""
        return SCORE if self.target == ENGAGEMENT else self.target

    def best_epoch(self, history: Mapping[str, list[float]], epochs_trained: int) -> int:
        """The 1-based epoch whose weights were kept (the last one when the monitor was never logged)."""
        values = history.get(self.monitor, [])
        if not values:
            return epochs_trained
        return int(np.argmax(values) if self.mode == "max" else np.argmin(values)) + 1


@dataclasses.dataclass(frozen=True)
class JudgedRequests:
    """Requests and their gains for an NDCG selection: any model's scores for their rows, judged per request.

    Example::

        judged = JudgedRequests.of(columns[REQUEST_ID], columns, spec.task_names, selection)
        judged.ndcg(scores)      # (requests,): NDCG at the selection's cutoff, NaN where a request has no positive
    """

    groups: m.RequestGroups
    gains: np.ndarray
    ideal: dict[int, np.ndarray]
    cutoff: int

    @classmethod
    def of(
        cls, request_ids: np.ndarray, labels: Mapping[str, np.ndarray], tasks: tuple[str, ...], selection: Selection
    ) -> JudgedRequests:
        """``labels``: each task's label column (``label_<task>``), one row per row of ``request_ids``."""
        groups = m.RequestGroups.from_ids(request_ids)
        gains = target_gains(target_labels(labels, selection.target, tasks), selection.target, tasks)
        return cls(groups, gains, m.ideal_dcg(groups, gains, (selection.cutoff,)), selection.cutoff)

    def ndcg(self, scores: np.ndarray) -> np.ndarray:
        return m.ndcg_per_request(self.groups, self.gains, scores, (self.cutoff,), self.ideal)[self.cutoff]


class RankingMetric(tf.keras.callbacks.Callback):
    """Adds NDCG of the selection's target over the eval requests to every epoch's logs.

    The eval batches are scored once per epoch by the model's served outputs (a
    task's probability, or ``score`` for graded engagement); requests without a
    positive are left out, as in the evaluation. Place it before the callbacks
    that read the metric (early stopping, TensorBoard).

    Example::

        callback = RankingMetric(eval_batches, spec, Selection.resolve(config, spec))
        model.fit(train, validation_data=eval_batches, callbacks=[callback, early_stopping])
        history.history["val_favorite_ndcg_at_10"]   # one value per epoch
    """

    def __init__(self, batches: tf.data.Dataset, spec: FeatureSpec, selection: Selection) -> None:
        super().__init__()
        if not selection.by_ranking:
            raise ValueError(f"RankingMetric needs an NDCG selection, got {selection.monitor}")
        self.batches, self.spec, self.selection = batches, spec, selection
        self._judged: JudgedRequests | None = None  # known after the first pass over the batches
        self._predict = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        # reduce_retracing: batches of whole requests (the listwise loss) vary in size; one trace serves them all
        self._predict = tf.function(
            lambda batch: self.model(batch, training=False)[self.selection.output], reduce_retracing=True
        )

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs[self.selection.monitor] = self.evaluate()

    def evaluate(self) -> float:
        """Mean NDCG over the eval requests that have a positive (NaN when none has)."""
        scores = self._scores()
        per_request = self._judged.ndcg(scores)
        return float(np.nanmean(per_request)) if np.isfinite(per_request).any() else float("nan")

    def _scores(self) -> np.ndarray:
        """One pass over the eval batches: the model's scores (and, the first time, requests and gains)."""
        if self._predict is None:
            self.on_train_begin()
        scores, requests, labels = [], [], []
        for batch in self.batches:
            scores.append(self._predict(batch).numpy().astype(np.float64))
            if self._judged is None:
                requests.append(batch[REQUEST_ID].numpy())
                labels.append({name: batch[label_key(name)].numpy() for name in self.spec.task_names})
        if self._judged is None:
            tasks = self.spec.task_names
            columns = {label_key(task): np.concatenate([part[task] for part in labels]) for task in tasks}
            self._judged = JudgedRequests.of(np.concatenate(requests), columns, tasks, self.selection)
        return np.concatenate(scores)
