"""The GBDT baseline: LightGBM rankers per (module, target) and one global ranker per target.

The per-module rankers are the legacy "one ranker per surface" world the
canonical MMoE replaces; the global ranker (the module as a categorical
feature) is the strongest honest tree baseline. Every target of
:func:`ranker_core.targets.targets` gets a model: each task (binary
relevance) and graded engagement. With request groups engagement uses
LambdaRank (query groups from ``request_id``) and each task ``task_objective``
(LambdaRank by default, or binary log-loss on the rows of requests with a
positive), all early-stopped on NDCG of the eval split's requests; without
groups every model is binary log-loss.

The baseline must be a fair competitor:

* row order never matters: within each request rows reach LightGBM in a seeded
  hash order of their content, never the logged order (see :func:`_row_order`),
  and the logged ``position`` is never a feature;
* every global model is tuned: a seeded random search
  (:mod:`components.baseline.tuning`) on the eval split under a CPU-time budget,
  recorded in ``manifest["tuning"]``; a per-module model keeps the config or its
  target's global choice, whichever scores better on the module's eval rows;
* every model entry records ``best_iteration``, ``eval_scores`` and the
  LightGBM ``params`` it was trained with.

Each model family (global, one module) is binned once; every target trains on a
``Dataset.subset`` of those bins. Models train side by side, one per core, each
on one thread (:func:`_in_parallel`). Tuning trials train on a seeded sample of
whole requests (``tuning_sample_rows``), early-stop on a sample of the eval requests
(``tuning_eval_rows``), and the winner is refit on every row.

A module with too little training data for a target (the held-out module, a
module missing from train, too few requests with a positive) falls back to the
global model, and ``manifest.json`` says which and why::

    manifest = train_baseline(BaselineConfig(n_estimators=200), "work/examples", "work/baseline")
    manifest["fallbacks"]   # [{"module": "email", "target": "purchase", "reason": "..."}]

Output layout: ``<out>/per_module/<module>/<target>.txt``, ``<out>/global/<target>.txt``
(LightGBM text models with feature names), ``<out>/manifest.json`` and a copy of
the ``feature_spec.json`` it was trained with.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import lightgbm as lgb
import numpy as np
import pandas as pd

from components.baseline.encoding import FeatureEncoder
from components.baseline.tuning import SEARCH_SPACE, SearchResult, draw_candidates, search
from ranker_core.cli_support import InvalidValueError, MissingInputError
from ranker_core.schema import FEATURE_SPEC_FILE, MODULE, REQUEST_ID, FeatureSpec, label_key
from ranker_core.step_configs import BaselineConfig
from ranker_core.targets import ENGAGEMENT, target_labels, targets
from trainer.examples import read_split

log = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
GLOBAL_DIR = "global"
PER_MODULE_DIR = "per_module"


@dataclasses.dataclass
class _Split:
    """An encoded split, its rows grouped by request (LightGBM's query groups are contiguous)."""

    matrix: np.ndarray
    columns: dict[str, np.ndarray]
    request: np.ndarray

    @classmethod
    def read(
        cls, examples_dir: str | Path, split: str, spec: FeatureSpec, encoder: FeatureEncoder, seed: int
    ) -> _Split:
        """Read and encode ``split``, rows grouped by request in a seeded random order (:func:`_row_order`)."""
        columns = read_split(examples_dir, split, _only_sources(spec, encoder))
        matrix = encoder.encode(columns)
        request = pd.factorize(columns[REQUEST_ID], sort=True)[0]  # np.unique's codes, by hashing
        labels = np.column_stack([columns[label_key(task)] for task in spec.task_names])
        order = _row_order(request, matrix, labels, seed)
        kept = (MODULE, *(label_key(task) for task in spec.task_names))  # the columns later steps read
        return cls(matrix[order], {key: columns[key][order] for key in kept}, request[order])

    def rows_of(self, module: str) -> np.ndarray:
        return np.flatnonzero(self.columns[MODULE] == module)

    def group_sizes(self, rows: np.ndarray) -> np.ndarray:
        _, sizes = np.unique(self.request[rows], return_counts=True)
        return sizes

    def in_positive_request(self, rows: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Per row of ``rows``: does its request have at least one positive label?"""
        positives = np.bincount(self.request[rows], weights=labels[rows] > 0, minlength=len(self.request))
        return positives[self.request[rows]] > 0

    def positive_count(self, rows: np.ndarray, labels: np.ndarray, ranking: bool) -> int:
        if not ranking:
            return int((labels[rows] > 0).sum())
        return len(np.unique(self.request[rows][labels[rows] > 0]))


def _only_sources(spec: FeatureSpec, encoder: FeatureEncoder) -> FeatureSpec:
    """``spec`` with only the features the encoder reads: dropped ones (hashed ids) are never parsed."""
    sources = {column.source for column in encoder.columns}
    return dataclasses.replace(spec, features=[feature for feature in spec.features if feature.name in sources])


def _row_order(request: np.ndarray, matrix: np.ndarray, labels: np.ndarray, seed: int) -> np.ndarray:
    """Rows grouped by request and, within a request, ordered by a seeded hash of their features and task labels.

    LightGBM's NDCG breaks score ties by row order and the logged order (the production ranker's) is a
    strong ranker: kept, it flatters the first trees and stops early stopping at one tree. A hash of the
    row's content is a random order that does not depend on how rows were logged or stored (the logged
    ``position`` is no feature), so the same rows in any order train the same models. Rows with equal
    features and labels may keep their input order: swapping them changes nothing.
    """
    features = _hash_rows(matrix)
    key = pd.util.hash_array(features ^ _hash_rows(np.column_stack([labels, np.full(len(labels), seed)])))
    return np.lexsort((key, request))


def _hash_rows(matrix: np.ndarray) -> np.ndarray:
    """One 64-bit hash per row of a 2-D array."""
    return pd.util.hash_pandas_object(pd.DataFrame(matrix, copy=False), index=False).to_numpy()


@dataclasses.dataclass
class _Binned:
    """Some rows of a split binned once into a LightGBM Dataset; each target trains on a subset of it.

    Binning is the costly part of building a Dataset and only the labels differ between targets, so
    ``Dataset.subset`` (which copies the binned rows and keeps the bin mappers) serves every target.
    """

    split: _Split
    rows: np.ndarray
    dataset: lgb.Dataset

    @classmethod
    def build(cls, split: _Split, rows: np.ndarray, features: list[int], columns: _Columns, reference=None) -> _Binned:
        everything = len(rows) == len(split.request) and len(features) == split.matrix.shape[1]
        matrix = split.matrix if everything else split.matrix[np.ix_(rows, features)]
        dataset = lgb.Dataset(
            matrix,
            label=np.zeros(len(rows)),
            group=split.group_sizes(rows) if columns.ranking else None,
            feature_name=columns.names,
            categorical_feature=columns.categorical,
            params=columns.params,
            reference=reference,
            free_raw_data=True,
        )
        return cls(split, rows, dataset)

    def for_target(self, target: str, spec: FeatureSpec, max_rows: int = 0, seed: int = 0) -> lgb.Dataset | None:
        """The rows ``target`` trains (or early-stops) on with its labels; None when there are none.

        With request groups only requests with a positive: the others have no pair to learn from, and
        LightGBM scores their NDCG as 1, which would flatten the early-stopping metric. With
        ``max_rows`` a seeded sample of whole requests of at most that many rows.
        """
        labels = target_labels(self.split.columns, target, spec.task_names)
        keep = self.split.in_positive_request(self.rows, labels) if spec.has_groups else np.ones(len(self.rows), bool)
        kept = np.flatnonzero(keep)
        if not len(kept):
            return None
        if max_rows and len(kept) > max_rows:
            kept = _sample_requests(kept, self.split.request[self.rows[kept]], max_rows, seed)
        return self.dataset.subset(kept).construct().set_label(labels[self.rows[kept]])


def _sample_requests(rows: np.ndarray, request: np.ndarray, max_rows: int, seed: int) -> np.ndarray:
    """``rows`` of seeded randomly drawn whole requests, at most ``max_rows`` of them, in their order.

    >>> _sample_requests(np.arange(6), np.array([0, 0, 1, 1, 2, 2]), max_rows=4, seed=0).size
    4
    """
    ids, sizes = np.unique(request, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(ids))
    chosen = ids[order[np.cumsum(sizes[order]) <= max_rows]]
    return rows[np.isin(request, chosen)]


@dataclasses.dataclass
class _Columns:
    """The feature columns one model family uses and how its Datasets are built."""

    names: list[str]
    categorical: list[str]
    ranking: bool
    params: dict[str, Any]


@dataclasses.dataclass
class _Trainer:
    """Bins the rows of a model family once and fits one LightGBM model per target on them."""

    config: BaselineConfig
    spec: FeatureSpec
    encoder: FeatureEncoder
    train: _Split
    eval: _Split | None

    def bin(self, train_rows: np.ndarray, eval_rows: np.ndarray | None, features: list[int]):
        """Binned train rows, and eval rows binned with train's bin mappers (None without eval rows)."""
        names = [self.encoder.names[i] for i in features]
        categorical = [name for name in self.encoder.categorical_names if name in names]
        columns = _Columns(names, categorical, self.spec.has_groups, self.config.dataset_params())
        train = _Binned.build(self.train, train_rows, features, columns)
        if self.eval is None or eval_rows is None or not len(eval_rows):
            return train, None
        return train, _Binned.build(self.eval, eval_rows, features, columns, reference=train.dataset)

    def datasets(self, binned: tuple[_Binned, _Binned | None], target: str) -> tuple[lgb.Dataset, lgb.Dataset | None]:
        """The train and eval Datasets of ``target`` (eval None without eval rows with a positive)."""
        train, evaluation = binned
        train_set = train.for_target(target, self.spec)
        if train_set is None:
            unit = "request" if self.spec.has_groups else "row"
            raise InvalidValueError(f"no training {unit} has a positive {target!r} to learn from")
        return train_set, None if evaluation is None else evaluation.for_target(target, self.spec)

    def search_job(
        self,
        target: str,
        binned: tuple[_Binned, _Binned | None],
        sets: tuple[lgb.Dataset, lgb.Dataset | None],
        candidates: list[dict[str, Any]],
        budget_seconds: float = math.inf,
    ) -> Callable[[], SearchResult]:
        """A job that keeps the best of ``candidates`` (config overrides) for ``target`` on the eval rows.

        ``sets`` are ``datasets(binned, target)``. Every Dataset is built here, in the calling thread;
        the job only trains. With more than one candidate, trials train on a sample of ``binned`` when it
        has more rows than ``tuning_sample_rows`` and early-stop on a sample of its eval rows when there
        are more than ``tuning_eval_rows``; the winner is then refit on ``sets``.
        """
        trial_sets = list(sets)
        limits = (self.config.tuning_sample_rows, self.config.tuning_eval_rows)
        for i, (rows, data, limit) in enumerate(zip(binned, sets, limits, strict=True)):
            if len(candidates) > 1 and limit and data is not None and data.num_data() > limit:
                trial_sets[i] = rows.for_target(target, self.spec, limit, self.config.seed + i)

        def fit_on(train_set: lgb.Dataset, eval_set: lgb.Dataset | None):
            def fit(overrides: Mapping[str, Any]):
                config = self.config.replace(**overrides)
                return (*self.fit(config, target, train_set, eval_set), self.tuned_values(config))

            return fit

        def job() -> SearchResult:
            metric = self.config.eval_metric(self.spec.has_groups)
            result = search(fit_on(*trial_sets), candidates, metric, budget_seconds)
            return result if tuple(trial_sets) == tuple(sets) else result.refit(fit_on(*sets))

        return job

    @staticmethod
    def tuned_values(config: BaselineConfig) -> dict[str, Any]:
        """The values of the fields tuning searches."""
        return {field: getattr(config, field) for field in SEARCH_SPACE}

    def fit(self, config: BaselineConfig, target: str, train_set: lgb.Dataset, eval_set: lgb.Dataset | None):
        """One model for ``target`` trained with ``config``: the booster and its manifest summary."""
        params = config.lightgbm_params(self.spec.has_groups, len(self.spec.tasks), graded=target == ENGAGEMENT)
        valid_sets, callbacks = [], []
        if eval_set is not None:
            valid_sets = [eval_set]
            callbacks = [lgb.early_stopping(config.early_stopping_rounds, verbose=False)]
        booster = lgb.train(
            params, train_set, num_boost_round=config.n_estimators, valid_sets=valid_sets, callbacks=callbacks
        )
        eval_scores = {name: float(value) for name, value in booster.best_score.get("valid_0", {}).items()}
        summary = {
            "best_iteration": int(booster.best_iteration or booster.current_iteration()),
            "train_rows": train_set.num_data(),
            "eval_rows": 0 if eval_set is None else eval_set.num_data(),
            "eval_scores": eval_scores,
            "params": params,
        }
        return booster, summary


