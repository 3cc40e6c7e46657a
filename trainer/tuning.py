"""Tuning the ranker: a seeded Optuna search of TrainerConfig fields, judged by the eval split's ranking metric.

The ``tune_mmoe`` pipeline step (and ``ranker tune``) tries ``TuningConfig.trials``
configurations: the model configuration as given first, so tuning never keeps a
worse eval score than not tuning, then Optuna's TPE sampler (seeded) over
``TuningConfig.space`` (a range over a whole-number field, such as ``epochs``,
draws integers: ``trial.suggest_int``). Each trial trains a full model with
:func:`trainer.train.train_and_export` (its own early stopping and best-epoch
selection) and is scored by NDCG of the evaluation's primary target on the eval
split (``TuningConfig.metric``), or by its AUC (``metric="auc"``, and always on data
without request groups). The best-scoring trial wins only if it is better than the
configuration as given beyond the eval split's noise: each trial's exported model
scores the eval requests, and the paired bootstrap interval of its NDCG lift over
the first trial must lie above 0 (``TuningConfig.confidence``); else the
configuration as given is kept. The winner's configuration is what the train
step then trains with; with ``deterministic`` (the default) that reproduces the
winning trial's model::

    result = tune("work/examples", TrainerConfig(), TuningConfig(trials=8), "work/tuning")
    result.config          # the TrainerConfig to train with
    result.record()        # every trial: values, eval score and lift over the given one, best epoch, seconds

Optuna is the library here because it runs anywhere the step runs (kfp.local,
a container, a Vertex AI custom job) with nothing to provision.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ranker_core.schema import REQUEST_ID, FeatureSpec
from ranker_core.stats import NO_BOUND, bootstrap_means, percentile_interval
from ranker_core.step_configs import (
    AUC_METRIC,
    TUNING_FILE,
    TrainerConfig,
    TuningConfig,
    check_space,
    range_bounds,
    whole_field,
)
from trainer.progress import labelled
from trainer.selection import JudgedRequests, Selection

log = logging.getLogger(__name__)

BOOTSTRAP_SAMPLES = 1000
SCORED_ROWS = 100_000
"""Eval rows per model call when a trial's model scores the eval split."""


@dataclasses.dataclass
class TuningResult:
    """Every trial that ran, in order, and the configuration of the best one."""

    metric: str
    trials: list[dict[str, Any]]
    best: dict[str, Any]  # the chosen trial: the best-scoring one, or the configuration as given (see ``choice``)
    config: TrainerConfig
    seconds: float
    choice: str  # why ``best`` was chosen, in words

    def record(self) -> dict[str, Any]:
        """What ``tuning.json`` holds."""
        return {
            "metric": self.metric,
            "best": self.best,
            "choice": self.choice,
            "trials": self.trials,
            "seconds": round(self.seconds, 3),
            "config": self.config.to_dict(),
        }


@dataclasses.dataclass
class EvalRequests:
    """The eval split, judged as the selection judges it: NDCG per request of any exported model.

    Example::

        requests = EvalRequests.read("work/examples", spec, Selection.ranking("ndcg@10", spec))
        requests.ndcg("work/model")      # (requests,), NaN where a request has no positive
    """

    columns: dict[str, np.ndarray]
    judged: JudgedRequests
    selection: Selection

    @classmethod
    def read(cls, examples_dir: str | Path, spec: FeatureSpec, selection: Selection) -> EvalRequests:
        from trainer.examples import read_split

        columns = read_split(examples_dir, "eval", spec)
        return cls(columns, JudgedRequests.of(columns[REQUEST_ID], columns, spec.task_names, selection), selection)

    def ndcg(self, model_dir: str | Path) -> np.ndarray:
        """NDCG at the selection's cutoff of every eval request, as the model in ``model_dir`` ranks it."""
        from trainer.predict import Ranker

        ranker, parts = Ranker(model_dir), []
        for start in range(0, len(self.judged.gains), SCORED_ROWS):
            rows = {name: column[start : start + SCORED_ROWS] for name, column in self.columns.items()}
            parts.append(ranker.predict(rows)[self.selection.output])
        scores = np.concatenate(parts)
        if not np.all(np.isfinite(scores)):  # a diverged trial: no request counts for it
            return np.full(self.judged.groups.n_requests, np.nan)
        return self.judged.ndcg(scores)


