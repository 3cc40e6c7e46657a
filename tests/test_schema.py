"""The contract every step shares: the feature spec and the example layout."""

import json

import numpy as np
import pytest

from ranker_core.schema import DEFAULT_TASKS, Feature, FeatureSpec, SplitStats, label_key
from trainer.examples import read_split, shard_paths, write_shards


@pytest.fixture
def spec() -> FeatureSpec:
    return FeatureSpec(
        tasks=list(DEFAULT_TASKS),
        features=[
            Feature("price", "numeric", transform="log1p", encoding="pwl", quantiles=[1.0, 2.0]),
            Feature("category", "categorical", vocabulary=["art", "toys"]),
        ],
        modules=["home_feed", "search"],
        splits={"train": SplitStats(rows=2, requests=1, positives={"click": 1})},
        roles={"item_id": "listing_id"},
    )


def test_feature_spec_round_trips_through_json(tmp_path, spec):
    spec.save(tmp_path / "feature_spec.json")
    loaded = FeatureSpec.load(tmp_path)
    assert loaded == spec
    assert loaded.task_names == ("click", "favorite", "add_to_cart", "purchase")
    assert loaded.feature("price").encoding == "pwl"


def test_feature_spec_errors_name_the_problem(tmp_path, spec):
    with pytest.raises(KeyError, match="'color' is not in the feature spec"):
        spec.feature("color")
    with pytest.raises(FileNotFoundError, match="run `ranker extract-features` first"):
        FeatureSpec.load(tmp_path)
    (tmp_path / "feature_spec.json").write_text(json.dumps({"tasks": []}))
    with pytest.raises(ValueError, match="not a valid feature spec"):
        FeatureSpec.load(tmp_path)


def test_examples_round_trip_with_defaults_for_missing_values(tmp_path, spec):
    rows = [
        {
            "request_id": "r1",
            "module_name": "search",
            "position": 0,
            "timestamp": 7,
            label_key("click"): 1,
            "price": 3.5,
            "category": "art",
        },
        {"request_id": "r1", "module_name": "search", "position": 1, "timestamp": 7, "price": None, "category": None},
    ]
    write_shards(rows, tmp_path, "train", spec)
    columns = read_split(tmp_path, "train", spec)
    assert list(columns["request_id"]) == ["r1", "r1"]
    assert list(columns["category"]) == ["art", ""]
    assert columns["price"][0] == pytest.approx(3.5) and np.isnan(columns["price"][1])
    assert list(columns[label_key("click")]) == [1, 0]
    assert list(columns["position"]) == [0, 1]


def test_missing_split_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="eval"):
        shard_paths(tmp_path, "eval")