def train_baseline(config: BaselineConfig, examples_dir: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Train every per-module and global model, save them and return the manifest (see the module docstring)."""
    examples_dir, out_dir = Path(examples_dir), Path(out_dir)
    stamps = [time.perf_counter()]
    spec = FeatureSpec.load(examples_dir)  # no feature spec: not examples at all, which says more than a split
    require_splits(examples_dir)
    encoder = FeatureEncoder.from_spec(spec, hashed=config.hashed, max_list_tokens=config.max_list_tokens)
    trainer = _Trainer(config, spec, encoder, *_read_splits(examples_dir, spec, encoder, config.seed))
    stamps.append(time.perf_counter())
    out_dir.mkdir(parents=True, exist_ok=True)
    global_models, tuning, chosen = _train_global(trainer, out_dir)
    stamps.append(time.perf_counter())
    manifest: dict[str, Any] = {
        "format_version": 1,
        "objective": {
            target: config.objective(spec.has_groups, graded=target == ENGAGEMENT) for target in targets(spec)
        },
        "outputs_probabilities": not spec.has_groups,
        "tasks": list(spec.task_names),
        "targets": list(targets(spec)),
        "config": config.to_dict(),
        "encoder": encoder.to_dict(),
        "global": global_models,
        "tuning": tuning,
        "per_module": {},
        "fallbacks": [],
    }
    manifest["per_module"], manifest["fallbacks"] = _train_per_module(trainer, chosen, out_dir)
    stamps.append(time.perf_counter())
    phases = zip(("read", "global", "per_module"), stamps[:-1], stamps[1:], strict=True)
    manifest["seconds"] = {phase: round(end - start, 3) for phase, start, end in phases}
    shutil.copyfile(examples_dir / FEATURE_SPEC_FILE, out_dir / FEATURE_SPEC_FILE)
    (out_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    log.info("baseline: %d per-module fallbacks, models in %s", len(manifest["fallbacks"]), out_dir)
    return manifest


REQUIRED_SPLITS = {
    "train": "nothing to train the baselines on",
    "eval": "the baselines' early stopping and tuning need it",
}
"""The splits the baseline reads, and why each is needed (the error when one is missing says it)."""


def require_splits(examples_dir: Path) -> None:
    """Fail in one line, before any split is read or model trained, when the examples lack a train or eval split.

    Without eval rows every model would train all ``n_estimators`` rounds untuned: an overfit baseline
    that the blessing would be judged against without a word.
    """
    present = _splits_present(examples_dir)
    for split, why in REQUIRED_SPLITS.items():
        if split not in present:
            raise MissingInputError(f"{examples_dir} has no {split} split: {why}; extract the features again")


def _read_splits(examples_dir: Path, spec: FeatureSpec, encoder: FeatureEncoder, seed: int) -> tuple[_Split, _Split]:
    """The train and eval splits (:func:`require_splits` has checked they are there)."""
    splits = []
    for offset, split in enumerate(REQUIRED_SPLITS):
        read = _Split.read(examples_dir, split, spec, encoder, seed + offset)
        if not len(read.request):
            raise InvalidValueError(f"{examples_dir}/{split} holds no examples: {REQUIRED_SPLITS[split]}")
        splits.append(read)
    return splits[0], splits[1]


def _splits_present(examples_dir: Path) -> set[str]:
    return {path.name for path in examples_dir.iterdir() if path.is_dir() and any(path.glob("part-*"))}


def _modules(spec: FeatureSpec, train: _Split) -> list[str]:
    """Modules of the spec, the held-out one, any seen in train, then any seen only in another split (a surface
    added after the training days: it falls back, and the manifest says so), in a stable order."""
    seen = list(dict.fromkeys([*spec.modules, *([spec.held_out_module] if spec.held_out_module else [])]))
    seen += sorted(set(np.unique(train.columns[MODULE]).tolist()) - set(seen))
    return seen + sorted(set().union(*(counts.rows_per_module for counts in spec.splits.values())) - set(seen))


def _train_global(trainer: _Trainer, out_dir: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Tune and train the global model of every target.

    Returns the manifest's ``global`` and ``tuning`` objects and the tuned values chosen per target.
    Each target's search gets an equal share of ``tuning_budget_seconds`` (CPU seconds of the thread
    it trains on), so the trials run do not depend on how busy the machine is or how many cores it has.
    """
    config, all_targets = trainer.config, targets(trainer.spec)
    binned = trainer.bin(
        np.arange(len(trainer.train.request)),
        None if trainer.eval is None else np.arange(len(trainer.eval.request)),
        list(range(len(trainer.encoder.columns))),
    )
    candidates = draw_candidates(max(config.tuning_trials, 1), config.seed)
    budget = config.tuning_budget_seconds / len(all_targets)
    started = time.perf_counter()
    sets = {target: trainer.datasets(binned, target) for target in all_targets}
    largest_first = sorted(all_targets, key=lambda target: -sets[target][0].num_data())
    jobs = [trainer.search_job(target, binned, sets.pop(target), candidates, budget) for target in largest_first]
    results = dict(zip(largest_first, _in_parallel(jobs, config.threads()), strict=True))
    models = {}
    for target in all_targets:
        log.info("global %s: %s", target, _brief(results[target].summary))
        path = _save(results[target].booster, out_dir / GLOBAL_DIR / f"{target}.txt", out_dir)
        models[target] = {"path": path, **results[target].summary}
    tuning = {
        "trials": config.tuning_trials,
        "budget_seconds": config.tuning_budget_seconds,
        "sample_rows": config.tuning_sample_rows,
        "eval_rows": config.tuning_eval_rows,
        "seconds": round(time.perf_counter() - started, 3),
        "scope": "global models; a per-module model keeps the config or its target's global choice, "
        "whichever scores better on the module's eval rows",
        "targets": {target: results[target].record() for target in all_targets} if config.tuning_trials > 0 else {},
    }
    return models, tuning, {target: results[target].values for target in all_targets}


def _brief(summary: Mapping[str, Any]) -> dict[str, Any]:
    """A model summary without its parameters, for the log."""
    return {key: value for key, value in summary.items() if key != "params"}


def _train_per_module(
    trainer: _Trainer, chosen: Mapping[str, Mapping[str, Any]], out_dir: Path
) -> tuple[dict[str, dict[str, Any]], list[dict[str, str]]]:
    """Every module's models (see :func:`_module_candidates`), or why a target falls back; and the fallbacks."""
    models: dict[str, dict[str, Any]] = {}
    fallbacks: list[dict[str, str]] = []
    jobs: dict[tuple[str, str], Callable[[], SearchResult]] = {}
    for module in _modules(trainer.spec, trainer.train):
        models[module] = {}
        train_rows = trainer.train.rows_of(module)
        binned = None
        for target in targets(trainer.spec):
            reason = _fallback_reason(trainer, module, target, train_rows)
            if reason:
                models[module][target] = {"fallback": reason}
                fallbacks.append({"module": module, "target": target, "reason": reason})
                continue
            if binned is None:
                eval_rows = None if trainer.eval is None else trainer.eval.rows_of(module)
                binned = trainer.bin(train_rows, eval_rows, trainer.encoder.without_module())
            sets = trainer.datasets(binned, target)
            candidates = _module_candidates(trainer, chosen[target], sets[0].num_data())
            jobs[module, target] = trainer.search_job(target, binned, sets, candidates)
    for (module, target), result in zip(jobs, _in_parallel(list(jobs.values()), trainer.config.threads()), strict=True):
        path = out_dir / PER_MODULE_DIR / _safe_dir(module) / f"{target}.txt"
        models[module][target] = {"path": _save(result.booster, path, out_dir), **result.summary}
    return models, fallbacks


def _module_candidates(trainer: _Trainer, global_choice: dict[str, Any], train_rows: int) -> list[dict[str, Any]]:
    """What a per-module model tries: the config as given, then its target's global choice (when tuned).

    The global search ran on every module's rows together: its choice (``min_data_in_leaf`` above
    all) may not suit one module's fewer rows, so the module's own eval rows pick between the two. A
    choice whose ``min_data_in_leaf`` leaves no room for a split of the module's rows is not tried: it
    can only make a constant model, which scores like a random ranker.
    """
    tuned = trainer.config.tuning_trials > 0 and global_choice != trainer.tuned_values(trainer.config)
    return [{}, global_choice] if tuned and 2 * global_choice["min_data_in_leaf"] <= train_rows else [{}]


Result = TypeVar("Result")


def _in_parallel(jobs: Sequence[Callable[[], Result]], workers: int) -> list[Result]:
    """Run ``jobs`` on ``workers`` threads, results in job order.

    Each model trains on one thread and LightGBM releases the GIL while it trains, so models run side
    by side on the cores. That beats one model on every core by OpenMP: on shared cores a thread that
    waits at a barrier for a preempted one wastes its core (docs/evaluation.md, "Speed"). Trees do not
    depend on which thread or in what order a model trained.
    """
    if workers <= 1 or len(jobs) <= 1:
        return [job() for job in jobs]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda job: job(), jobs))