def tune(examples_dir: str | Path, base: TrainerConfig, tuning: TuningConfig, work_dir: str | Path) -> TuningResult:
    """Run the search (see the module docstring); trial models are written under ``work_dir`` and removed."""
    import optuna

    from trainer.train import train_and_export

    if tuning.trials < 1:
        raise ValueError("TuningConfig.trials is 0: nothing to tune (the pipeline leaves the tune step out)")
    check_space(base, tuning.space)
    spec = FeatureSpec.load(examples_dir)
    metric, ranking_metrics = _judged_by(tuning, spec)
    # per-request scores for the guard: only for an NDCG metric (an AUC has no requests to pair)
    requests = (
        EvalRequests.read(examples_dir, spec, Selection.ranking(tuning.metric, spec)) if ranking_metrics else None
    )
    per_request: dict[int, np.ndarray] = {}
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=tuning.seed))
    given = {field: getattr(base, field) for field in tuning.space}
    space = _with_given_choices(tuning.space, given)
    study.enqueue_trial(given, skip_if_exists=True)
    trials: list[dict[str, Any]] = []

    def objective(trial: optuna.Trial) -> float:
        values = {field: _suggest(trial, field, draw) for field, draw in space.items()}
        trial_dir = Path(work_dir) / f"trial-{trial.number}"
        started = time.perf_counter()
        with labelled(f"trial {trial.number + 1}/{tuning.trials}"):
            result = train_and_export(examples_dir, trial_dir, base.replace(**values), ranking_metrics=ranking_metrics)
        if requests is not None and tuning.confidence > 0:
            per_request[trial.number] = requests.ndcg(trial_dir)
        shutil.rmtree(trial_dir, ignore_errors=True)
        score = float(result.eval_metrics.get(metric, math.nan))
        trials.append(_row(trial.number, values, score, result.best_epoch, time.perf_counter() - started))
        log.info("tuning trial %d: %s = %.4f with %s", trial.number, metric, score, values)
        return score

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.perf_counter()
    study.optimize(objective, n_trials=1)  # the configuration as given always runs
    left = tuning.budget_seconds - (time.perf_counter() - started) if tuning.budget_seconds else None
    if tuning.trials > 1 and (left is None or left > 0):
        study.optimize(objective, n_trials=tuning.trials - 1, timeout=left)
    best, choice = _choose(trials, per_request, tuning)
    log.info("tuning: %s", choice)
    return TuningResult(metric, trials, best, base.replace(**best["values"]), time.perf_counter() - started, choice)


def _judged_by(tuning: TuningConfig, spec: FeatureSpec) -> tuple[str, tuple[str, ...]]:
    """The ``eval_metrics`` key trials are judged by and the ranking metrics training must compute for it:
    NDCG of the primary target (``favorite_ndcg_at_10``), or with ``metric="auc"`` the AUC of the primary
    binary task (``click_auc``), which data without request groups is judged by whatever the metric."""
    metric = tuning.metric
    if metric != AUC_METRIC and not spec.has_groups:
        log.warning("tuning metric %s needs request groups and this data has none: trials are judged by AUC", metric)
        metric = AUC_METRIC
    if metric == AUC_METRIC:
        return Selection.auc(spec).name, ()
    return Selection.ranking(metric, spec).name, (metric,)


def _with_given_choices(space: dict[str, dict[str, list]], given: dict[str, Any]) -> dict[str, dict[str, list]]:
    """``space`` with each given value that a choice lacks added to it: Optuna cannot run a first trial whose
    categorical value is not a choice (a range takes any value).

    >>> _with_given_choices({"embedding_dim": {"choice": [8, 16]}, "dropout": {"uniform": [0, 0.3]}},
    ...                     {"embedding_dim": 4, "dropout": 0.5})["embedding_dim"]
    {'choice': [8, 16, 4]}
    """
    widened = dict(space)
    for field, draw in space.items():
        choices = draw.get("choice")
        if choices is not None and given[field] not in choices:
            widened[field] = {"choice": [*choices, given[field]]}
    return widened


def _suggest(trial: Any, field: str, draw: dict[str, list]) -> Any:
    """``trial``'s value of ``field``: a choice, or a draw from a range (integers for a whole-number field)."""
    kind, values = next(iter(draw.items()))
    if kind == "choice":
        return trial.suggest_categorical(field, values)
    suggest = trial.suggest_int if whole_field(field) else trial.suggest_float
    return suggest(field, *range_bounds(field, kind, values), log=kind == "log")


def _row(number: int, values: dict[str, Any], score: float, best_epoch: int, seconds: float) -> dict[str, Any]:
    return {
        "trial": number,
        "values": values,
        "eval_score": None if math.isnan(score) else score,
        "best_epoch": best_epoch,
        "seconds": round(seconds, 3),
    }


