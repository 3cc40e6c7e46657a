"""Judge every model on the same test requests against the per-module GBDT, and bless or refuse.

For every model (the candidate MMoE, any alternative, the champion, the
per-module and global GBDT, a seeded random ranker and, on simulated data, the
oracle) the evaluation computes NDCG@k per task (binary relevance) and for
graded engagement, per module and overall, with 95% paired bootstrap
intervals over requests, the lift over the per-module GBDT with its interval
and a paired sign-flip p-value, AUC, and calibration for models that output
probabilities. The held-out module is evaluated on its own split::

    result = evaluate(EvaluationConfig(), "work/examples", {"mmoe": "work/model"}, "work/baseline", "work/report")
    result.blessing.blessed, result.blessing.reasons
    result.headline_metrics()     # the scalars for the kfp Metrics artifact

Writes ``metrics.json``, ``report.html`` and ``blessing.json`` (see
``docs/evaluation.md``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from components.baseline.gbdt import load_manifest
from components.baseline.scoring import GLOBAL_NAME, PER_MODULE_NAME, GbdtBaseline
from components.evaluation.blessing import ALL_MODULES, Blessing, Comparison, PrimaryMetric, decide
from components.evaluation.config import EvaluationConfig
from components.evaluation.scorers import (
    ORACLE_NAME,
    ORACLE_POSITION_FREE_NAME,
    RANDOM_NAME,
    ModelScorer,
    OracleScorer,
    RandomScorer,
    Scorer,
)
from ranker_core import ranking_metrics as m
from ranker_core.cli_support import InvalidValueError, MissingInputError
from ranker_core.schema import FEATURE_SPEC_FILE, HELDOUT_SPLIT, MODULE, REQUEST_ID, FeatureSpec
from ranker_core.stats import (
    auc_draws,
    bootstrap_means,
    minimum_detectable_effect,
    p_value_of_draws,
    percentile_interval,
    sign_flip_p_values,
)
from ranker_core.targets import target_gains, target_labels, targets
from trainer.examples import read_split

log = logging.getLogger(__name__)

CHAMPION_NAME = "champion"


@dataclasses.dataclass
class SplitEvaluation:
    """Every metric of every model on one split, as flat rows (one per model, subset, target, metric)."""

    split: str
    impressions: int
    requests: int
    modules: list[str]
    ndcg: list[dict[str, Any]]
    auc: list[dict[str, Any]]
    calibration: list[dict[str, Any]]
    scoring_seconds: dict[str, float]
    metric_seconds: float

    def find(self, model: str, subset: str, target: str, metric: str) -> dict[str, Any] | None:
        """The row of one number, or None when it was not measured."""
        rows = self.auc if metric == "auc" else self.ndcg
        key = "task" if metric == "auc" else "target"
        for row in rows:
            if row["model"] == model and row["subset"] == subset and row[key] == target and row["metric"] == metric:
                return row
        return None


@dataclasses.dataclass
class EvaluationResult:
    """The evaluation of one candidate: metrics, blessing and what the report shows."""

    config: EvaluationConfig
    candidate: str
    baseline: str
    models: list[str]
    test: SplitEvaluation
    heldout: SplitEvaluation | None
    blessing: Blessing
    gate_usage: dict[str, Any] | None
    baseline_fallbacks: list[dict[str, str]]
    baseline_models: list[dict[str, Any]]
    notes: list[str]
    unseen_modules: list[str] = dataclasses.field(default_factory=list)  # judged, but in no training row

    def headline_metrics(self) -> dict[str, float]:
        """Scalars for a kfp ``Metrics`` artifact: the primary metric of each model, lift and p-value."""
        primary = self.blessing.primary
        headline = {"blessed": float(self.blessing.blessed)}
        for model in self.models:
            row = self.test.find(model, ALL_MODULES, primary.task, primary.metric)
            if row is not None and row["value"] is not None:
                headline[f"{model}_{primary.task}_{primary.metric}"] = row["value"]
        row = self.test.find(self.candidate, ALL_MODULES, primary.task, primary.metric) or {}
        keys = (
            "lift",
            "lift_ci_low",
            "lift_ci_high",
            "p_value",
            "mde_relative",
            "gain_captured",
            "gain_captured_with_position",
        )
        for key in (*keys, "global_lift", "global_lift_ci_low", "global_lift_ci_high", "global_p_value"):
            if row.get(key) is not None:
                headline[f"{self.candidate}_{key}"] = row[key]
        expected = self.test.find(self.candidate, ALL_MODULES, primary.task, m.EXPECTED_PREFIX + primary.metric) or {}
        if expected.get("value") is not None:
            headline[f"{self.candidate}_{primary.task}_{m.EXPECTED_PREFIX}{primary.metric}"] = expected["value"]
        for key in ("lift", "lift_ci_low", "lift_ci_high", "global_lift", "gain_captured"):
            if expected.get(key) is not None:
                headline[f"{self.candidate}_{m.EXPECTED_PREFIX}{key}"] = expected[key]
        return headline

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["blessing"] = self.blessing.to_dict()
        data["config"] = self.config.to_dict()
        return _json_safe(data)


@dataclasses.dataclass(frozen=True)
class ReportPaths:
    """Where the three outputs go (files; a kfp component passes its artifacts' paths)."""

    html: Path
    metrics: Path
    blessing: Path

    @classmethod
    def in_dir(cls, report_dir: str | Path) -> ReportPaths:
        report_dir = Path(report_dir)
        return cls(report_dir / "report.html", report_dir / "metrics.json", report_dir / "blessing.json")


def evaluate(
    config: EvaluationConfig,
    examples_dir: str | Path,
    models: Mapping[str, str | Path | Scorer],
    baseline_dir: str | Path,
    report: str | Path | ReportPaths,
    oracle_uri: str | None = None,
    champion: str | Path | Scorer | None = None,
    champion_note: str = "",
) -> EvaluationResult:
    """Evaluate ``models`` (name -> exported model dir or a :class:`Scorer`) and write the report.

    Before any model is loaded, the inputs are checked (:func:`check_sources`) and a model given as a
    folder, or the baseline, trained on other examples is refused (:func:`check_lineage`); a
    :class:`Scorer` is taken as it is.

    ``champion_note`` says why there is no champion to compare with (it could not be loaded):
    the report and the blessing record it.
    """
    if not models:
        raise ValueError("evaluate needs at least one candidate model")
    spec = FeatureSpec.load(examples_dir)
    primary = config.primary(spec)
    candidate = config.candidate or next(iter(models))
    if candidate not in models:
        raise InvalidValueError(f"candidate {candidate!r} is not among the models given: {', '.join(models)}")
    check_sources(examples_dir, config.split, models, baseline_dir, oracle_uri, champion)
    check_lineage(examples_dir, models, baseline_dir)
    candidates = {name: _as_scorer(name, model) for name, model in models.items()}
    scorers = all_scorers(config, spec, candidates, baseline_dir, oracle_uri, champion)
    names = [scorer.name for scorer in scorers]
    if len(set(names)) != len(names):
        raise InvalidValueError(f"model names must be unique, got {names}")
    unknown = sorted(set(config.compare_with) - set(names))
    if unknown:
        raise InvalidValueError(f"compare_with names {unknown}, which are not among the models: {', '.join(names)}")
    test_columns = read_split(examples_dir, config.split, spec)
    test = evaluate_split(config, spec, test_columns, scorers, primary, config.split)
    unseen = unseen_modules(spec, test_columns[MODULE])
    heldout = None
    if spec.held_out_module and (Path(examples_dir) / HELDOUT_SPLIT).is_dir():
        heldout_columns = read_split(examples_dir, HELDOUT_SPLIT, spec)
        heldout = evaluate_split(config, spec, heldout_columns, scorers, primary, HELDOUT_SPLIT)
    compared = Comparison(candidate, PER_MODULE_NAME, GLOBAL_NAME, CHAMPION_NAME if champion is not None else None)
    blessing = decide(config, primary, test, heldout, compared)
    candidate_scorer = candidates[candidate]
    if isinstance(candidate_scorer, ModelScorer):
        from trainer.digest import judged_model

        blessing.judged_model = judged_model(candidate_scorer.model_dir)
    blessing.champion_note = champion_note
    manifest = load_manifest(baseline_dir)
    result = EvaluationResult(
        config=config,
        candidate=candidate,
        baseline=PER_MODULE_NAME,
        models=names,
        test=test,
        heldout=heldout,
        blessing=blessing,
        gate_usage=candidate_scorer.gate_usage() if isinstance(candidate_scorer, ModelScorer) else None,
        baseline_fallbacks=list(manifest["fallbacks"]),
        baseline_models=baseline_models(manifest),
        notes=[*_notes(spec, scorers, primary), *_unseen_notes(unseen), *([champion_note] if champion_note else [])],
        unseen_modules=unseen,
    )
    write_outputs(result, report if isinstance(report, ReportPaths) else ReportPaths.in_dir(report))
    return result


def unseen_modules(spec: FeatureSpec, modules: np.ndarray) -> list[str]:
    """Modules of the judged rows that no training row has (not the held-out one, which has its own section)."""
    return sorted(set(np.asarray(modules, dtype=object).tolist()) - set(spec.modules) - {spec.held_out_module})


def _unseen_notes(unseen: Sequence[str]) -> list[str]:
    return [
        f"Module {module} is in no training row (unseen in training): the candidate ranks it through its "
        "unseen-module path (the out-of-vocabulary module embedding and the module's traits, if the dataset spec "
        "declares them), and the per-module GBDT falls back to the global model."
        for module in unseen
    ]


def baseline_models(manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per trained LightGBM model of a baseline manifest: where, target, best iteration, eval scores, params.

    >>> baseline_models({"global": {"click": {"path": "g.txt", "best_iteration": 40}}, "per_module": {}})[0]["scope"]
    'global'
    """
    scopes = [("global", manifest["global"]), *manifest.get("per_module", {}).items()]
    return [
        {
            "scope": scope,
            "target": target,
            "best_iteration": entry.get("best_iteration"),
            "eval_scores": entry.get("eval_scores", {}),
            "params": entry.get("params", {}),
        }
        for scope, models in scopes
        for target, entry in models.items()
        if "path" in entry
    ]


def _as_scorer(name: str, model: str | Path | Scorer) -> Scorer:
    return ModelScorer.load(name, model) if isinstance(model, str | Path) else model


def all_scorers(
    config: EvaluationConfig,
    spec: FeatureSpec,
    candidates: Mapping[str, Scorer],
    baseline_dir: str | Path,
    oracle_uri: str | None,
    champion: str | Path | Scorer | None,
) -> list[Scorer]:
    """Every model an evaluation scores: the candidates, the champion, both GBDTs, random and the oracles."""
    baseline = GbdtBaseline.load(baseline_dir)
    scorers: list[Scorer] = [_renamed(name, scorer) for name, scorer in candidates.items()]
    if champion is not None:
        scorers.append(_renamed(CHAMPION_NAME, _as_scorer(CHAMPION_NAME, champion)))
    scorers += [baseline.per_module_scorer(), baseline.global_scorer(), RandomScorer(config.seed, targets(spec))]
    if oracle_uri:
        scorers += load_oracle(oracle_uri, spec)
    return scorers


def _renamed(name: str, scorer: Scorer) -> Scorer:
    if scorer.name == name:
        return scorer
    if dataclasses.is_dataclass(scorer) and "name" in {field.name for field in dataclasses.fields(scorer)}:
        return dataclasses.replace(scorer, name=name)
    raise ValueError(f"model {name!r} is a scorer named {scorer.name!r}: give it the same name")


def evaluate_split(
    config: EvaluationConfig,
    spec: FeatureSpec,
    columns: Mapping[str, np.ndarray],
    scorers: Sequence[Scorer],
    primary: PrimaryMetric,
    split: str,
) -> SplitEvaluation:
    """Score ``columns`` with every scorer and compute every metric (see the module docstring)."""
    rows = len(columns[REQUEST_ID])
    if not rows:
        raise ValueError(f"the {split} split holds no examples to evaluate")
    scores, seconds = {}, {}
    for scorer in scorers:
        started = time.perf_counter()
        scores[scorer.name] = _checked_scores(scorer, _scored(scorer, columns, split), rows, targets(spec))
        seconds[scorer.name] = round(time.perf_counter() - started, 3)
        log.info("%s: scored %d %s impressions in %.1fs", scorer.name, rows, split, seconds[scorer.name])
    started = time.perf_counter()
    groups = m.RequestGroups.from_ids(columns[REQUEST_ID])
    labels = {target: target_labels(columns, target, spec.task_names) for target in targets(spec)}
    modules = np.asarray(columns[MODULE], dtype=object)
    ndcg = _ndcg_rows(config, spec, groups, labels, modules, scores, config.cutoffs(primary)) if spec.has_groups else []
    probability_models = [scorer.name for scorer in scorers if scorer.outputs_probabilities]
    evaluation = SplitEvaluation(
        split=split,
        impressions=rows,
        requests=groups.n_requests,
        modules=sorted(set(modules.tolist())),
        ndcg=ndcg,
        auc=_auc_rows(config, spec, labels, modules, scores, primary),
        calibration=_calibration_rows(config, spec, labels, scores, probability_models),
        scoring_seconds=seconds,
        metric_seconds=0.0,
    )
    evaluation.metric_seconds = round(time.perf_counter() - started, 3)
    return evaluation


def _scored(scorer: Scorer, columns: Mapping[str, np.ndarray], split: str) -> dict[str, np.ndarray]:
    """The scores of ``scorer``; an oracle that cannot be joined to the split is the user's error."""
    if not isinstance(scorer, OracleScorer):
        return scorer(columns)
    try:
        return scorer(columns)
    except (KeyError, ValueError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        raise InvalidValueError(f"the oracle does not cover the {split} split: {message}") from None


def _checked_scores(
    scorer: Scorer, scores: Mapping[str, np.ndarray], rows: int, names: Sequence[str]
) -> dict[str, np.ndarray]:
    checked = {}
    for target in names:
        if target not in scores:
            log.warning("model %s gives no %r score: it is not measured on that target", scorer.name, target)
            continue
        values = np.asarray(scores[target], dtype=np.float64).reshape(-1)
        if len(values) != rows:
            raise ValueError(f"model {scorer.name!r} gave {len(values)} {target} scores for {rows} impressions")
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            raise ValueError(f"model {scorer.name!r} gave {len(bad)} non-finite {target} scores (first: row {bad[0]})")
        checked[target] = values
    if not checked:
        raise ValueError(f"model {scorer.name!r} gave scores for none of the targets {', '.join(names)}")
    return checked


def _ndcg_rows(
    config: EvaluationConfig,
    spec: FeatureSpec,
    groups: m.RequestGroups,
    labels: Mapping[str, np.ndarray],
    modules: np.ndarray,
    scores: Mapping[str, Mapping[str, np.ndarray]],
    cutoffs: Sequence[int],
) -> list[dict[str, Any]]:
    """Per-request NDCG of every (model, target, cutoff), summarised overall and per module.

    With a position-free oracle among the scores, every model is also judged against it
    (``expected_ndcg@k``, see :data:`ranker_core.ranking_metrics.EXPECTED_PREFIX`).
    """
    gains = {target: target_gains(labels[target], target, spec.task_names) for target in targets(spec)}
    request_module = request_modules(groups, modules)
    rows = _summarised_ndcg(config, groups, request_module, gains, scores, cutoffs, "")
    expected = scores.get(ORACLE_POSITION_FREE_NAME)
    if expected is not None:
        judged = {model: model_scores for model, model_scores in scores.items() if model != ORACLE_NAME}
        rows += _summarised_ndcg(config, groups, request_module, expected, judged, cutoffs, m.EXPECTED_PREFIX)
    return _json_safe(rows)


def request_modules(groups: m.RequestGroups, modules: np.ndarray) -> np.ndarray:
    """The module of each request; an :class:`InvalidValueError` when a request has rows in two or more modules.

    A request is one ranked list on one surface: judged as a whole in its first row's module, it would be
    wrong in every per-module table and in the module veto (extraction dead-letters such requests).
    """
    first = groups.first_row_values(modules)
    mixed = np.flatnonzero(np.asarray(modules, dtype=object) != first[groups.row_request])
    if len(mixed):
        request = groups.row_request[mixed[0]]
        spanning = len(np.unique(groups.row_request[mixed]))
        raise InvalidValueError(
            f"{spanning} of {groups.n_requests} requests have rows in two or more modules (first: request "
            f"{str(groups.ids[request])!r} in {first[request]} and {modules[mixed[0]]}); a request is one ranked list "
            "on one surface: extract the features again (extraction leaves such requests out as dead letters)"
        )
    return first


def _summarised_ndcg(
    config: EvaluationConfig,
    groups: m.RequestGroups,
    request_module: np.ndarray,
    gains: Mapping[str, np.ndarray],
    scores: Mapping[str, Mapping[str, np.ndarray]],
    cutoffs: Sequence[int],
    prefix: str,
) -> list[dict[str, Any]]:
    """NDCG rows of every (model, target, cutoff) against ``gains`` (per target), overall and per module."""
    columns: list[tuple[str, str, int]] = []
    values: list[np.ndarray] = []
    for target, target_gain in gains.items():
        ideal = m.ideal_dcg(groups, target_gain, cutoffs)
        for model, model_scores in scores.items():
            if target not in model_scores:
                continue
            per_request = m.ndcg_per_request(groups, target_gain, model_scores[target], cutoffs, ideal)
            for k in cutoffs:
                columns.append((model, target, k))
                values.append(per_request[k])
    matrix = np.column_stack(values)
    positives = {
        target: np.bincount(groups.row_request, weights=target_gain > 0, minlength=groups.n_requests)
        for target, target_gain in gains.items()
    }
    subsets = [(ALL_MODULES, np.arange(groups.n_requests))]
    subsets += [(module, np.flatnonzero(request_module == module)) for module in sorted(set(request_module.tolist()))]
    rows = []
    for index, (subset, requests) in enumerate(subsets):
        rng = np.random.default_rng([config.seed, index] + ([1] if prefix else []))
        counts = {target: int(per_request[requests].sum()) for target, per_request in positives.items()}
        rows += summarise_requests(config, matrix[requests], columns, subset, rng, counts, prefix)
    return rows


def summarise_requests(
    config: EvaluationConfig,
    matrix: np.ndarray,
    columns: Sequence[tuple[str, str, int]],
    subset: str,
    rng: np.random.Generator,
    positives: Mapping[str, int],
    prefix: str = "",
) -> list[dict[str, Any]]:
    """Means, bootstrap intervals, lifts over both GBDTs and p-values of one request subset
    (metric names ``<prefix>ndcg@k``)."""
    index = {column: i for i, column in enumerate(columns)}
    draws = bootstrap_means(matrix, config.bootstrap_samples, rng)
    low, high = percentile_interval(draws, config.confidence_level)
    included = (~np.isnan(matrix)).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.nansum(matrix, axis=0) / included  # NaN where no request is included
    rows = [
        {
            "model": model,
            "subset": subset,
            "target": target,
            "metric": prefix + m.metric_name(k),
            "value": means[i],
            "ci_low": low[i],
            "ci_high": high[i],
            "requests": int(included[i]),
            "excluded_requests": int(len(matrix) - included[i]),
            "positives": int(positives[target]),
        }
        for i, (model, target, k) in enumerate(columns)
    ]
    for reference, prefix in _references(config).items():
        _compare(config, matrix, columns, index, means, draws, rng, rows, reference, prefix)
    for i, (_, target, k) in enumerate(columns):
        rows[i].update(_gain_captured(means, i, index, target, k))
    return rows


REFERENCES = {PER_MODULE_NAME: "", GLOBAL_NAME: "global_"}
"""The models every row is compared with, and the prefix of the comparison's keys in the row:
``lift``, ``p_value``, ... against the per-module GBDT; ``global_lift``, ... against the global LightGBM.
``EvaluationConfig.compare_with`` adds more (``<name>_lift``, ...)."""


def _references(config: EvaluationConfig) -> dict[str, str]:
    """Every model a row is compared with and its keys' prefix: :data:`REFERENCES` and ``compare_with``."""
    return {**REFERENCES, **{name: f"{name}_" for name in config.compare_with}}


def _compare(
    config: EvaluationConfig,
    matrix: np.ndarray,
    columns: Sequence[tuple[str, str, int]],
    index: Mapping[tuple[str, str, int], int],
    means: np.ndarray,
    draws: np.ndarray,
    rng: np.random.Generator,
    rows: list[dict[str, Any]],
    reference: str,
    prefix: str,
) -> None:
    """Add the paired comparison with ``reference`` (delta, lift, intervals, p-value, MDE) to ``rows``."""
    base = [index.get((reference, target, k), -1) for _, target, k in columns]
    paired = [i for i, b in enumerate(base) if b >= 0 and i != b]
    if not paired:
        return
    differences = matrix[:, paired] - matrix[:, [base[i] for i in paired]]
    p_values = np.full(len(paired), np.nan)
    if len(matrix):
        p_values = sign_flip_p_values(differences, config.permutation_samples, rng)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a column without two requests has no spread
        spread = np.nanstd(differences, axis=0, ddof=1)
    for j, i in enumerate(paired):
        comparison = _lift(config, means, draws, i, base[i])
        comparison["p_value"] = float(p_values[j])
        comparison["delta_sd"] = float(spread[j])
        mde = minimum_detectable_effect(spread[j], rows[i]["requests"], config.alpha, config.power)
        comparison["mde_relative"] = mde / means[base[i]] if means[base[i]] else math.nan
        rows[i].update({prefix + key: value for key, value in comparison.items()})


def _lift(config: EvaluationConfig, means: np.ndarray, draws: np.ndarray, i: int, b: int) -> dict[str, float]:
    with np.errstate(invalid="ignore", divide="ignore"):
        delta_low, delta_high = percentile_interval(draws[:, i] - draws[:, b], config.confidence_level)
        lift_low, lift_high = percentile_interval(draws[:, i] / draws[:, b] - 1.0, config.confidence_level)
        lift = means[i] / means[b] - 1.0 if means[b] else math.nan
    return {
        "delta": means[i] - means[b],
        "delta_ci_low": float(delta_low),
        "delta_ci_high": float(delta_high),
        "lift": lift,
        "lift_ci_low": float(lift_low),
        "lift_ci_high": float(lift_high),
    }


def _gain_captured(means: np.ndarray, i: int, index: Mapping, target: str, k: int) -> dict[str, float]:
    """(model - random) / (oracle - random): the share of the achievable gain over random, NaN without an oracle.

    ``gain_captured`` is measured against the position-free oracle when there
    is one (the bound a ranker that cannot see the position can reach), else
    against the oracle; ``gain_captured_with_position`` against the oracle
    (on simulated data: the logged probabilities, position effect included).
    """
    random, oracle = index.get((RANDOM_NAME, target, k)), index.get((ORACLE_NAME, target, k))
    bounds = {"gain_captured": index.get((ORACLE_POSITION_FREE_NAME, target, k), oracle)}
    bounds["gain_captured_with_position"] = oracle
    shares = dict.fromkeys(bounds, math.nan)
    for key, bound in bounds.items():
        if bound is not None and random is not None and means[bound] - means[random] > 0:
            shares[key] = (means[i] - means[random]) / (means[bound] - means[random])
    return shares


def _auc_rows(
    config: EvaluationConfig,
    spec: FeatureSpec,
    labels: Mapping[str, np.ndarray],
    modules: np.ndarray,
    scores: Mapping[str, Mapping[str, np.ndarray]],
    primary: PrimaryMetric,
) -> list[dict[str, Any]]:
    """AUC of every (model, task), overall and per module; when AUC is the primary metric, its task's rows
    also get intervals and the paired comparisons the blessing reads (:func:`_compare_aucs`)."""
    names, codes = np.unique(modules, return_inverse=True)
    subsets = [(ALL_MODULES, np.arange(len(modules)))]
    subsets += [(name, np.flatnonzero(codes == code)) for code, name in enumerate(names.tolist())]
    overall = np.zeros(len(modules), dtype=np.int64)
    rows = []
    for model, model_scores in scores.items():
        for task in spec.task_names:
            if task not in model_scores:
                continue
            order = np.argsort(model_scores[task], kind="stable")
            values = [m.auc_per_subset(labels[task], model_scores[task], overall, 1, order)[0]]
            values += list(m.auc_per_subset(labels[task], model_scores[task], codes, len(names), order))
            for (subset, _), value in zip(subsets, values, strict=True):
                rows.append({"model": model, "subset": subset, "task": task, "metric": "auc", "value": value})
    if primary.metric == "auc":
        for index, (subset, members) in enumerate(subsets):
            subset_rows = [row for row in rows if row["subset"] == subset and row["task"] == primary.task]
            rng = np.random.default_rng([config.seed, index, 2])
            _compare_aucs(config, labels[primary.task][members], scores, primary.task, members, subset_rows, rng)
    return _json_safe(rows)


def _compare_aucs(
    config: EvaluationConfig,
    labels: np.ndarray,
    scores: Mapping[str, Mapping[str, np.ndarray]],
    task: str,
    members: np.ndarray,
    rows: list[dict[str, Any]],
    rng: np.random.Generator,
) -> None:
    """Add to one subset's AUC rows of a task what NDCG rows carry: the interval, the rows and positives
    (each row is its own request), and against each reference the paired delta and lift with their
    intervals, a two-sided p-value and the minimum detectable effect, all from :func:`auc_draws`."""
    if not rows or not len(members):
        return
    matrix = np.column_stack([scores[row["model"]][task][members] for row in rows])
    draws = auc_draws(labels, matrix, config.bootstrap_samples, rng)
    low, high = percentile_interval(draws, config.confidence_level)
    means = np.array([math.nan if row["value"] is None else row["value"] for row in rows], dtype=np.float64)
    positives = int(np.sum(labels > 0))
    for i, row in enumerate(rows):
        row.update(ci_low=low[i], ci_high=high[i], requests=len(members), excluded_requests=0, positives=positives)
    index = {row["model"]: i for i, row in enumerate(rows)}
    for reference, prefix in _references(config).items():
        b = index.get(reference)
        for i, row in enumerate(rows):
            if b is None or i == b:
                continue
            comparison = _lift(config, means, draws, i, b)
            differences = draws[:, i] - draws[:, b]
            comparison["p_value"] = p_value_of_draws(differences)
            # The MDE's formula divides a per-request spread by sqrt(requests): give it the draws' spread so.
            comparison["delta_sd"] = float(np.nanstd(differences, ddof=1) * math.sqrt(len(members)))
            mde = minimum_detectable_effect(comparison["delta_sd"], len(members), config.alpha, config.power)
            comparison["mde_relative"] = mde / means[b] if means[b] else math.nan
            row.update({prefix + key: value for key, value in comparison.items()})


def _calibration_rows(
    config: EvaluationConfig,
    spec: FeatureSpec,
    labels: Mapping[str, np.ndarray],
    scores: Mapping[str, Mapping[str, np.ndarray]],
    probability_models: Sequence[str],
) -> list[dict[str, Any]]:
    rows = []
    for model in probability_models:
        for task in spec.task_names:
            if task in scores[model]:
                curve = m.calibration(labels[task], scores[model][task], config.calibration_bins)
                rows.append({"model": model, "task": task, **dataclasses.asdict(curve)})
    return rows


def _notes(spec: FeatureSpec, scorers: Sequence[Scorer], primary: PrimaryMetric) -> list[str]:
    notes = [
        "Ties: candidates with equal scores share the discounts of their positions (expected DCG under a "
        "random tie break), so results never depend on row order.",
        "Requests without a positive for a target are excluded from that target's NDCG and counted.",
    ]
    not_probabilities = [scorer.name for scorer in scorers if not scorer.outputs_probabilities]
    if not_probabilities:
        notes.append(
            f"No calibration for {', '.join(not_probabilities)}: their scores are ranking scores "
            "(LambdaRank outputs are unbounded and only order candidates within a request), not probabilities."
        )
    if not spec.has_groups:
        notes.append("The data has no request groups: NDCG is undefined, models are compared on AUC only.")
    notes.append(f"Primary metric: {primary.task} {primary.metric}.")
    return notes


def write_outputs(result: EvaluationResult, paths: ReportPaths) -> None:
    """Write ``metrics.json``, ``blessing.json`` and the self-contained ``report.html``."""
    from components.evaluation.report import render_html

    for path in (paths.html, paths.metrics, paths.blessing):
        path.parent.mkdir(parents=True, exist_ok=True)
    paths.metrics.write_text(json.dumps(result.to_dict(), indent=2, allow_nan=False) + "\n")
    paths.blessing.write_text(json.dumps(_json_safe(result.blessing.to_dict()), indent=2, allow_nan=False) + "\n")
    paths.html.write_text(render_html(result))


SAVED_MODEL_FILE = "saved_model.pb"


def check_sources(
    examples_dir: str | Path,
    split: str,
    models: Mapping[str, str | Path | Scorer],
    baseline_dir: str | Path,
    oracle_uri: str | None = None,
    champion: str | Path | Scorer | None = None,
) -> None:
    """Refuse, before any model is loaded, inputs that are missing or of another schema than the examples.

    Every model folder (the champion's included) and the baseline must exist and have the examples'
    features and tasks; the split must have shards; the oracle must be a folder, parquet file or glob.
    """
    require_split(examples_dir, split)
    schema = _schema(_spec_json(examples_dir, "examples"))
    for label, folder in _model_folders(models, champion).items():
        require_saved_model(label, folder)
        _require_schema(label, folder, schema, subset=label == CHAMPION_NAME)
    require_baseline(baseline_dir)
    _require_schema("baseline", baseline_dir, schema)
    if oracle_uri:
        _require_oracle_path(oracle_uri)


def check_lineage(
    examples_dir: str | Path, models: Mapping[str, str | Path | Scorer], baseline_dir: str | Path
) -> None:
    """Refuse a model (candidate or peer, not the champion) or baseline trained on other examples.

    They must have been trained on these very examples: the SHA-256 of their ``feature_spec.json``
    (:func:`trainer.digest.json_sha256`, as ``blessing.json`` records it) must be the examples'.
    The champion is normally trained on older data: :func:`check_sources` only checks its schema.
    """
    from trainer.digest import json_sha256

    expected = json_sha256(_spec_json(examples_dir, "examples"))
    trained = {**_model_folders(models, None), "baseline": str(baseline_dir)}
    for label, folder in trained.items():
        if label == "baseline":
            require_baseline(folder)
        else:
            require_saved_model(label, folder)
        digest = json_sha256(_spec_json(folder, label))
        if digest != expected:
            raise InvalidValueError(
                f"{label} {folder} was trained on other examples than {examples_dir}: its feature spec's "
                f"SHA-256 is {digest[:12]}, the examples' {expected[:12]} (train it on these examples)"
            )


def _model_folders(models: Mapping[str, str | Path | Scorer], champion: str | Path | Scorer | None) -> dict[str, str]:
    """``{"model 'mmoe'": folder, "champion": folder}`` of the models given as folders (not as scorers)."""
    folders = {f"model {name!r}": str(model) for name, model in models.items() if isinstance(model, str | Path)}
    if isinstance(champion, str | Path):
        folders[CHAMPION_NAME] = str(champion)
    return folders


def require_saved_model(label: str, folder: str | Path) -> None:
    """A :class:`MissingInputError` when ``folder`` holds no SavedModel (e.g. it is a baseline)."""
    from trainer.digest import path_exists

    if not path_exists(f"{str(folder).rstrip('/')}/{SAVED_MODEL_FILE}"):
        raise MissingInputError(f"{label}: no SavedModel at {folder}: train one with `ranker train`")


def require_baseline(folder: str | Path) -> dict[str, Any]:
    """The baseline's manifest; a :class:`MissingInputError` when there is none (e.g. ``folder`` is a model)."""
    try:
        return load_manifest(folder)
    except FileNotFoundError as error:
        raise MissingInputError(f"baseline: {error}") from None


def require_split(examples_dir: str | Path, split: str) -> None:
    """A :class:`MissingInputError` naming ``split`` and the splits there are, when it has no shards."""
    from trainer.examples import SHARD_PATTERN, shard_paths

    try:
        shard_paths(examples_dir, split)
    except FileNotFoundError:
        import tensorflow as tf

        shards = tf.io.gfile.glob(f"{str(examples_dir).rstrip('/')}/*/{SHARD_PATTERN}")
        there = sorted({Path(path).parent.name for path in shards})
        raise MissingInputError(
            f"examples {examples_dir} have no {split!r} split (no {SHARD_PATTERN} in {split}/); "
            f"splits there: {', '.join(there) or 'none'}"
        ) from None


def _spec_json(folder: str | Path, label: str) -> dict[str, Any]:
    """The ``feature_spec.json`` of ``folder``; a :class:`MissingInputError` naming ``label`` without one."""
    from trainer.digest import path_exists, read_json

    path = f"{str(folder).rstrip('/')}/{FEATURE_SPEC_FILE}"
    if not path_exists(path):
        raise MissingInputError(f"{label} {folder} has no {FEATURE_SPEC_FILE}: cannot tell what it was trained on")
    return read_json(path)


def _schema(spec: Mapping[str, Any]) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """What a model must agree on with the examples: the features (name, kind) and the tasks."""
    features = tuple((feature["name"], feature.get("kind", "")) for feature in spec.get("features", []))
    return features, tuple(task["name"] for task in spec.get("tasks", []))


def _require_schema(label: str, folder: str | Path, schema: tuple[tuple, tuple], subset: bool = False) -> None:
    """An :class:`InvalidValueError` when ``folder``'s tasks, or features (name and kind), are not the examples'
    ``schema``. With ``subset`` (the champion, trained before a feature was added) its features need only be
    among the examples': it scores from those columns."""
    features, tasks = _schema(_spec_json(folder, label))
    if tasks != schema[1]:
        raise InvalidValueError(
            f"{label} {folder} has other tasks than the examples: {', '.join(tasks)} vs {', '.join(schema[1])}"
        )
    mine, examples = set(features), set(schema[0])
    differ = sorted(mine - examples if subset else mine ^ examples)
    if differ:
        names = [name for name, _ in differ]
        raise InvalidValueError(
            f"{label} {folder} has other features than the examples ({len(differ)} differ, e.g. "
            f"{', '.join(names[:3])}): it was made for another dataset"
        )


def require_champion_schema(champion: str | Path, examples_spec: Mapping[str, Any]) -> None:
    """The schema check :func:`check_sources` applies to the champion, for callers holding the examples' feature
    spec (``resolve-champion``, before the champion is handed to the evaluation): an :class:`InvalidValueError`
    when its tasks are not those of ``examples_spec`` or its features are not among theirs, a
    :class:`MissingInputError` when it has no ``feature_spec.json``."""
    _require_schema(CHAMPION_NAME, champion, _schema(examples_spec), subset=True)


def _require_oracle_path(oracle_uri: str) -> None:
    """Refuse an oracle that is a local file but not a parquet file (a folder, a ``.parquet`` file or a glob)."""
    from trainer.digest import local_view

    local = local_view(oracle_uri)
    if local is not None and Path(local).is_file() and not oracle_uri.endswith(".parquet"):
        raise InvalidValueError(f"oracle {oracle_uri} is a file, not a folder of parquet files (or a .parquet file)")


def load_oracle(oracle_uri: str, spec: FeatureSpec) -> list[OracleScorer]:
    """:meth:`OracleScorer.load_all`, its errors the user's, and every probability checked to be in [0, 1]."""
    _require_oracle_path(oracle_uri)
    try:
        scorers = OracleScorer.load_all(oracle_uri, spec)
    except FileNotFoundError as error:
        raise MissingInputError(f"oracle: {error}") from None
    except ValueError as error:
        raise InvalidValueError(str(error)) from None
    for scorer in scorers:
        _require_probabilities(oracle_uri, scorer)
    return scorers


def _require_probabilities(oracle_uri: str, scorer: OracleScorer) -> None:
    """An :class:`InvalidValueError` naming the oracle and its column when a value is missing or outside [0, 1]."""
    from components.data.simulator import oracle_column

    position_free = scorer.name == ORACLE_POSITION_FREE_NAME
    for task in scorer.task_names:
        values = scorer.table[oracle_column(task)].to_numpy(np.float64)
        column = oracle_column(task, position_free=position_free)
        missing = int(np.sum(~np.isfinite(values)))
        if missing:
            raise InvalidValueError(f"oracle {oracle_uri}: column {column} has {missing} missing or non-finite values")
        outside = int(np.sum((values < 0) | (values > 1)))
        if outside:
            raise InvalidValueError(
                f"oracle {oracle_uri}: column {column} has {outside} values outside [0, 1] "
                f"(from {values.min():g} to {values.max():g}): it must hold probabilities"
            )


def _json_safe(value: Any) -> Any:
    """NaN and infinities become null (JSON has neither); NumPy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