def _fallback_reason(trainer: _Trainer, module: str, target: str, train_rows: np.ndarray) -> str:
    config, spec = trainer.config, trainer.spec
    if module == spec.held_out_module:
        return "held out of training: scored by the global model"
    if not len(train_rows):
        splits = [split for split, counts in spec.splits.items() if counts.rows_per_module.get(module)]
        return f"not in the training split (only in {', '.join(splits)}): scored by the global model"
    requests = len(np.unique(trainer.train.request[train_rows]))
    if requests < config.min_module_requests:
        return f"{_counted(requests, 'training request')} < min_module_requests={config.min_module_requests}"
    labels = target_labels(trainer.train.columns, target, spec.task_names)
    positives = trainer.train.positive_count(train_rows, labels, spec.has_groups)
    if positives < config.min_module_positives:
        if spec.has_groups:
            counted = f"{_counted(positives, 'training request')} with a positive"
        else:
            counted = _counted(positives, "positive training row")
        return f"{counted} < min_module_positives={config.min_module_positives}"
    if positives == 0:  # even with min_module_positives=0: there is nothing to learn from
        return f"no positive {target!r} in this module's training {'requests' if spec.has_groups else 'rows'}"
    return ""


def _counted(count: int, noun: str) -> str:
    """``1 training request``, ``3 training requests``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _safe_dir(module: str) -> str:
    """A folder name for any module name (percent-encoded; the manifest keeps the real name)."""
    return quote(module, safe="") if module not in ("", ".", "..") else f"_{quote(module, safe='')}_"


def _save(booster: lgb.Booster, path: Path, out_dir: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(path), num_iteration=booster.best_iteration or None)
    return str(path.relative_to(out_dir))


def load_manifest(baseline_dir: str | Path) -> Mapping[str, Any]:
    """Read ``manifest.json``; an error names the folder when it is missing."""
    path = Path(baseline_dir) / MANIFEST_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"no baseline manifest at {path}: run `ranker train-baseline` first") from None


def validation_metrics(manifest: Mapping[str, Any]) -> dict[str, float]:
    """Headline numbers of a manifest: the global models' eval scores and the fallback count.

    >>> validation_metrics({"global": {"click": {"eval_scores": {"ndcg@10": 0.5}}}, "fallbacks": []})
    {'global_click_ndcg@10': 0.5, 'fallbacks': 0.0}
    """
    metrics = {
        f"global_{target}_{name}": value
        for target, entry in manifest["global"].items()
        for name, value in entry.get("eval_scores", {}).items()
    }
    return {**metrics, "fallbacks": float(len(manifest["fallbacks"]))}
