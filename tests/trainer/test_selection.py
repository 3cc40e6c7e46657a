"""Best-epoch selection by the primary target's eval NDCG: the metric, the monitor and the restored weights."""

import dataclasses
import json
import shutil

import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import ndcg_score

from ranker_core.schema import FEATURE_SPEC_FILE, REQUEST_ID, FeatureSpec, SplitStats, Task, label_key
from ranker_core.targets import graded_relevance
from tests.conftest import synthetic_feature_spec, write_synthetic_examples
from tests.trainer.conftest import TINY_CONFIG
from trainer import selection as selection_module
from trainer.config import TrainerConfig
from trainer.examples import read_split
from trainer.inputs import make_dataset
from trainer.predict import load_ranker
from trainer.selection import LOSS_MONITOR, RankingMetric, Selection
from trainer.train import train_and_export


def sklearn_mean_ndcg(request_ids: np.ndarray, gains: np.ndarray, scores: np.ndarray, k: int = 10) -> float:
    """An independent NDCG@k (sklearn, ties averaged) over the requests with a positive gain."""
    values = []
    for request in np.unique(request_ids):
        rows = request_ids == request
        if gains[rows].sum() > 0:
            values.append(ndcg_score(gains[rows][None, :], scores[rows][None, :], k=k))
    return float(np.mean(values))


class FixedScores:
    """A stand-in model whose outputs are a function of the batch (labels included)."""

    def __init__(self, score_fn) -> None:
        self.score_fn = score_fn

    def __call__(self, batch, training=False):
        scores = self.score_fn(batch)
        return {"favorite": scores, "score": scores}


def test_selection_follows_the_config_and_the_data(spec):
    assert Selection.resolve(TrainerConfig(), spec) == Selection(LOSS_MONITOR, "min")
    by_ndcg = Selection.resolve(TrainerConfig(early_stopping_metric="ndcg@10"), spec)
    assert by_ndcg == Selection("val_favorite_ndcg_at_10", "max", "favorite", 10)
    without_favorite = dataclasses.replace(spec, tasks=[Task("click", "clicked"), Task("purchase", "purchased")])
    full_list = Selection.resolve(TrainerConfig(early_stopping_metric="ndcg"), without_favorite)
    assert (full_list.monitor, full_list.target, full_list.cutoff) == ("val_engagement_ndcg", "engagement", 0)
    no_groups = dataclasses.replace(spec, has_groups=False)
    assert Selection.resolve(TrainerConfig(early_stopping_metric="ndcg@10"), no_groups).monitor == LOSS_MONITOR
    # AUC needs no groups: favorite's when the data has it, else the first task's
    by_auc = TrainerConfig(early_stopping_metric="auc")
    assert Selection.resolve(by_auc, no_groups) == Selection("val_favorite_auc", "max")
    first_task = Selection.resolve(by_auc, without_favorite)
    assert (first_task.monitor, first_task.by_ranking) == ("val_click_auc", False)


def test_a_primary_task_of_one_class_in_eval_is_not_selected_by(spec):
    """All-negative eval labels make Keras's AUC 0.0 and every NDCG equal: the selection falls back to the loss."""
    positives = {task: 3 for task in spec.task_names} | {"favorite": 0, "purchase": 10}  # none, and only positives
    no_eval_favorite = dataclasses.replace(spec, splits={"eval": SplitStats(rows=10, positives=positives)})
    assert no_eval_favorite.one_class_tasks("eval") == ("favorite", "purchase")
    for metric in ("ndcg@10", "auc"):
        assert Selection.resolve(TrainerConfig(early_stopping_metric=metric), no_eval_favorite).monitor == LOSS_MONITOR
    assert dataclasses.replace(spec, splits={}).one_class_tasks("eval") == ()


def test_a_task_without_eval_positives_logs_no_auc_and_no_ndcg(tmp_path, caplog):
    """Not a NaN either: the training step's kfp Metrics artifact cannot hold one (it failed the run)."""
    splits = iter(["train", "eval", "test"])  # write_synthetic_examples relogs the splits in this order

    def no_favorite_in_eval(rows: list[dict]) -> list[dict]:
        return [{**row, "label_favorite": 0} for row in rows] if next(splits) == "eval" else rows

    examples = write_synthetic_examples(tmp_path / "examples", synthetic_feature_spec(), no_favorite_in_eval)
    config = TrainerConfig(**{**TINY_CONFIG, "early_stopping_metric": "ndcg@10", "epochs": 1})

    result = train_and_export(examples, tmp_path / "model", config)

    assert "favorite_auc" not in result.eval_metrics and "val_favorite_auc" not in result.history
    assert "favorite_ndcg_at_10" not in result.eval_metrics and all(map(np.isfinite, result.eval_metrics.values()))
    assert 0.5 < result.eval_metrics["click_auc"] <= 1.0
    assert "no validation AUC for them" in caplog.text and "selecting by the eval loss" in caplog.text


def test_training_without_groups_restores_the_epoch_with_the_best_eval_auc(synthetic_examples, tmp_path):
    ungrouped = tmp_path / "examples"
    shutil.copytree(synthetic_examples, ungrouped)
    spec = FeatureSpec.load(ungrouped)
    dataclasses.replace(spec, has_groups=False).save(ungrouped / FEATURE_SPEC_FILE)
    config = TrainerConfig(**{**TINY_CONFIG, "early_stopping_metric": "auc", "epochs": 3, "learning_rate": 0.01})
    result = train_and_export(ungrouped, tmp_path / "model", config)
    curve = result.history["val_favorite_auc"]
    assert len(curve) == result.epochs_trained == 3 and result.best_epoch == int(np.argmax(curve)) + 1
    # the exported weights are the best epoch's: evaluated again, they give its AUC
    assert result.eval_metrics["favorite_auc"] == pytest.approx(curve[result.best_epoch - 1], abs=1e-5)


