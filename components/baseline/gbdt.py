"""The GBDT baseline: LightGBM rankers per (module, target) and one global ranker per target.

The per-module rankers are the legacy "one ranker per surface" world the
canonical MMoE replaces; the global ranker (the module as a categorical
feature) is the strongest honest tree baseline. Every target of
:func:`components.baseline.labels.targets` gets a model: each task (binary
relevance) and graded engagement. With request groups the objective is
LambdaRank (query groups from ``request_id``), without them it is binary
log-loss. Early stopping watches the eval split.

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
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import lightgbm as lgb
import numpy as np

from components.baseline.encoding import FeatureEncoder, HashedPolicy
from components.baseline.labels import ENGAGEMENT, engagement_gains, target_labels, targets
from trainer.examples import read_split
from trainer.overrides import config_from_sources
from trainer.schema import FEATURE_SPEC_FILE, MODULE, REQUEST_ID, FeatureSpec

log = logging.getLogger(__name__)

ENV_PREFIX = "RANKER_BASELINE_"
MANIFEST_FILE = "manifest.json"
GLOBAL_DIR = "global"
PER_MODULE_DIR = "per_module"


@dataclasses.dataclass
class BaselineConfig:
    """How the LightGBM baselines are trained (``ranker train-baseline --config-json`` sets any field).

    >>> BaselineConfig.from_json('{"num_leaves": 15}').num_leaves
    15
    """

    num_leaves: int = 31
    learning_rate: float = 0.05
    n_estimators: int = 500
    min_data_in_leaf: int = 20
    feature_fraction: float = 0.9
    lambda_l2: float = 1.0
    early_stopping_rounds: int = 50
    # LambdaRank optimises and early-stops on NDCG at this cutoff.
    eval_at: int = 10
    # A module trains its own model for a target only with at least this many training
    # requests, and this many requests with a positive (rows, when there are no groups).
    min_module_requests: int = 50
    min_module_positives: int = 20
    hashed: HashedPolicy = "drop"
    max_list_tokens: int = 64
    seed: int = 0
    # 0: LightGBM's default (all cores).
    num_threads: int = 0

    @classmethod
    def from_json(cls, text: str | None, environ: Mapping[str, str] | None = None) -> BaselineConfig:
        """Defaults <- ``RANKER_BASELINE_<FIELD>`` environment variables <- a JSON object of overrides."""
        return config_from_sources(cls, text, ENV_PREFIX, environ)

    def lightgbm_params(self, ranking: bool, target: str, task_count: int) -> dict[str, Any]:
        params: dict[str, Any] = {
            "num_leaves": self.num_leaves,
            "learning_rate": self.learning_rate,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "lambda_l2": self.lambda_l2,
            "seed": self.seed,
            "deterministic": True,
            "num_threads": self.num_threads,
            "verbosity": -1,
        }
        if not ranking:
            return {**params, "objective": "binary", "metric": "binary_logloss"}
        gains = engagement_gains([""] * task_count) if target == ENGAGEMENT else [0.0, 1.0]
        return {**params, "objective": "lambdarank", "metric": "ndcg", "eval_at": [self.eval_at], "label_gain": gains}


@dataclasses.dataclass
class _Split:
    """An encoded split, its rows sorted by request so LightGBM's query groups are contiguous."""

    matrix: np.ndarray
    columns: dict[str, np.ndarray]
    request: np.ndarray

    @classmethod
    def read(cls, examples_dir: str | Path, split: str, spec: FeatureSpec, encoder: FeatureEncoder) -> _Split:
        columns = read_split(examples_dir, split, spec)
        _, request = np.unique(columns[REQUEST_ID], return_inverse=True)
        order = np.argsort(request, kind="stable")
        columns = {key: values[order] for key, values in columns.items()}
        return cls(encoder.encode(columns), columns, request[order])

    def rows_of(self, module: str) -> np.ndarray:
        return np.flatnonzero(self.columns[MODULE] == module)

    def group_sizes(self, rows: np.ndarray) -> np.ndarray:
        _, sizes = np.unique(self.request[rows], return_counts=True)
        return sizes

    def rows_with_positive(self, rows: np.ndarray, target: str, spec: FeatureSpec) -> np.ndarray:
        """The rows (of ``rows``) whose request has at least one positive for ``target``."""
        labels = target_labels(self.columns, target, spec.task_names)
        positive_requests = np.bincount(self.request[rows], weights=labels[rows] > 0, minlength=len(self.request))
        return rows[positive_requests[self.request[rows]] > 0]

    def positive_count(self, rows: np.ndarray, labels: np.ndarray, ranking: bool) -> int:
        if not ranking:
            return int((labels[rows] > 0).sum())
        return len(np.unique(self.request[rows][labels[rows] > 0]))


