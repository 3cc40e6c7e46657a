"""Evaluation fixtures: a trained GBDT baseline and scorers of known quality."""

import dataclasses

import numpy as np
import pytest

from ranker_core.targets import graded_relevance, target_labels
from tests.baseline.conftest import baseline_dir  # noqa: F401  (the session fixture, shared)
from tests.conftest import synthetic_feature_spec

FAST = {"bootstrap_samples": 200, "permutation_samples": 200}


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
