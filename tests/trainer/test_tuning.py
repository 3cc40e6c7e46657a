"""The tune step: the configuration as given first, the best eval ranking score kept, the budget obeyed."""

import dataclasses
import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from ranker_core.schema import FEATURE_SPEC_FILE, FeatureSpec
from ranker_core.step_configs import TUNING_FILE, TrainerConfig, TuningConfig
from tests.trainer.conftest import TINY_CONFIG
from trainer.progress import EpochReport
from trainer.tuning import _choose, tune, tune_from_component

BASE = TrainerConfig(**{**TINY_CONFIG, "epochs": 2, "learning_rate": 0.01})


@dataclasses.dataclass
class FakeArtifact:
    """A kfp artifact's surface: a path, metadata and logged metrics."""

    path: str
    metadata: dict = dataclasses.field(default_factory=dict)
    metrics: dict = dataclasses.field(default_factory=dict)

    def log_metric(self, name: str, value: float) -> None:
        self.metrics[name] = value


@pytest.mark.slow
def test_a_learning_rate_that_cannot_learn_loses_to_the_configuration_as_given(synthetic_examples, tmp_path):
    tuning = TuningConfig(trials=3, seed=1, space={"learning_rate": {"choice": [0.01, 1e-9]}})
    result = tune(synthetic_examples, BASE, tuning, tmp_path / "trials")
    assert result.metric == "favorite_ndcg_at_10"
    assert result.trials[0]["values"] == {"learning_rate": 0.01}  # the configuration as given first
    scores = {trial["values"]["learning_rate"]: trial["eval_score"] for trial in result.trials}
    assert set(scores) == {0.01, 1e-9}, "TPE's seeded draws must have tried the frozen learning rate"
    assert scores[0.01] > scores[1e-9]
    assert result.best["values"] == {"learning_rate": 0.01} and result.config == BASE
    assert not any((tmp_path / "trials").glob("trial-*")), "trial models are removed"


def test_the_component_writes_the_trials_and_a_spent_budget_keeps_the_given_config(synthetic_examples, tmp_path):
    trials, best = FakeArtifact(str(tmp_path / "trials")), FakeArtifact(str(tmp_path / "best"))
    # three trials asked for, but the budget is spent by the first (which always runs)
    tuning_json = json.dumps({"trials": 3, "budget_seconds": 1e-6, "space": {"dropout": {"uniform": [0.0, 0.2]}}})
    given = BASE.model_dump_json()
    chosen = tune_from_component(str(synthetic_examples), given, tuning_json, trials, best)
    assert chosen == given  # the text as given: train_mmoe's cache key is that of a run without the tune step
    record = json.loads((Path(trials.path) / TUNING_FILE).read_text())
    assert record["metric"] == "favorite_ndcg_at_10" and len(record["trials"]) == 1
    assert record["choice"] == "only the configuration as given was trained (budget_seconds 1e-06 spent)"
    assert best.metrics["favorite_ndcg_at_10"] == record["best"]["eval_score"] > 0 and best.metrics["trials"] == 1


def test_data_without_request_groups_is_tuned_by_the_auc_of_its_primary_task(synthetic_examples, tmp_path, caplog):
    ungrouped = tmp_path / "examples"
    shutil.copytree(synthetic_examples, ungrouped)
    spec = FeatureSpec.load(ungrouped)
    dataclasses.replace(spec, has_groups=False).save(ungrouped / FEATURE_SPEC_FILE)
    result = tune(ungrouped, BASE, TuningConfig(trials=1), tmp_path / "trials")
    assert result.metric == "favorite_auc" and 0.5 < result.best["eval_score"] <= 1.0
    # the default space's embedding_dim choices (8, 16, 32) lack the given 4: the first trial still runs it
    assert result.trials[0]["values"]["embedding_dim"] == BASE.embedding_dim == 4
    assert "needs request groups and this data has none: trials are judged by AUC" in caplog.text, caplog.text
    # asked for, AUC judges grouped data too
    grouped = tune(synthetic_examples, BASE, TuningConfig(trials=1, metric="auc"), tmp_path / "grouped")
    assert grouped.metric == "favorite_auc" and grouped.best["eval_score"] > 0.5


def _trials(per_request: dict[int, np.ndarray]) -> list[dict]:
    return [
        {"trial": number, "values": {"dropout": number / 10}, "eval_score": float(np.nanmean(ndcg))}
        for number, ndcg in per_request.items()
    ]


