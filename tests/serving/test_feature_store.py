"""The online path: extraction's entity snapshot -> ranker materialize (Feast) -> ids-only requests.

The skew check: test rows served with ids only get the extraction's features
and the offline predictions (|delta| < 1e-5) for entities unchanged since the cutoff.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from components.features.feature_store import MaterializeConfig, materialize
from components.features.options import BeamOptions
from components.features.pipeline import ExtractionConfig, extract_features
from serving.feature_store import LOOKUPS, UNKNOWN_IDS, OnlineFeatures
from serving.request import RequestError
from serving.skew_check import skew_check
from tests.data.impressions import impressions_frame, write_parquet

pytestmark = pytest.mark.slow

LOCAL = BeamOptions(runner="DirectRunner", direct_num_workers=1, direct_running_mode="in_memory")
ITEM_FEATURES = ["category", "subcategory", "shop_id", "price", "listing_age_days", "rating", "num_reviews", "tags"]


def static_entities(frame: pd.DataFrame) -> pd.DataFrame:
    """The same raw features for a listing (and a user's country) in every row, as a catalog would have,
    and one device per request (a request's context)."""
    frame = frame.copy()
    frame["tags"] = frame["tags"].map("|".join)
    for column in ITEM_FEATURES:
        frame[column] = frame.groupby("listing_id")[column].transform("first")
    frame["user_country"] = frame.groupby("user_id")["user_country"].transform("first")
    frame["device"] = frame.groupby("request_id")["device"].transform("first")
    return frame


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict:
    from trainer.config import TrainerConfig
    from trainer.train import train_and_export

    root = tmp_path_factory.mktemp("feature_store")
    raw = static_entities(impressions_frame(n_requests=120, candidates=6, seed=3))
    examples = root / "examples"
    extract_features(ExtractionConfig(str(write_parquet(raw, root / "raw")), "simulator", str(examples), beam=LOCAL))
    config = TrainerConfig(epochs=1, batch_size=256, expert_units=[16, 8], tower_units=[8], embedding_dim=4)
    train_and_export(examples, root / "model", config)
    summary = materialize(MaterializeConfig(examples=str(examples), repo=str(root / "repo"), model_version="7"))
    return {"examples": examples, "model": root / "model", "repo": root / "repo", "summary": summary}


def test_materialize_tags_the_views_with_the_model_version(store):
    assert store["summary"]["model_version"] == "7"
    assert set(store["summary"]["views"]) == {"listing_id", "shop_id", "category", "user", "user_category"}


def test_skew_check_served_features_and_predictions_equal_the_offline_ones(store):
    report = skew_check(str(store["examples"]), str(store["model"]), str(store["repo"]))
    assert report.rows > 0, "some test rows have entities unchanged since the cutoff"
    assert report.mismatches == {}
    assert report.max_prediction_delta < 1e-5
    assert report.ok


def test_unknown_ids_get_training_defaults_and_are_counted(store):
    features = OnlineFeatures(str(store["repo"]), "listing_id", cache_seconds=0)
    before = UNKNOWN_IDS.labels("listing_id")._value.get()
    columns = features.assemble({"module_name": "search", "user_id": "nobody"}, {"listing_id": ["l-new"]})
    assert UNKNOWN_IDS.labels("listing_id")._value.get() == before + 1
    assert columns["hist_listing_id_impressions"].tolist() == [0.0]
    assert columns["hist_user_impressions"].tolist() == [0.0]
    assert np.isnan(columns["price"]).all() and columns["category"].tolist() == [""]
    snapshot = json.loads((store["examples"] / "entities" / "snapshot.json").read_text())
    assert columns["hist_listing_id_click_rate"].tolist() == [
        snapshot["entities"]["listing_id"]["defaults"]["hist_listing_id_click_rate"]
    ]


def test_a_warm_cache_answers_without_the_store_and_as_the_store_does(store):
    cached = OnlineFeatures(str(store["repo"]), "listing_id", cache_seconds=3600, cache_entries=100)
    direct = OnlineFeatures(str(store["repo"]), "listing_id", cache_seconds=0)
    ids = ["l1", "l2", "l-new", "l1", 7, None]
    context = {"module_name": "search", "user_id": "u1", "query_category": "toys"}
    first = cached.assemble(context, {"listing_id": list(ids)})
    before = {view.name: LOOKUPS.labels(view.name)._value.get() for view in cached.views}
    again = cached.assemble(context, {"listing_id": list(ids)})
    assert {view.name: LOOKUPS.labels(view.name)._value.get() for view in cached.views} == before
    expected = direct.assemble(context, {"listing_id": list(ids)})
    assert set(first) == set(again) == set(expected)
    for name, values in expected.items():
        np.testing.assert_array_equal(np.asarray(first[name]), np.asarray(values), err_msg=name)
        np.testing.assert_array_equal(np.asarray(again[name]), np.asarray(values), err_msg=name)
    assert first["listing_id"] == ids, "the ids sent are passed on as sent"


def test_a_feature_both_sent_and_stored_is_refused(store):
    features = OnlineFeatures(str(store["repo"]), "listing_id")
    with pytest.raises(RequestError, match="price come from the feature store"):
        features.assemble({"module_name": "search"}, {"listing_id": ["l1"], "price": [3.0]})
    with pytest.raises(RequestError, match="send 'listing_id' ids"):
        features.assemble({"module_name": "search"}, {"device": ["ios"]})
