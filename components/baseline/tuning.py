"""A seeded random search of the LightGBM parameters, judged on the eval split, under a CPU-time budget.

The baseline only counts as a fair competitor when it gets a tuning budget.
:func:`draw_candidates` lists the parameter sets to try: the configured values
first (so tuning can never pick worse on eval than not tuning), then seeded
random draws from :data:`SEARCH_SPACE`. :func:`search` fits them in order until
the list or the CPU-time budget runs out and keeps the model with the best
early-stopping eval score (NDCG@``eval_at`` on the eval split, or log-loss
without request groups). Trials may train on a sample of the rows; the winner
and the config as given are then refit on all of them and the better kept
(:meth:`SearchResult.refit`), so tuning never keeps a worse eval score than the
config::

    candidates = draw_candidates(trials=10, seed=0)   # [{}, {"num_leaves": 63, ...}, ...]
    result = search(fit_sample, candidates, "ndcg@10", budget_seconds=60)   # fit(overrides) -> booster, summary, values
    result = result.refit(fit_all)
    result.booster, result.summary, result.values, result.record()

The candidate list depends on the seed only (not on the target or the data), so
every target's search tries the same parameter sets.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightgbm as lgb
import numpy as np

SEARCH_SPACE: dict[str, tuple[str, Sequence[float]]] = {
    "num_leaves": ("choice", (7, 15, 31, 63, 127, 255)),
    "learning_rate": ("log", (0.03, 0.3)),
    "min_data_in_leaf": ("choice", (5, 10, 20, 50, 100, 200, 500)),
    "feature_fraction": ("uniform", (0.4, 1.0)),
    "lambda_l2": ("log", (0.001, 30.0)),
    "lambdarank_truncation_level": ("choice", (5, 10, 20, 30, 50)),
    "cat_smooth": ("log", (1.0, 300.0)),
    "min_data_per_group": ("choice", (20, 50, 100, 200, 500)),
    "max_cat_threshold": ("choice", (8, 16, 32, 64)),
}
"""``BaselineConfig`` field -> how a trial draws it: from a list, log-uniformly or uniformly in a range."""


def draw_candidates(trials: int, seed: int) -> list[dict[str, Any]]:
    """``trials`` sets of ``BaselineConfig`` overrides: ``{}`` (the config as given), then seeded draws.

    >>> draw_candidates(3, seed=0)[0], sorted(draw_candidates(3, seed=0)[1]) == sorted(SEARCH_SPACE)
    ({}, True)
    """
    rng = np.random.default_rng(seed)
    return [{}] + [{field: _draw(rng, *how) for field, how in SEARCH_SPACE.items()} for _ in range(trials - 1)]


def _draw(rng: np.random.Generator, kind: str, values: Sequence[float]) -> Any:
    if kind == "choice":
        return int(rng.choice(values))
    low, high = values
    value = math.exp(rng.uniform(math.log(low), math.log(high))) if kind == "log" else rng.uniform(low, high)
    return float(f"{value:.3g}")


@dataclasses.dataclass
class Trial:
    """One fitted candidate: its tuned values and its summary (eval scores, best iteration, params)."""

    values: dict[str, Any]
    summary: dict[str, Any]
    seconds: float

    def score(self, metric: str) -> float:
        """The eval ``metric`` (NaN without an eval set)."""
        return float(self.summary["eval_scores"].get(metric, math.nan))

    def beats(self, other: Trial, metric: str) -> bool:
        """A strictly better eval score: ``ndcg@k`` higher, anything else (log-loss) lower."""
        if metric.startswith("ndcg"):
            return self.score(metric) > other.score(metric)
        return self.score(metric) < other.score(metric)

    def row(self, metric: str) -> dict[str, Any]:
        """The trial's line of the manifest's per-trial table."""
        score = self.score(metric)
        return {
            "params": self.values,
            "eval_score": None if math.isnan(score) else score,
            "best_iteration": self.summary["best_iteration"],
            "seconds": round(self.seconds, 3),
        }


FitFunction = Callable[[Mapping[str, Any]], tuple[lgb.Booster, dict[str, Any], dict[str, Any]]]
"""``fit(overrides) -> (booster, summary, tuned values)``: one model trained with the overrides applied."""


@dataclasses.dataclass
class SearchResult:
    """Every trial that ran, the best one, and the model kept with its summary and tuned values.

    The kept model is the best trial's, or after :meth:`refit` the better of the finalists trained
    on every row (``refits``).
    """

    trials: list[Trial]
    best: Trial
    booster: lgb.Booster
    metric: str
    budget_seconds: float
    seconds: float
    summary: dict[str, Any] = dataclasses.field(default_factory=dict)
    values: dict[str, Any] = dataclasses.field(default_factory=dict)
    refits: list[Trial] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        self.summary = self.summary or self.best.summary
        self.values = self.values or self.best.values

    def refit(self, fit: FitFunction) -> SearchResult:
        """The finalists trained again by ``fit`` (on every row, when trials used a sample); the better is kept.

        The finalists are the best trial and, when it is not the config as given (the first trial),
        the config too: a sample's winner can lose on every row, and tuning must never keep a worse
        eval score than not tuning.
        """
        finalists = self.trials[:1] if self.best is self.trials[0] else [self.trials[0], self.best]
        final = search(fit, [trial.values for trial in finalists], self.metric, math.inf)
        return dataclasses.replace(
            self, booster=final.booster, summary=final.best.summary, values=final.best.values, refits=final.trials
        )

    def record(self) -> dict[str, Any]:
        """The manifest's ``tuning.targets.<target>`` object."""
        return {
            "metric": self.metric,
            "trials_run": len(self.trials),
            "trial_train_rows": self.best.summary["train_rows"],
            "trial_eval_rows": self.best.summary["eval_rows"],
            "budget_seconds": round(self.budget_seconds, 3),
            "seconds": round(self.seconds, 3),
            "best_params": self.values,
            "best_eval_score": Trial(self.values, self.summary, 0.0).row(self.metric)["eval_score"],
            "trials": [trial.row(self.metric) for trial in self.trials],
            "refits": [trial.row(self.metric) for trial in self.refits],
        }


def search(
    fit: FitFunction, candidates: Sequence[Mapping[str, Any]], metric: str, budget_seconds: float
) -> SearchResult:
    """Fit candidates in order while time is left (the first always runs) and keep the best on ``metric``.

    ``budget_seconds`` is CPU time of the calling thread, where each trial trains (LightGBM on one
    thread): a busy machine runs the same trials, only slower, so the chosen model does not depend
    on the load. Without an eval score only the first candidate runs: there is nothing to choose by.
    """
    started, cpu_started = time.perf_counter(), time.thread_time()
    trials: list[Trial] = []
    best, booster = None, None
    for overrides in candidates:
        spent = time.thread_time() - cpu_started
        if best is not None and (spent >= budget_seconds or math.isnan(best.score(metric))):
            break
        trial_started = time.perf_counter()
        candidate, summary, values = fit(overrides)
        trials.append(Trial(values, summary, time.perf_counter() - trial_started))
        if best is None or trials[-1].beats(best, metric):
            best, booster = trials[-1], candidate
    return SearchResult(trials, best, booster, metric, budget_seconds, time.perf_counter() - started)
