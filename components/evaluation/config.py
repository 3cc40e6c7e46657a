"""What the evaluation measures and what the blessing requires: :class:`EvaluationConfig`.

Kept apart from the evaluation itself so that ``ranker run|compile|submit`` can
check the settings against the dataset spec before any step runs without
loading TensorFlow or LightGBM::

    EvaluationConfig.from_sources('{"primary_task": "click"}').primary(spec)   # PrimaryMetric("click", "ndcg@10")
"""

from __future__ import annotations

import functools
import logging
import math
from typing import Literal, Self

from pydantic import model_validator

from components.evaluation.blessing import PrimaryMetric
from ranker_core import ranking_metrics as m
from ranker_core.cli_support import InvalidValueError
from ranker_core.schema import FeatureSpec
from ranker_core.settings import Settings, SettingsConfigDict
from ranker_core.targets import ENGAGEMENT, default_primary_task, targets

log = logging.getLogger(__name__)


class EvaluationConfig(Settings):
    """What is measured and what the blessing requires (``ranker evaluate --config``, env ``RANKER_EVAL_<FIELD>``).

    ``ks`` are the NDCG cutoffs (0 = the full list). The primary metric is
    ``primary_metric`` (``ndcg@<k>``, ``ndcg`` or ``auc``) of ``primary_task``
    (a task or ``engagement``; default: ``favorite`` when the data has it, else
    ``engagement``, or the first task when the metric is AUC). The candidate
    must beat the per-module GBDT and the champion on it (and the global
    LightGBM with ``must_beat_global``), on at least ``min_requests``
    requests with a positive (AUC: positive impressions). No module judged on at least
    ``module_min_requests`` requests with a positive (AUC: positive impressions) may fall more than ``tolerance``
    (relative) below the per-module GBDT (with
    ``module_veto="significant"``, also significantly: its paired p-value,
    Bonferroni-corrected for the gated modules, below ``alpha``; ``"point"``
    vetoes on the point estimate alone). On the held-out module,
    ``heldout_rule="not_worse"`` refuses a candidate significantly worse than
    the GBDT fallback, ``"beat"`` requires it to be ahead, ``"off"`` only reports.
    Every comparison states its minimum detectable effect at ``power``.

    >>> EvaluationConfig.from_sources('{"ks": [5, 20], "tolerance": 0.05}').ks
    (5, 20)
    """

    ks: tuple[int, ...] = (5, 10, m.FULL_LIST)
    primary_task: str | None = None
    primary_metric: str = "ndcg@10"
    tolerance: float = 0.02
    module_veto: Literal["significant", "point"] = "significant"
    # Modules judged on fewer requests with a positive (AUC: positive impressions) are reported but cannot veto.
    module_min_requests: int = 50
    # A verdict on fewer requests with a positive (AUC: fewer positive impressions) is refused: its
    # interval would be noise, or of zero width on a single request.
    min_requests: int = 20
    require_significance: bool = False
    must_beat_global: bool = False
    heldout_rule: Literal["not_worse", "beat", "off"] = "not_worse"
    alpha: float = 0.05
    power: float = 0.8
    bootstrap_samples: int = 1000
    permutation_samples: int = 1000
    confidence_level: float = 0.95
    calibration_bins: int = 10
    seed: int = 0
    split: str = "test"
    # The model the blessing judges; default: the first model given.
    candidate: str | None = None
    # Models every row is also compared with, as with the two GBDTs (paired delta, lift, their
    # intervals, p-value, MDE), under keys prefixed "<name>_": e.g. network peers of the candidate.
    compare_with: tuple[str, ...] = ()

    model_config = SettingsConfigDict(env_prefix="RANKER_EVAL_")

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not 0 < self.power < 1 or not 0 < self.alpha < 1:
            raise ValueError(f"alpha and power must lie in (0, 1), got alpha={self.alpha}, power={self.power}")
        if not 0 < self.confidence_level < 1:
            raise ValueError(f"confidence_level must lie in (0, 1), got {self.confidence_level}")
        if not math.isfinite(self.tolerance) or self.tolerance < 0:
            raise ValueError(f"tolerance must be a finite number >= 0 (a relative shortfall), got {self.tolerance}")
        if any(k < 0 for k in self.ks):
            raise ValueError(f"ks must be NDCG cutoffs >= 1 or 0 (the full list), got {list(self.ks)}")
        self.require_at_least(self._minimums())
        return self

    def _minimums(self) -> dict[str, int]:
        """The smallest value of each count. ``permutation_samples``: enough sign flips that a p-value, at least
        1 / (1 + samples), can fall below ``alpha`` (fewer would silently disable every significance rule)."""
        return {
            "bootstrap_samples": 1,
            "permutation_samples": math.floor(1 / self.alpha),
            "calibration_bins": 1,
            "min_requests": 0,
            "module_min_requests": 0,
        }

    def primary(self, spec: FeatureSpec) -> PrimaryMetric:
        """The primary metric resolved against the data (its task list and whether it has groups).

        Without ``primary_task``: ``favorite`` when the data has it; else ``engagement`` for NDCG, and the
        first task for AUC (data without request groups is judged on AUC, which needs a binary task).
        """
        names = targets(spec)
        metric = self.primary_metric
        if metric != "auc":
            try:
                m.parse_metric(metric)
            except ValueError:
                raise InvalidValueError(
                    f"primary_metric {metric!r} is not 'auc', 'ndcg' or 'ndcg@<k>' with k >= 1"
                ) from None
        if not spec.has_groups and metric != "auc":
            _warn_auc_instead_of(metric)
            metric = "auc"
        task = self.primary_task or default_primary_task(spec.task_names, metric)
        if task not in names:
            raise InvalidValueError(f"primary_task {task!r} is not a target of this data: {', '.join(names)}")
        if metric == "auc" and task == ENGAGEMENT:
            raise InvalidValueError("AUC needs a binary task: set primary_task to one of " + ", ".join(spec.task_names))
        return PrimaryMetric(task, metric)

    def cutoffs(self, primary: PrimaryMetric) -> tuple[int, ...]:
        extra = () if primary.metric == "auc" else (m.parse_metric(primary.metric),)
        return tuple(dict.fromkeys([*self.ks, *extra]))


@functools.cache
def _warn_auc_instead_of(metric: str) -> None:
    """Warn once per process (``ranker run`` resolves the primary metric while checking its settings, and again)."""
    log.warning("the data has no request groups: the primary metric is AUC instead of %s", metric)
