"""Training and evaluation targets: one binary label per task, plus graded engagement.

Tasks come from the feature spec in ascending order of value, so the graded
engagement relevance of an impression is the index of its deepest positive
task + 1 (0 when no task is positive). With the default tasks, a purchase (4)
beats an add-to-cart (3), a favorite (2) and a click (1)::

    targets(spec)                                   # ("click", ..., "purchase", "engagement")
    target_labels(columns, "engagement", spec.task_names)   # array([0, 1, 4, ...])
    target_gains(labels, "engagement", spec.task_names)     # array([0., 1., 15., ...]): NDCG's gains
    default_primary_task(spec.task_names, "ndcg@10")        # "favorite" when the data has it
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ranker_core.schema import FeatureSpec, label_key

ENGAGEMENT = "engagement"
"""The graded-relevance target, beside the tasks."""


def targets(spec: FeatureSpec) -> tuple[str, ...]:
    """Every target a ranker is judged on: each task, then graded engagement."""
    return (*spec.task_names, ENGAGEMENT)


def graded_relevance(columns: Mapping[str, np.ndarray], task_names: Sequence[str]) -> np.ndarray:
    """Index of the deepest positive task + 1 per row (0 when none is positive).

    >>> graded_relevance({"label_a": np.array([1, 1, 0]), "label_b": np.array([0, 1, 0])}, ["a", "b"])
    array([1, 2, 0])
    """
    relevance = np.zeros(len(columns[label_key(task_names[0])]), dtype=np.int64)
    for grade, task in enumerate(task_names, start=1):
        relevance[np.asarray(columns[label_key(task)]) > 0] = grade
    return relevance


def target_labels(columns: Mapping[str, np.ndarray], target: str, task_names: Sequence[str]) -> np.ndarray:
    """Integer labels of one target: 0/1 for a task, 0..len(tasks) for engagement."""
    if target == ENGAGEMENT:
        return graded_relevance(columns, task_names)
    if target not in task_names:
        raise KeyError(f"unknown target {target!r}: expected one of {', '.join([*task_names, ENGAGEMENT])}")
    return (np.asarray(columns[label_key(target)]) > 0).astype(np.int64)


def engagement_gains(task_names: Sequence[str]) -> list[float]:
    """The exponential gain 2**grade - 1 of every engagement grade (LightGBM's and NDCG's default)."""
    return [float(2**grade - 1) for grade in range(len(task_names) + 1)]


def target_gains(labels: np.ndarray, target: str, task_names: Sequence[str]) -> np.ndarray:
    """NDCG gains of one target's labels: 0/1 for a task, ``2**grade - 1`` for engagement.

    >>> target_gains(np.array([0, 1, 2]), ENGAGEMENT, ["click", "purchase"])
    array([0., 1., 3.])
    """
    if target == ENGAGEMENT:
        return np.asarray(engagement_gains(task_names))[labels]
    return np.asarray(labels).astype(np.float64)


def default_primary_task(task_names: Sequence[str], metric: str) -> str:
    """``favorite`` when the data has it, else graded ``engagement`` (NDCG) or the first task (AUC).

    The evaluation judges by it and the trainer can select its best epoch by it.

    >>> default_primary_task(["click", "purchase"], "ndcg@10"), default_primary_task(["click"], "auc")
    ('engagement', 'click')
    """
    if "favorite" in task_names:
        return "favorite"
    return task_names[0] if metric == "auc" else ENGAGEMENT