def _best(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """The trial with the highest eval score (the first on ties: the configuration as given wins them)."""
    scored = [trial for trial in trials if trial["eval_score"] is not None]
    if not scored:
        raise ValueError(f"no tuning trial produced an eval score ({len(trials)} ran)")
    return max(scored, key=lambda trial: trial["eval_score"])


def _choose(
    trials: list[dict[str, Any]], per_request: dict[int, np.ndarray], tuning: TuningConfig
) -> tuple[dict[str, Any], str]:
    """The chosen trial and why: the best-scoring one if its paired interval of lift over the configuration as
    given (the first trial) lies above 0, else the first.

    The best of several trials is picked for its eval score, so its interval is optimistic (the winner's curse):
    this keeps the noise out, not every lucky draw.
    """
    best, given = _best(trials), trials[0]
    _add_lifts(trials, per_request, tuning.confidence)
    if len(trials) == 1:
        stopped = f" (budget_seconds {tuning.budget_seconds:g} spent)" if len(trials) < tuning.trials else ""
        return best, f"only the configuration as given was trained{stopped}"
    if best is given:
        return best, f"trial {given['trial']}, the configuration as given, scored highest"
    if tuning.confidence == 0:
        return best, f"trial {best['trial']} scored highest (confidence 0: chosen without a check against the noise)"
    if "eval_lift_interval" not in best:
        return best, f"trial {best['trial']} scored highest (an AUC has no requests to pair: chosen by its score)"
    lift, (low, high) = best["eval_lift_over_given"], best["eval_lift_interval"]
    interval = f"{_percent(lift)} [{_percent(low)}, {_percent(high)}]"
    words = f"trial {best['trial']} scored highest, {interval} over the given configuration"
    if low is not None and low > 0:
        return best, f"{words}: above the noise at confidence {tuning.confidence}, chosen"
    return given, f"{words}: within the noise at confidence {tuning.confidence}, the given configuration is kept"


def _add_lifts(trials: list[dict[str, Any]], per_request: dict[int, np.ndarray], confidence: float) -> None:
    """Each trial's eval NDCG lift over the first trial and its paired bootstrap interval, on its row.

    A lift, or a bound, that cannot be computed is ``None`` (``null`` in ``tuning.json``, which has no NaN): the
    lift is a ratio, undefined where the given configuration's mean NDCG is 0, and an interval bound is undefined
    where enough resamples of the requests give it a mean of 0 (or every request of a diverged trial is NaN).
    """
    given = trials[0]["trial"]
    if confidence == 0 or given not in per_request:
        return
    numbers = sorted(per_request)
    draws = bootstrap_means(
        np.column_stack([per_request[number] for number in numbers]), BOOTSTRAP_SAMPLES, np.random.default_rng(0)
    )
    base, given_mean = numbers.index(given), float(np.nanmean(per_request[given]))
    for trial in (trial for trial in trials if trial["trial"] in per_request):
        with np.errstate(divide="ignore", invalid="ignore"):  # a resample whose given mean is 0: no ratio
            lifts = draws[:, numbers.index(trial["trial"])] / draws[:, base] - 1.0
            lift = np.float64(np.nanmean(per_request[trial["trial"]])) / given_mean - 1.0
        low, high = percentile_interval(lifts, confidence)
        trial["eval_lift_over_given"] = _finite_or_none(lift)
        trial["eval_lift_interval"] = [_finite_or_none(low), _finite_or_none(high)]


def _finite_or_none(value: float) -> float | None:
    """``value`` as a float, or ``None`` where it is NaN or infinite: undefined, and not a number JSON can hold.

    >>> _finite_or_none(np.float64(0.25)), _finite_or_none(np.nan), _finite_or_none(np.inf)
    (0.25, None, None)
    """
    return float(value) if math.isfinite(value) else None


def _percent(value: float | None) -> str:
    """A lift or bound in the choice's words: ``+1.23%``, or ``n/a`` where it is undefined (as the summary has it)."""
    return NO_BOUND if value is None else f"{value:+.2%}"


def tune_from_component(
    examples_dir: str, config_json: str, tuning_json: str, trials_artifact: Any, best_metrics: Any
) -> str:
    """The ``tune_mmoe`` step's body: the search, ``tuning.json`` in ``trials_artifact``; the chosen config as JSON.

    The artifacts are kfp ``Artifact`` / ``Metrics`` objects (anything with ``path``, ``metadata`` and,
    for metrics, ``log_metric``), so this runs and is tested without kfp.
    """
    base = TrainerConfig.from_sources(config_json)
    tuning = TuningConfig.from_sources(tuning_json)
    with tempfile.TemporaryDirectory() as scratch:  # trial models stay local (an artifact path may be gcsfuse)
        result = tune(examples_dir, base, tuning, scratch)
    Path(trials_artifact.path).mkdir(parents=True, exist_ok=True)
    (Path(trials_artifact.path) / TUNING_FILE).write_text(json.dumps(result.record(), indent=2) + "\n")
    trials_artifact.metadata.update({"metric": result.metric, "best": result.best, "choice": result.choice})
    best_metrics.log_metric(result.metric, result.best["eval_score"])
    best_metrics.log_metric("trials", len(result.trials))
    best_metrics.log_metric("best_trial", result.best["trial"])
    if result.config.to_dict() == base.to_dict():  # kept as given: the same text, so train_mmoe's cache key matches
        return config_json
    return json.dumps(result.config.to_dict())
