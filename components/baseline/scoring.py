"""Load a trained baseline and score examples with it.

Both scorers follow the evaluation's ``Scorer`` protocol: a ``name``, an
``outputs_probabilities`` flag and a call that maps example columns to one
score array per target (each task and ``engagement``)::

    baseline = GbdtBaseline.load("work/baseline")
    scores = baseline.per_module_scorer()(read_split("work/examples", "test", baseline.spec))
    scores["favorite"]      # one score per row, from the row's own module model
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from components.baseline.encoding import FeatureEncoder
from components.baseline.gbdt import load_manifest
from ranker_core.schema import MODULE, FeatureSpec

PER_MODULE_NAME = "gbdt_per_module"
GLOBAL_NAME = "gbdt_global"


@dataclasses.dataclass
class GbdtBaseline:
    """The trained per-module and global LightGBM models of one baseline folder."""

    spec: FeatureSpec
    manifest: Mapping[str, Any]
    encoder: FeatureEncoder
    global_models: dict[str, lgb.Booster]
    module_models: dict[str, dict[str, lgb.Booster]]

    @classmethod
    def load(cls, baseline_dir: str | Path) -> GbdtBaseline:
        baseline_dir = Path(baseline_dir)
        manifest = load_manifest(baseline_dir)
        global_models = {target: _booster(baseline_dir, entry) for target, entry in manifest["global"].items()}
        module_models = {
            module: {target: _booster(baseline_dir, entry) for target, entry in models.items() if "path" in entry}
            for module, models in manifest["per_module"].items()
        }
        return cls(
            spec=FeatureSpec.load(baseline_dir),
            manifest=manifest,
            encoder=FeatureEncoder.from_dict(manifest["encoder"]),
            global_models=global_models,
            module_models=module_models,
        )

    @property
    def targets(self) -> list[str]:
        return list(self.manifest["targets"])

    def global_scorer(self) -> GbdtScorer:
        return GbdtScorer(self, per_module=False)

    def per_module_scorer(self) -> GbdtScorer:
        return GbdtScorer(self, per_module=True)


@dataclasses.dataclass
class GbdtScorer:
    """Scores every target; per-module mode uses each row's module model, else the global one."""

    baseline: GbdtBaseline
    per_module: bool

    @property
    def name(self) -> str:
        return PER_MODULE_NAME if self.per_module else GLOBAL_NAME

    @property
    def outputs_probabilities(self) -> bool:
        """LambdaRank scores are unbounded ranking scores, not probabilities; binary log-loss outputs are."""
        return bool(self.baseline.manifest["outputs_probabilities"])

    def __call__(self, columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        matrix = self.baseline.encoder.encode(columns)
        scores = {target: booster.predict(matrix) for target, booster in self.baseline.global_models.items()}
        if not self.per_module:
            return scores
        module_columns = self.baseline.encoder.without_module()
        modules = np.asarray(columns[MODULE], dtype=object)
        for module, models in self.baseline.module_models.items():
            rows = np.flatnonzero(modules == module)
            if not len(rows):
                continue
            for target, booster in models.items():
                scores[target][rows] = booster.predict(matrix[np.ix_(rows, module_columns)])
        return scores


def _booster(baseline_dir: Path, entry: Mapping[str, Any]) -> lgb.Booster:
    path = baseline_dir / entry["path"]
    if not path.is_file():
        raise FileNotFoundError(f"baseline model {path} listed in {baseline_dir}/manifest.json is missing")
    return lgb.Booster(model_file=str(path))