def test_a_trial_replaces_the_given_configuration_only_when_its_lead_is_beyond_the_noise():
    rng = np.random.default_rng(0)
    given = rng.uniform(0.2, 0.8, 2000)
    given[::7] = np.nan  # requests without a positive
    # trial 1 leads by 0.05 on every request; trial 2 by 0.003 on average, drowned in per-request noise
    noise = rng.normal(0, 0.2, 2000)
    noise -= noise[np.isfinite(given)].mean()
    clear, noisy = given + 0.05, given + 0.003 + noise
    tuning = TuningConfig(trials=3)

    chosen, why = _choose(_trials({0: given, 1: clear}), {0: given, 1: clear}, tuning)
    assert chosen["trial"] == 1 and "chosen" in why
    assert chosen["eval_lift_interval"][0] > 0 and chosen["eval_lift_over_given"] == pytest.approx(0.1, abs=0.02)

    trials = _trials({0: given, 2: noisy})
    chosen, why = _choose(trials, {0: given, 2: noisy}, tuning)
    assert trials[1]["eval_score"] > trials[0]["eval_score"], "the noisy trial must score highest for this test"
    assert chosen["trial"] == 0 and "within the noise" in why
    low, high = trials[1]["eval_lift_interval"]
    assert low < trials[1]["eval_lift_over_given"] < high and low < 0 < high
    assert trials[0]["eval_lift_over_given"] == 0.0

    # confidence 0, or an AUC search (no per-request scores): the best score wins as before
    assert _choose(_trials({0: given, 2: noisy}), {0: given, 2: noisy}, TuningConfig(confidence=0))[0]["trial"] == 2
    assert _choose(_trials({0: given, 2: noisy}), {}, tuning)[0]["trial"] == 2


@pytest.mark.slow
def test_each_trial_is_checked_on_the_eval_requests_its_exported_model_ranks(synthetic_examples, tmp_path, caplog):
    tuning = TuningConfig(trials=2, seed=2, space={"dropout": {"uniform": [0.1, 0.3]}})
    with caplog.at_level(logging.INFO, logger="trainer.train"):
        result = tune(synthetic_examples, BASE, tuning, tmp_path / "trials")
    epochs = [EpochReport.parse(record.getMessage()) for record in caplog.records]
    assert {report.label for report in epochs if report} == {"trial 1/2", "trial 2/2"}  # ranker run shows which
    first, second = result.trials
    assert first["values"] == {"dropout": 0.0} and second["values"]["dropout"] >= 0.1
    # the per-request NDCG of each exported model averages to the score its training reported
    assert first["eval_lift_over_given"] == 0.0
    assert second["eval_lift_over_given"] == pytest.approx(second["eval_score"] / first["eval_score"] - 1, abs=1e-6)
    low, high = second["eval_lift_interval"]
    assert low <= second["eval_lift_over_given"] <= high
    second_leads = second["eval_score"] > first["eval_score"]
    assert result.best["trial"] == (1 if second_leads and low > 0 else 0)
    assert result.choice.startswith("trial 1 scored highest" if second_leads else "trial 0, the configuration as given")


@pytest.mark.parametrize(
    ("tuning", "message"),
    [
        ('{"space": {"lr": {"log": [0.001, 0.01]}}}', "space names \\['lr'\\], which are not TrainerConfig fields"),
        ('{"space": {"learning_rate": {"log": [0, 0.01]}}}', "log must be \\[low, high\\] with high > low > 0"),
        ('{"space": {"dropout": {"choice": []}}}', "choice is empty"),
        ('{"trials": -1}', "trials and budget_seconds must be >= 0"),
        ('{"confidence": 1}', "confidence must be in \\[0, 1\\), got 1"),
        ('{"metric": "ndgc@10"}', "metric 'ndgc@10' is not 'auc', 'ndcg' or 'ndcg@<k>'"),  # was a traceback in tune
        ('{"trials": 3, "space": {}}', "space is empty: each of the 3 trials would train the configuration as given"),
    ],
)
def test_a_bad_tuning_config_names_the_field(tuning, message):
    with pytest.raises(ValueError, match=message):
        TuningConfig.from_sources(tuning)


@pytest.mark.slow
def test_under_kfp_local_the_tune_step_hands_training_its_choice(synthetic_examples, kfp_local_root):
    from kfp import dsl
    from kfp.dsl import Dataset

    from components.training.component import train_mmoe
    from components.training.tune_component import tune_mmoe
    from trainer.config import load_config

    @dsl.pipeline(name="tune-then-train")
    def tune_then_train(examples_uri: str, config_json: str, tuning_json: str) -> dsl.Model:
        examples = dsl.importer(artifact_uri=examples_uri, artifact_class=Dataset, reimport=False)
        tuned = tune_mmoe(examples=examples.output, config_json=config_json, tuning_json=tuning_json)
        return train_mmoe(examples=examples.output, config_json=tuned.outputs["Output"]).outputs["model"]

    tuning = {"trials": 2, "seed": 3, "space": {"learning_rate": {"choice": [0.01, 1e-9]}}}
    task = tune_then_train(
        examples_uri=str(synthetic_examples), config_json=BASE.model_dump_json(), tuning_json=json.dumps(tuning)
    )
    (record,) = kfp_local_root.glob("*/tune-mmoe/trials/tuning.json")
    chosen = json.loads(record.read_text())["best"]["values"]
    trained = load_config(task.output.path)
    assert trained.learning_rate == chosen["learning_rate"] and trained.epochs == BASE.epochs