def test_best_epoch_maximises_or_minimises_the_monitor():
    history = {"val_ranking_loss": [0.5, 0.4, 0.45], "val_favorite_ndcg_at_10": [0.3, 0.2, 0.25]}
    assert Selection(LOSS_MONITOR, "min").best_epoch(history, 3) == 2
    assert Selection("val_favorite_ndcg_at_10", "max", "favorite", 10).best_epoch(history, 3) == 1
    assert Selection("val_other", "max", "favorite", 10).best_epoch(history, 3) == 3


def test_ranking_metric_matches_an_independent_ndcg(synthetic_examples, spec):
    columns = read_split(synthetic_examples, "eval", spec)
    batches = make_dataset(synthetic_examples, "eval", spec, 64)  # several batches per pass
    metric = RankingMetric(batches, spec, Selection("val_favorite_ndcg_at_10", "max", "favorite", 10))
    metric.set_model(FixedScores(lambda batch: tf.strings.to_hash_bucket_fast(batch["listing_id"], 97)))
    expected_scores = np.array([hash_bucket(value) for value in columns["listing_id"]], dtype=np.float64)
    expected = sklearn_mean_ndcg(columns[REQUEST_ID], columns[label_key("favorite")], expected_scores)
    logs = {}
    metric.on_epoch_end(0, logs)
    assert logs["val_favorite_ndcg_at_10"] == pytest.approx(expected, rel=1e-9)
    assert 0.2 < expected < 0.95


def hash_bucket(value: str) -> int:
    return int(tf.strings.to_hash_bucket_fast(value, 97))


def test_engagement_ndcg_is_one_for_the_oracle_and_lower_reversed(synthetic_examples, spec):
    batches = make_dataset(synthetic_examples, "eval", spec, 256)
    selection = Selection("val_engagement_ndcg_at_10", "max", "engagement", 10)

    def grade(batch):  # the deepest positive task's index + 1, as graded_relevance
        grades = [tf.cast(batch[label_key(task)], tf.float32) * i for i, task in enumerate(spec.task_names, 1)]
        return tf.reduce_max(tf.stack(grades, axis=1), axis=1)

    oracle, reversed_ = RankingMetric(batches, spec, selection), RankingMetric(batches, spec, selection)
    oracle.set_model(FixedScores(grade))
    reversed_.set_model(FixedScores(lambda batch: -grade(batch)))
    assert oracle.evaluate() == pytest.approx(1.0)
    assert reversed_.evaluate() < 0.5
    columns = read_split(synthetic_examples, "eval", spec)
    assert graded_relevance(columns, spec.task_names).max() >= 2, "graded gains are exercised"


@pytest.mark.slow
def test_training_restores_the_epoch_with_the_best_eval_ndcg(synthetic_examples, tmp_path):
    config = TrainerConfig(**{**TINY_CONFIG, "early_stopping_metric": "ndcg@10", "epochs": 3, "learning_rate": 0.01})
    result = train_and_export(synthetic_examples, tmp_path / "model", config)
    curve = result.history["val_favorite_ndcg_at_10"]
    assert len(curve) == result.epochs_trained == 3
    assert result.best_epoch == int(np.argmax(curve)) + 1
    # The exported weights are the best epoch's: its logged NDCG is what the exported model scores.
    ranker = load_ranker(tmp_path / "model")
    columns = read_split(synthetic_examples, "eval", ranker.feature_spec)
    favorite = ranker.predict(columns)["favorite"]
    exported = sklearn_mean_ndcg(columns[REQUEST_ID], columns[label_key("favorite")], np.asarray(favorite))
    assert exported == pytest.approx(curve[result.best_epoch - 1], abs=1e-6)
    assert result.eval_metrics["favorite_ndcg_at_10"] == curve[result.best_epoch - 1]
    assert json.loads((tmp_path / "model" / "metrics.json").read_text())["best_epoch"] == result.best_epoch


@pytest.mark.slow
def test_the_ranking_metric_not_the_loss_picks_the_restored_epoch(synthetic_examples, tmp_path, monkeypatch):
    """Scripted NDCG peaks at epoch 1 while the loss keeps falling: epoch 1's weights must come back."""
    scripted = iter([0.5, 0.4, 0.3, 0.2])
    monkeypatch.setattr(selection_module.RankingMetric, "evaluate", lambda self: next(scripted))
    config = TrainerConfig(**{**TINY_CONFIG, "early_stopping_metric": "ndcg@10", "epochs": 4, "learning_rate": 0.01})
    result = train_and_export(synthetic_examples, tmp_path / "model", config)
    losses = result.history["val_ranking_loss"]
    assert result.epochs_trained == 3, "patience 2 stops after two epochs without a better NDCG"
    assert result.best_epoch == 1
    assert int(np.argmin(losses)) != 0, "the loss would have picked another epoch"
    assert result.eval_metrics["ranking_loss"] == pytest.approx(losses[0], rel=1e-4)