@dataclasses.dataclass
class _Trainer:
    """Fits one LightGBM model on a row subset of train (and the matching eval rows)."""

    config: BaselineConfig
    spec: FeatureSpec
    encoder: FeatureEncoder
    train: _Split
    eval: _Split | None

    def fit(self, target: str, train_rows: np.ndarray, eval_rows: np.ndarray | None, features: list[int]):
        ranking = self.spec.has_groups
        if ranking:
            # A request without a positive has no pair to learn from, and LightGBM scores its NDCG as 1,
            # which would flatten the early-stopping metric: rank only requests with a positive.
            train_rows = self.train.rows_with_positive(train_rows, target, self.spec)
            eval_rows = (
                None
                if self.eval is None or eval_rows is None
                else self.eval.rows_with_positive(eval_rows, target, self.spec)
            )
        if not len(train_rows):
            raise ValueError(f"no training {'request' if ranking else 'row'} has a positive {target!r} to learn from")
        params = self.config.lightgbm_params(ranking, target, len(self.spec.tasks))
        names = [self.encoder.names[i] for i in features]
        categorical = [name for name in self.encoder.categorical_names if name in names]
        train_set = self._dataset(self.train, target, train_rows, features, names, categorical)
        valid_sets, callbacks = [], []
        if self.eval is not None and eval_rows is not None and len(eval_rows):
            valid_sets = [self._dataset(self.eval, target, eval_rows, features, names, categorical, train_set)]
            callbacks = [lgb.early_stopping(self.config.early_stopping_rounds, verbose=False)]
        booster = lgb.train(
            params, train_set, num_boost_round=self.config.n_estimators, valid_sets=valid_sets, callbacks=callbacks
        )
        return booster, self._summary(booster, train_rows, eval_rows)

    def _dataset(self, split, target, rows, features, names, categorical, reference=None) -> lgb.Dataset:
        labels = target_labels(split.columns, target, self.spec.task_names)[rows]
        group = split.group_sizes(rows) if self.spec.has_groups else None
        return lgb.Dataset(
            split.matrix[np.ix_(rows, features)],
            label=labels,
            group=group,
            feature_name=names,
            categorical_feature=categorical,
            reference=reference,
            free_raw_data=True,
        )

    @staticmethod
    def _summary(booster: lgb.Booster, train_rows: np.ndarray, eval_rows: np.ndarray | None) -> dict[str, Any]:
        eval_scores = {name: float(value) for name, value in booster.best_score.get("valid_0", {}).items()}
        return {
            "best_iteration": int(booster.best_iteration or booster.current_iteration()),
            "train_rows": len(train_rows),
            "eval_rows": 0 if eval_rows is None else len(eval_rows),
            "eval_scores": eval_scores,
        }


