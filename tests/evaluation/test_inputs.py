"""The evaluation's inputs are checked before any work: missing, of another schema, or trained on other examples."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from components.evaluation.evaluate import (
    EvaluationConfig,
    check_lineage,
    check_sources,
    evaluate,
    load_oracle,
    require_split,
)
from ranker_core.cli_support import InvalidValueError, MissingInputError, UserError
from ranker_core.schema import FeatureSpec
from tests.evaluation.conftest import FAST, LabelScorer
from trainer.examples import read_split


def fake_model(folder: Path, examples: Path, **spec_changes) -> Path:
    """A folder that passes for an exported model: a SavedModel file and the examples' spec with changes."""
    folder.mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"")
    spec = {**json.loads((examples / "feature_spec.json").read_text()), **spec_changes}
    (folder / "feature_spec.json").write_text(json.dumps(spec))
    return folder


def oracle_of(examples: Path, folder: Path, value: float = 0.5) -> Path:
    """An oracle folder covering the test split, every probability ``value``."""
    spec = FeatureSpec.load(examples)
    columns = read_split(examples, "test", spec)
    oracle = pd.DataFrame({"request_id": columns["request_id"], "listing_id": columns["listing_id"]})
    for task in spec.task_names:
        oracle[f"p_{task}"] = value
    folder.mkdir()
    oracle.drop_duplicates(["request_id", "listing_id"]).to_parquet(folder / "part-0.parquet")
    return folder


def test_models_trained_on_these_examples_pass(synthetic_examples, baseline_dir, tmp_path):
    model = fake_model(tmp_path / "m", synthetic_examples)
    check_lineage(synthetic_examples, {"mmoe": str(model)}, baseline_dir)


def test_a_model_or_peer_trained_on_other_examples_is_refused(synthetic_examples, baseline_dir, tmp_path):
    model = fake_model(tmp_path / "m", synthetic_examples)
    other = fake_model(tmp_path / "other", synthetic_examples, dataset="other")
    with pytest.raises(InvalidValueError, match=r"model 'ple' .*other examples.* SHA-256 is [0-9a-f]{12}, the exa"):
        check_lineage(synthetic_examples, {"mmoe": str(model), "ple": str(other)}, baseline_dir)


def test_evaluate_itself_refuses_a_model_trained_on_other_examples(synthetic_examples, baseline_dir, tmp_path):
    other = fake_model(tmp_path / "other", synthetic_examples, dataset="other")
    models = {"c": LabelScorer(0.5), "ple": str(other)}
    with pytest.raises(InvalidValueError, match=r"model 'ple' .*/other was trained on other examples"):
        evaluate(EvaluationConfig(**FAST), synthetic_examples, models, baseline_dir, tmp_path / "report")
    with pytest.raises(MissingInputError, match="no 'nope' split"):  # a missing input is named first
        evaluate(EvaluationConfig(**FAST, split="nope"), synthetic_examples, models, baseline_dir, tmp_path / "report")
    assert not (tmp_path / "report").exists()


def test_a_baseline_trained_on_other_examples_is_refused(synthetic_examples, baseline_dir, tmp_path):
    baseline = Path(shutil.copytree(baseline_dir, tmp_path / "baseline"))
    spec = json.loads((baseline / "feature_spec.json").read_text())
    (baseline / "feature_spec.json").write_text(json.dumps({**spec, "dataset": "other"}))
    with pytest.raises(InvalidValueError, match=r"baseline .* was trained on other examples"):
        check_lineage(synthetic_examples, {}, baseline)


def test_the_champion_needs_the_same_tasks_and_features_among_the_examples(synthetic_examples, baseline_dir, tmp_path):
    older = fake_model(tmp_path / "older", synthetic_examples, dataset="older")
    check_sources(synthetic_examples, "test", {}, baseline_dir, champion=str(older))
    tasks = [{"name": "click", "label_column": "clicked"}]
    alien = fake_model(tmp_path / "alien", synthetic_examples, tasks=tasks)
    with pytest.raises(InvalidValueError, match=r"champion .* has other tasks than the examples"):
        check_sources(synthetic_examples, "test", {}, baseline_dir, champion=str(alien))
    features = fake_model(tmp_path / "features", synthetic_examples, features=[])
    with pytest.raises(InvalidValueError, match="has other features than the examples"):
        check_sources(synthetic_examples, "test", {"m": str(features)}, baseline_dir)
    # a champion trained before a feature was added reads fewer columns, and scores from them
    all_features = json.loads((synthetic_examples / "feature_spec.json").read_text())["features"]
    fewer = fake_model(tmp_path / "fewer", synthetic_examples, features=all_features[1:])
    check_sources(synthetic_examples, "test", {}, baseline_dir, champion=str(fewer))
    renamed = [{**all_features[0], "name": "not_in_the_examples"}, *all_features[1:]]
    other = fake_model(tmp_path / "other", synthetic_examples, features=renamed)
    with pytest.raises(InvalidValueError, match=r"champion .* other features .*1 differ, e.g. not_in_the_examples"):
        check_sources(synthetic_examples, "test", {}, baseline_dir, champion=str(other))


def test_a_folder_without_a_savedmodel_or_a_manifest_is_refused(synthetic_examples, baseline_dir):
    with pytest.raises(MissingInputError, match="model 'm': no SavedModel at "):
        check_sources(synthetic_examples, "test", {"m": str(baseline_dir)}, baseline_dir)
    with pytest.raises(MissingInputError, match="no baseline manifest at"):
        check_sources(synthetic_examples, "test", {}, synthetic_examples)


def test_a_missing_split_names_the_splits_there_are(synthetic_examples):
    with pytest.raises(MissingInputError, match=r"no 'nope' split .*splits there: eval, test, train"):
        require_split(synthetic_examples, "nope")


def test_an_oracle_is_checked_when_it_is_read(synthetic_examples, tmp_path):
    spec = FeatureSpec.load(synthetic_examples)
    with pytest.raises(InvalidValueError, match=r"oracle .*: column p_click has \d+ values outside \[0, 1\]"):
        load_oracle(str(oracle_of(synthetic_examples, tmp_path / "big", value=3.0)), spec)
    with pytest.raises(InvalidValueError, match=r"column p_click has .* missing or non-finite"):
        load_oracle(str(oracle_of(synthetic_examples, tmp_path / "nan", value=float("nan"))), spec)
    (tmp_path / "oracle.csv").write_text("request_id\n")
    with pytest.raises(InvalidValueError, match="is a file, not a folder of parquet files"):
        load_oracle(str(tmp_path / "oracle.csv"), spec)
    with pytest.raises(MissingInputError, match="no oracle parquet files match"):
        load_oracle(str(tmp_path / "none"), spec)


def test_an_oracle_that_misses_impressions_or_a_bad_candidate_is_a_user_error(
    synthetic_examples, baseline_dir, tmp_path
):
    config = EvaluationConfig(**FAST)
    models = {"c": LabelScorer(0.5)}
    with pytest.raises(InvalidValueError, match="candidate 'nope' is not among the models given: c"):
        evaluate(config.replace(candidate="nope"), synthetic_examples, models, baseline_dir, tmp_path / "r")
    oracle = oracle_of(synthetic_examples, tmp_path / "oracle")
    frame = pd.read_parquet(oracle / "part-0.parquet")
    frame.iloc[1:].to_parquet(oracle / "part-0.parquet")
    with pytest.raises(UserError, match="the oracle does not cover the test split: 1 of 800 impressions"):
        evaluate(config, synthetic_examples, models, baseline_dir, tmp_path / "r", str(oracle))
