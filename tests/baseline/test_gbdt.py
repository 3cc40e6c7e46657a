import argparse
import json

import lightgbm as lgb
import numpy as np
import pytest

from components.baseline.gbdt import BaselineConfig, train_baseline, validation_metrics
from components.baseline.scoring import GbdtBaseline
from ranker_core.ranking_metrics import auc
from ranker_core.schema import FeatureSpec
from tests.baseline.conftest import TINY_BASELINE, examples_with
from tests.conftest import synthetic_feature_spec, write_synthetic_examples
from trainer.examples import read_split


@pytest.fixture(scope="module")
def test_columns(synthetic_examples):
    return read_split(synthetic_examples, "test", FeatureSpec.load(synthetic_examples))


def test_writes_a_model_per_module_and_target_and_a_global_one(baseline_dir):
    manifest = json.loads((baseline_dir / "manifest.json").read_text())
    assert manifest["targets"] == ["click", "favorite", "add_to_cart", "purchase", "engagement"]
    assert manifest["objective"] == dict.fromkeys(manifest["targets"], "lambdarank")
    assert not manifest["outputs_probabilities"]
    assert manifest["per_module"]["search"]["click"]["params"]["objective"] == "lambdarank"
    assert manifest["fallbacks"] == []
    for target in manifest["targets"]:
        assert (baseline_dir / "global" / f"{target}.txt").is_file()
        for module in ("home_feed", "item_page", "search"):
            assert (baseline_dir / "per_module" / module / f"{target}.txt").is_file()
    booster = lgb.Booster(model_file=str(baseline_dir / "global" / "click.txt"))
    assert booster.feature_name()[0] == "module_name" and "price" in booster.feature_name()
    per_module = lgb.Booster(model_file=str(baseline_dir / "per_module" / "search" / "click.txt"))
    assert "module_name" not in per_module.feature_name()
    assert 1 <= manifest["global"]["click"]["best_iteration"] <= TINY_BASELINE["n_estimators"]
    assert "ndcg@10" in manifest["global"]["click"]["eval_scores"]
    assert validation_metrics(manifest)["fallbacks"] == 0.0


def test_scorers_learn_the_planted_signal(baseline_dir, test_columns):
    baseline = GbdtBaseline.load(baseline_dir)
    per_module, global_ = baseline.per_module_scorer()(test_columns), baseline.global_scorer()(test_columns)
    assert set(per_module) == set(baseline.targets)
    for scores in (per_module, global_):
        assert auc(test_columns["label_click"], scores["click"]) > 0.7
    assert not np.allclose(per_module["click"], global_["click"])


def test_a_module_without_enough_data_falls_back_to_the_global_model(synthetic_examples, tmp_path, test_columns):
    config = BaselineConfig(**TINY_BASELINE, min_module_requests=101)  # every module has 100 train requests
    manifest = train_baseline(config, synthetic_examples, tmp_path)
    assert len(manifest["fallbacks"]) == 3 * 5
    assert "100 training requests < min_module_requests=101" in manifest["fallbacks"][0]["reason"]
    baseline = GbdtBaseline.load(tmp_path)
    per_module, global_ = baseline.per_module_scorer()(test_columns), baseline.global_scorer()(test_columns)
    np.testing.assert_array_equal(per_module["purchase"], global_["purchase"])


def test_the_held_out_module_and_rare_targets_fall_back(synthetic_examples, tmp_path):
    examples = examples_with(synthetic_examples, tmp_path / "examples", held_out_module="search")
    manifest = train_baseline(BaselineConfig(**TINY_BASELINE, min_module_positives=60), examples, tmp_path / "out")
    reasons = {(item["module"], item["target"]): item["reason"] for item in manifest["fallbacks"]}
    assert reasons[("search", "click")].startswith("held out of training")
    assert "min_module_positives=60" in reasons[("home_feed", "purchase")]
    assert ("home_feed", "click") not in reasons


def test_a_module_without_positives_of_a_target_falls_back_even_with_no_minimum(tmp_path):
    def no_purchase_on_the_home_feed(rows: list[dict]) -> list[dict]:
        return [{**row, "label_purchase": 0} if row["module_name"] == "home_feed" else row for row in rows]

    examples = write_synthetic_examples(tmp_path / "examples", synthetic_feature_spec(), no_purchase_on_the_home_feed)
    manifest = train_baseline(BaselineConfig(**TINY_BASELINE, min_module_positives=0), examples, tmp_path / "out")
    reasons = {(item["module"], item["target"]): item["reason"] for item in manifest["fallbacks"]}
    assert reasons == {("home_feed", "purchase"): "no positive 'purchase' in this module's training requests"}
    assert manifest["per_module"]["home_feed"]["purchase"] == {"fallback": reasons[("home_feed", "purchase")]}
    assert "path" in manifest["per_module"]["home_feed"]["click"]


def test_data_without_groups_trains_binary_probabilities(synthetic_examples, tmp_path, test_columns):
    examples = examples_with(synthetic_examples, tmp_path / "examples", has_groups=False)
    manifest = train_baseline(BaselineConfig(**TINY_BASELINE), examples, tmp_path / "out")
    assert set(manifest["objective"].values()) == {"binary"}
    scorer = GbdtBaseline.load(tmp_path / "out").per_module_scorer()
    assert scorer.outputs_probabilities
    scores = scorer(test_columns)["favorite"]
    assert scores.min() >= 0 and scores.max() <= 1


