"""Evaluation fixtures: a trained GBDT baseline and scorers of known quality."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from ranker_core.targets import graded_relevance, target_labels
from tests.baseline.conftest import TINY_BASELINE, baseline_dir  # noqa: F401  (baseline_dir: the session fixture)
from tests.conftest import synthetic_feature_spec

FAST = {"bootstrap_samples": 200, "permutation_samples": 200}


def baseline_of(examples: Path, out: Path) -> Path:
    """A tiny baseline trained on ``examples`` themselves: ``evaluate`` refuses one trained on other examples
    (the session ``baseline_dir`` once their feature spec is changed)."""
    from components.baseline.gbdt import BaselineConfig, train_baseline

    train_baseline(BaselineConfig(**TINY_BASELINE), examples, out)
    return out


@dataclasses.dataclass
class LabelScorer:
    """Scores from the labels plus Gaussian noise: small noise ranks near-perfectly, large noise near-randomly."""

    noise: float
    name: str = "candidate"
    seed: int = 0
    outputs_probabilities: bool = True

    def __call__(self, columns):
        rng = np.random.default_rng(self.seed)
        tasks = synthetic_feature_spec().task_names
        scores = {
            task: target_labels(columns, task, tasks) + self.noise * rng.normal(size=len(columns["module_name"]))
            for task in tasks
        }
        scores = {task: 1 / (1 + np.exp(-4 * (values - 0.5))) for task, values in scores.items()}
        relevance = graded_relevance(columns, tasks)
        scores["engagement"] = relevance + self.noise * rng.normal(size=len(relevance))
        return scores


@pytest.fixture
def label_scorer():
    return LabelScorer