def train_baseline(config: BaselineConfig, examples_dir: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Train every per-module and global model, save them and return the manifest (see the module docstring)."""
    examples_dir, out_dir = Path(examples_dir), Path(out_dir)
    spec = FeatureSpec.load(examples_dir)
    encoder = FeatureEncoder.from_spec(spec, hashed=config.hashed, max_list_tokens=config.max_list_tokens)
    train = _Split.read(examples_dir, "train", spec, encoder)
    if not len(train.request):
        raise ValueError(f"{examples_dir}/train holds no examples: nothing to train the baseline on")
    evaluation = _Split.read(examples_dir, "eval", spec, encoder) if "eval" in _splits_present(examples_dir) else None
    trainer = _Trainer(config, spec, encoder, train, evaluation)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {
        "format_version": 1,
        "objective": "lambdarank" if spec.has_groups else "binary",
        "outputs_probabilities": not spec.has_groups,
        "tasks": list(spec.task_names),
        "targets": list(targets(spec)),
        "config": dataclasses.asdict(config),
        "encoder": encoder.to_dict(),
        "global": _train_global(trainer, out_dir),
        "per_module": {},
        "fallbacks": [],
    }
    for module in _modules(spec, train):
        models, fallbacks = _train_module(trainer, module, out_dir)
        manifest["per_module"][module] = models
        manifest["fallbacks"].extend(fallbacks)
    shutil.copyfile(examples_dir / FEATURE_SPEC_FILE, out_dir / FEATURE_SPEC_FILE)
    (out_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    log.info("baseline: %d per-module fallbacks, models in %s", len(manifest["fallbacks"]), out_dir)
    return manifest


def _splits_present(examples_dir: Path) -> set[str]:
    return {path.name for path in examples_dir.iterdir() if path.is_dir() and any(path.glob("part-*"))}


def _modules(spec: FeatureSpec, train: _Split) -> list[str]:
    """Modules of the spec, the held-out one and any seen in train, in a stable order."""
    seen = list(dict.fromkeys([*spec.modules, *([spec.held_out_module] if spec.held_out_module else [])]))
    return seen + sorted(set(np.unique(train.columns[MODULE]).tolist()) - set(seen))


def _train_global(trainer: _Trainer, out_dir: Path) -> dict[str, Any]:
    models = {}
    all_features = list(range(len(trainer.encoder.columns)))
    train_rows = np.arange(len(trainer.train.request))
    eval_rows = None if trainer.eval is None else np.arange(len(trainer.eval.request))
    for target in targets(trainer.spec):
        booster, summary = trainer.fit(target, train_rows, eval_rows, all_features)
        models[target] = {"path": _save(booster, out_dir / GLOBAL_DIR / f"{target}.txt", out_dir), **summary}
        log.info("global %s: %s", target, summary)
    return models


def _train_module(trainer: _Trainer, module: str, out_dir: Path) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """Train one module's models; return them and the targets that fall back to the global model."""
    models: dict[str, Any] = {}
    fallbacks: list[dict[str, str]] = []
    train_rows = trainer.train.rows_of(module)
    eval_rows = None if trainer.eval is None else trainer.eval.rows_of(module)
    for target in targets(trainer.spec):
        reason = _fallback_reason(trainer, module, target, train_rows)
        if reason:
            models[target] = {"fallback": reason}
            fallbacks.append({"module": module, "target": target, "reason": reason})
            continue
        booster, summary = trainer.fit(target, train_rows, eval_rows, trainer.encoder.without_module())
        path = out_dir / PER_MODULE_DIR / _safe_dir(module) / f"{target}.txt"
        models[target] = {"path": _save(booster, path, out_dir), **summary}
    return models, fallbacks


def _fallback_reason(trainer: _Trainer, module: str, target: str, train_rows: np.ndarray) -> str:
    config, spec = trainer.config, trainer.spec
    if module == spec.held_out_module:
        return "held out of training: scored by the global model"
    requests = len(np.unique(trainer.train.request[train_rows]))
    if requests < config.min_module_requests:
        return f"{requests} training requests < min_module_requests={config.min_module_requests}"
    labels = target_labels(trainer.train.columns, target, spec.task_names)
    positives = trainer.train.positive_count(train_rows, labels, spec.has_groups)
    if positives < config.min_module_positives:
        unit = "requests with a positive" if spec.has_groups else "positive rows"
        return f"{positives} training {unit} < min_module_positives={config.min_module_positives}"
    return ""


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