def test_config_rejects_unknown_keys_and_a_missing_baseline_is_named(tmp_path):
    with pytest.raises(ValueError, match="BaselineConfig: unknown key 'leaves'"):
        BaselineConfig.from_sources('{"leaves": 3}')
    config = BaselineConfig.from_sources(
        '{"seed": 3}', environ={"RANKER_BASELINE_SEED": "7", "RANKER_BASELINE_HASHED": "hash"}
    )
    assert config.seed == 3 and config.hashed == "hash"
    with pytest.raises(FileNotFoundError, match="ranker train-baseline"):
        GbdtBaseline.load(tmp_path)


def test_cli_trains_with_flag_overrides(synthetic_examples, tmp_path, capsys):
    from components.baseline import cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    config = json.dumps({"num_threads": 1, "early_stopping_rounds": 5})
    args = parser.parse_args(
        ["--examples", str(synthetic_examples), "--out", str(tmp_path), "--config", config, "--n-estimators", "3"]
    )
    assert cli.main(args) == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["config"]["n_estimators"] == 3 and manifest["config"]["early_stopping_rounds"] == 5
    assert "baseline written to" in capsys.readouterr().out


@pytest.mark.slow
def test_component_runs_under_kfp_local(synthetic_examples, kfp_local_root):
    from kfp import dsl

    from components.baseline.component import train_baseline as component

    @dsl.pipeline
    def baseline_only(examples_uri: str):
        examples = dsl.importer(artifact_uri=examples_uri, artifact_class=dsl.Dataset)
        component(examples=examples.output, config_json=json.dumps(TINY_BASELINE))

    run = baseline_only(examples_uri=str(synthetic_examples))
    manifests = list(kfp_local_root.rglob("manifest.json"))
    assert run is not None and len(manifests) == 1
    assert json.loads(manifests[0].read_text())["objective"]["engagement"] == "lambdarank"


def test_task_objective_sets_the_task_models_objective_and_engagement_stays_lambdarank():
    for objective in ("binary", "lambdarank"):
        config = BaselineConfig(task_objective=objective)
        task, graded = config.lightgbm_params(True, 4, graded=False), config.lightgbm_params(True, 4, graded=True)
        assert (task["objective"], graded["objective"]) == (objective, "lambdarank")
        assert task["metric"] == graded["metric"] == "ndcg" and task["eval_at"] == [10]
    assert BaselineConfig().lightgbm_params(False, 4, graded=True)["objective"] == "binary"
    with pytest.raises(ValueError, match="task_objective"):
        BaselineConfig.from_sources('{"task_objective": "xendcg"}')


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"num_leaves": 1}, "num_leaves must be >= 2, got 1"),
        ({"n_estimators": 0}, "n_estimators must be >= 1, got 0"),
        ({"learning_rate": 0}, "learning_rate must be a finite number > 0, got 0.0"),
        ({"learning_rate": -0.1}, "learning_rate must be a finite number > 0, got -0.1"),
        ({"tuning_trials": -1}, "tuning_trials must be >= 0, got -1"),
        ({"min_module_positives": -1}, "min_module_positives must be >= 0, got -1"),
        ({"feature_fraction": 0}, "feature_fraction must be in \\(0, 1\\], got 0.0"),
        ({"early_stopping_rounds": -1}, "early_stopping_rounds must be >= 0, got -1"),
        ({"lambda_l2": -1}, "lambda_l2 must be a finite number >= 0, got -1.0"),
    ],
)
def test_impossible_baseline_settings_are_refused_in_one_line_naming_the_key(settings, message):
    with pytest.raises(ValueError, match=f"^BaselineConfig: {message}$"):
        BaselineConfig.from_sources(json.dumps(settings))


def test_an_impossible_baseline_setting_from_the_environment_is_refused():
    with pytest.raises(ValueError, match="tuning_trials must be >= 0, got -1"):
        BaselineConfig.from_sources("{}", environ={"RANKER_BASELINE_TUNING_TRIALS": "-1"})


@pytest.mark.parametrize(
    ("requests", "positives", "has_groups", "reason"),
    [
        (1, 5, True, "1 training request < min_module_requests=2"),
        (3, 1, True, "1 training request with a positive < min_module_positives=2"),
        (3, 0, True, "0 training requests with a positive < min_module_positives=2"),
        (3, 1, False, "1 positive training row < min_module_positives=2"),
        (3, 0, False, "0 positive training rows < min_module_positives=2"),
    ],
)
def test_a_fallback_reason_counts_in_the_singular_and_the_plural(monkeypatch, requests, positives, has_groups, reason):
    from types import SimpleNamespace

    import components.baseline.gbdt as gbdt

    monkeypatch.setattr(gbdt, "target_labels", lambda *_args: None)
    train = SimpleNamespace(request=np.arange(requests), columns={}, positive_count=lambda *_args: positives)
    spec = SimpleNamespace(held_out_module="", task_names=["click"], has_groups=has_groups)
    config = SimpleNamespace(min_module_requests=2, min_module_positives=2)
    trainer = SimpleNamespace(config=config, spec=spec, train=train)
    assert gbdt._fallback_reason(trainer, "search", "click", np.arange(requests)) == reason


def test_a_module_seen_only_in_the_test_split_is_a_fallback_naming_why(synthetic_examples, tmp_path):
    import dataclasses

    spec = FeatureSpec.load(synthetic_examples)
    test = spec.splits["test"]
    splits = {**spec.splits, "test": dataclasses.replace(test, rows_per_module={**test.rows_per_module, "widget": 40})}
    examples = examples_with(synthetic_examples, tmp_path / "examples", splits=splits)
    manifest = train_baseline(BaselineConfig(**TINY_BASELINE), examples, tmp_path / "out")
    reasons = {(item["module"], item["target"]): item["reason"] for item in manifest["fallbacks"]}
    expected = "not in the training split (only in test): scored by the global model"
    assert reasons == {("widget", target): expected for target in manifest["targets"]}
    assert manifest["per_module"]["widget"]["click"] == {"fallback": expected}