def test_a_lift_that_cannot_be_computed_is_null_and_the_record_is_valid_json():
    # the given configuration ranks one request's positive in the top 10: most resamples of the requests give it a
    # mean NDCG of 0, and the ratio of a trial's mean to 0 (its lift's upper bound) is undefined
    given = np.zeros(40)
    given[0] = 0.5
    better = np.full(40, 0.3)
    trials = _trials({0: given, 1: better})
    chosen, why = _choose(trials, {0: given, 1: better}, TuningConfig(trials=2))
    low, high = trials[1]["eval_lift_interval"]
    assert low > 0 and high is None and chosen["trial"] == 1
    assert "n/a]" in why and "nan" not in why
    json.loads(json.dumps(trials, allow_nan=False))  # NaN would be refused: JSON has none
    # a given configuration whose every request scores 0: no lift at all, and nothing to show it is beaten
    nothing = np.zeros(40)
    trials = _trials({0: nothing, 1: better})
    chosen, why = _choose(trials, {0: nothing, 1: better}, TuningConfig(trials=2))
    assert trials[1]["eval_lift_over_given"] is None and trials[1]["eval_lift_interval"] == [None, None]
    assert chosen["trial"] == 0 and "n/a [n/a, n/a]" in why
    json.loads(json.dumps(trials, allow_nan=False))


def _no_training(*_args, **_kwargs):
    raise AssertionError("a trial trained before the check")


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"batch_size": {"choice": [64, "big"]}}, "tuning space['batch_size'] value 'big': TrainerConfig: batch_size"),
        ({"dropout": {"uniform": [0.0, 1.5]}}, "tuning space['dropout'] value 1.5: TrainerConfig:"),
        ({"learning_rate": {"uniform": [-0.1, 0.1]}}, "tuning space['learning_rate'] value -0.1: TrainerConfig:"),
        ({"epochs": {"uniform": [1.5, 3]}}, "tuning space['epochs'] uniform [1.5, 3]: epochs is a whole number"),
        ({"embedding_dim": {"log": [8, 64.5]}}, "tuning space['embedding_dim'] log [8, 64.5]: embedding_dim is a"),
    ],
)
def test_a_space_value_trainer_config_refuses_fails_before_any_trial(
    synthetic_examples, tmp_path, monkeypatch, space, message
):
    from ranker_core.cli_support import InvalidValueError

    monkeypatch.setattr("trainer.train.train_and_export", _no_training)
    with pytest.raises(InvalidValueError, match=r"^" + re.escape(message)) as raised:
        tune(synthetic_examples, BASE, TuningConfig(trials=2, space=space), tmp_path / "trials")
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("draw", "distribution"),
    [
        ({"epochs": {"uniform": [1, 3]}}, "IntDistribution(high=3, log=False, low=1, step=1)"),
        ({"embedding_dim": {"log": [8, 64.0]}}, "IntDistribution(high=64, log=True, low=8, step=1)"),
        ({"max_hash_buckets": {"uniform": [10, 20]}}, "IntDistribution(high=20, log=False, low=10, step=1)"),
        ({"dropout": {"uniform": [0, 0.5]}}, "FloatDistribution(high=0.5, log=False, low=0.0, step=None)"),
    ],
)
def test_a_range_over_a_whole_number_field_draws_integers(draw, distribution):
    import optuna

    from trainer.tuning import _suggest, check_space

    check_space(BASE, draw)
    ((field, one),) = draw.items()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trials = [study.ask() for _ in range(20)]
    values = [_suggest(trial, field, one) for trial in trials]
    assert repr(trials[0].distributions[field]) == distribution
    whole = distribution.startswith("Int")
    assert all(isinstance(value, int) == whole for value in values), values
    assert all(BASE.replace(**{field: value}) for value in values)  # every draw is a valid TrainerConfig


def test_the_default_space_passes_the_check():
    from trainer.tuning import check_space

    check_space(BASE, TuningConfig().space)


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("nodir/tuned.json", "--out {tmp}/nodir/tuned.json: no such folder {tmp}/nodir"),
        (".", "--out {tmp}/.: is a folder; give a file in it, e.g. {tmp}/tuned.json"),
        ("tuned.json", "--out {tmp}/tuned.json: folder {tmp} is not writable"),
        ("old.json", "--out {tmp}/old.json: file is not writable"),
    ],
)
def test_tune_checks_out_before_any_trial(synthetic_examples, tmp_path, monkeypatch, out, message):
    import argparse

    from ranker_core import cli_support
    from ranker_core.cli_support import UserError
    from trainer import tune_cli

    monkeypatch.setattr("trainer.tuning.tune", _no_training)
    # root may write anywhere: the check's answer is what is tested
    if out == "tuned.json":
        monkeypatch.setattr(cli_support.os, "access", lambda *_: False)
    if out == "old.json":
        (tmp_path / out).write_text("{}")
        monkeypatch.setattr(cli_support.os, "access", lambda path, _mode: Path(path) != tmp_path / out)
    args = argparse.Namespace(
        examples=str(synthetic_examples), config=None, tuning_config='{"trials": 1}', out=f"{tmp_path}/{out}"
    )
    with pytest.raises(UserError, match=r"^" + re.escape(message.format(tmp=tmp_path))):
        tune_cli.main(args)
