"""The baseline is a fair competitor: row order within a request changes nothing, early stopping
keeps real models, and every global model gets a recorded tuning search."""

import json
from pathlib import Path

import numpy as np
import pytest

from components.baseline.gbdt import BaselineConfig, _sample_requests, load_manifest, train_baseline
from components.baseline.scoring import GbdtBaseline
from components.baseline.tuning import SEARCH_SPACE, draw_candidates, search
from ranker_core.schema import REQUEST_ID, Feature, FeatureSpec
from ranker_core.targets import graded_relevance
from tests.baseline.conftest import TINY_BASELINE, examples_with, reordered_examples
from trainer.examples import read_split

UNTUNED = {**TINY_BASELINE, "tuning_trials": 0}


@pytest.fixture(scope="module")
def logged(synthetic_examples, tmp_path_factory) -> dict[str, Path]:
    """The same examples logged best-first (so the logged order alone ranks well) and in a random order."""
    root = tmp_path_factory.mktemp("logged")
    tasks = FeatureSpec.load(synthetic_examples).task_names
    rng = np.random.default_rng(5)
    keys = {
        "best_first": lambda columns: -graded_relevance(columns, tasks),
        "random": lambda columns: rng.random(len(columns[REQUEST_ID])),
    }
    return {name: reordered_examples(synthetic_examples, root / name, key) for name, key in keys.items()}


@pytest.fixture(scope="module")
def baselines(logged, tmp_path_factory) -> dict[str, Path]:
    """The untuned baseline trained on each order of :func:`logged`."""
    root = tmp_path_factory.mktemp("baselines")
    for name, examples in logged.items():
        train_baseline(BaselineConfig(**UNTUNED), examples, root / name)
    return {name: root / name for name in logged}


def test_the_logged_order_within_requests_changes_nothing(baselines, synthetic_examples):
    best_first, shuffled = (load_manifest(folder) for folder in baselines.values())
    assert _what_early_stopping_saw(best_first) == _what_early_stopping_saw(shuffled)
    columns = read_split(synthetic_examples, "test", FeatureSpec.load(synthetic_examples))
    predictions = [GbdtBaseline.load(folder).per_module_scorer()(columns) for folder in baselines.values()]
    for target, scores in predictions[0].items():
        np.testing.assert_array_equal(scores, predictions[1][target])


def _what_early_stopping_saw(manifest: dict) -> dict:
    """Best iteration, eval scores and row counts of every model, by (global or module, target)."""
    scopes = {"global": manifest["global"], **manifest["per_module"]}
    keys = ("best_iteration", "eval_scores", "train_rows", "eval_rows")
    return {
        (scope, target): {key: entry.get(key) for key in keys}
        for scope, models in scopes.items()
        for target, entry in models.items()
    }


def test_early_stopping_keeps_more_than_one_tree_on_data_with_signal(logged, tmp_path):
    global_only = {**UNTUNED, "min_module_requests": 10**9}
    for seed in range(3):
        manifest = train_baseline(BaselineConfig(**global_only, seed=seed), logged["best_first"], tmp_path / str(seed))
        for target in ("click", "engagement"):  # the targets with a positive in most requests
            assert manifest["global"][target]["best_iteration"] > 1, (seed, target)


def test_the_logged_position_is_never_a_feature_even_when_the_spec_lists_it(logged, tmp_path):
    spec = FeatureSpec.load(logged["best_first"])
    position = Feature("position", "numeric", mean=4.5, std=2.9, min=0.0, max=9.0)
    examples = examples_with(logged["best_first"], tmp_path / "examples", features=[*spec.features, position])
    encoder = train_baseline(BaselineConfig(**UNTUNED), examples, tmp_path / "baseline")["encoder"]
    assert "position" in encoder["dropped"]
    assert all(column["source"] != "position" for column in encoder["columns"])


def test_tuning_is_seeded_starts_from_the_config_and_is_recorded(synthetic_examples, tmp_path):
    assert draw_candidates(4, seed=3) == draw_candidates(4, seed=3) != draw_candidates(4, seed=4)
    manifest = train_baseline(BaselineConfig(**{**TINY_BASELINE, "tuning_trials": 3}), synthetic_examples, tmp_path)
    tuning = manifest["tuning"]
    assert tuning["trials"] == 3 and tuning["seconds"] > 0 and set(tuning["targets"]) == set(manifest["targets"])
    click = tuning["targets"]["click"]
    assert click["trials_run"] == 3 and click["metric"] == "ndcg@10"
    assert click["trials"][0]["params"] == {
        field: getattr(BaselineConfig(**TINY_BASELINE), field) for field in SEARCH_SPACE
    }
    assert click["best_eval_score"] == max(trial["eval_score"] for trial in click["trials"])
    assert all(set(trial) >= {"params", "eval_score", "best_iteration"} for trial in click["trials"])
    chosen = manifest["global"]["click"]
    assert chosen["eval_scores"]["ndcg@10"] == click["best_eval_score"]
    assert {field: chosen["params"][field] for field in SEARCH_SPACE} == click["best_params"]
    for models in manifest["per_module"].values():  # the config or the global choice, by the module's eval rows
        assert {field: models["click"]["params"][field] for field in SEARCH_SPACE} in (
            click["trials"][0]["params"],
            click["best_params"],
        )
    assert json.loads((tmp_path / "manifest.json").read_text())["tuning"] == tuning


def test_the_time_budget_stops_tuning_after_the_first_trial(synthetic_examples, tmp_path):
    config = BaselineConfig(**{**TINY_BASELINE, "tuning_trials": 5, "tuning_budget_seconds": 0})
    manifest = train_baseline(config, synthetic_examples, tmp_path)
    assert {target: search["trials_run"] for target, search in manifest["tuning"]["targets"].items()} == dict.fromkeys(
        manifest["targets"], 1
    )


def test_the_budget_counts_the_search_threads_cpu_time_not_the_clock():
    """A busy machine (trials waiting for a core) runs the same trials: only the search's own CPU counts."""
    import time

    def fit(work: float):
        def trial(overrides):
            started = time.thread_time()
            if work:
                while time.thread_time() - started < work:  # compute
                    pass
            else:
                time.sleep(0.05)  # waiting, as for a core another process holds
            return None, {"eval_scores": {"ndcg@10": 0.5}, "best_iteration": 1, "train_rows": 1}, dict(overrides)

        return trial

    candidates = [{"num_leaves": leaves} for leaves in (7, 15, 31, 63)]
    assert len(search(fit(0.0), candidates, "ndcg@10", budget_seconds=0.01).trials) == 4
    assert len(search(fit(0.02), candidates, "ndcg@10", budget_seconds=0.01).trials) == 1


def test_tuning_off_trains_the_config_as_given(baselines):
    manifest = load_manifest(baselines["random"])
    assert manifest["tuning"]["trials"] == 0 and manifest["tuning"]["targets"] == {}
    params = manifest["global"]["engagement"]["params"]
    assert params["num_leaves"] == TINY_BASELINE["num_leaves"] and params["objective"] == "lambdarank"
    assert params["label_gain"] == [0.0, 1.0, 3.0, 7.0, 15.0]


def test_trials_train_on_a_sample_of_whole_requests_and_the_winner_is_refit_on_every_row(synthetic_examples, tmp_path):
    config = BaselineConfig(**{**TINY_BASELINE, "tuning_trials": 3, "tuning_sample_rows": 600})
    manifest = train_baseline(config, synthetic_examples, tmp_path)
    click, chosen = manifest["tuning"]["targets"]["click"], manifest["global"]["click"]
    assert click["trial_train_rows"] <= 600 < chosen["train_rows"]
    assert all(trial["eval_score"] is not None for trial in click["trials"])
    # The sample's winner and the config as given are refit on every row and the better is kept.
    config_values = click["trials"][0]["params"]
    sample_winner = max(click["trials"], key=lambda trial: trial["eval_score"])["params"]
    refits = click["refits"]
    assert [refit["params"] for refit in refits] == [config_values] + [sample_winner] * (sample_winner != config_values)
    kept = max(refits, key=lambda refit: refit["eval_score"])
    assert click["best_params"] == kept["params"] == {field: chosen["params"][field] for field in SEARCH_SPACE}
    assert click["best_eval_score"] == kept["eval_score"] == chosen["eval_scores"]["ndcg@10"]
    assert chosen["best_iteration"] == kept["best_iteration"]


def test_trials_early_stop_on_a_sample_of_eval_requests_and_the_refits_on_every_eval_row(synthetic_examples, tmp_path):
    config = BaselineConfig(**{**TINY_BASELINE, "tuning_trials": 3, "tuning_sample_rows": 0, "tuning_eval_rows": 150})
    manifest = train_baseline(config, synthetic_examples, tmp_path)
    click, chosen = manifest["tuning"]["targets"]["click"], manifest["global"]["click"]
    assert click["trial_eval_rows"] <= 150 < chosen["eval_rows"]
    assert click["trial_train_rows"] == chosen["train_rows"]  # only the eval rows were sampled
    assert click["refits"] and click["best_eval_score"] == chosen["eval_scores"]["ndcg@10"]
    assert manifest["tuning"]["eval_rows"] == 150


def test_sample_requests_keeps_whole_requests_in_order_and_is_seeded():
    request = np.repeat(np.arange(50), 4)
    rows = np.arange(200) + 1000
    sample = _sample_requests(rows, request, max_rows=30, seed=3)
    assert len(sample) == 28 and np.all(np.diff(sample) > 0)
    assert np.all(np.bincount(request[sample - 1000], minlength=50) % 4 == 0)
    assert np.array_equal(sample, _sample_requests(rows, request, max_rows=30, seed=3))
    assert not np.array_equal(sample, _sample_requests(rows, request, max_rows=30, seed=4))


def test_models_trained_side_by_side_equal_models_trained_one_by_one(synthetic_examples, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    for threads, out in ((1, one), (2, two)):
        train_baseline(BaselineConfig(**{**TINY_BASELINE, "num_threads": threads}), synthetic_examples, out)
    models = sorted(path.relative_to(one) for path in one.rglob("*.txt"))
    assert models and models == sorted(path.relative_to(two) for path in two.rglob("*.txt"))
    for model in models:
        assert (one / model).read_text() == (two / model).read_text(), model
