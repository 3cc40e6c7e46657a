"""The skew check's requests: what a caller sends when the feature store keeps the rest."""

from __future__ import annotations

from functools import partial
from types import SimpleNamespace

import numpy as np

from serving.feature_store import OnlineFeatures
from serving.skew_check import ids_only_requests
from tests.conftest import synthetic_feature_spec


def test_a_request_sends_the_ids_and_the_features_the_store_does_not_keep():
    spec = synthetic_feature_spec()
    rows = {
        "request_id": np.array(["r1", "r1", "r2"], dtype=object),
        "module_name": np.array(["search", "search", "home_feed"], dtype=object),
        "listing_id": np.array(["l1", "l2", "l3"], dtype=object),
        "listing_ctr": np.array([0.1, 0.2, 0.3]),  # stored: never sent
        "price": np.array([5.0, np.nan, 7.0]),  # differs within r1: per candidate (NaN as null); r2's is context
    }
    store = SimpleNamespace(stored={"listing_ctr"}, item_key="listing_id")
    store.sent_by_request = partial(OnlineFeatures.sent_by_request, store)  # the store's own rule, without Feast
    first, second = ids_only_requests(rows, store, spec)
    assert first == {
        "context": {"module_name": "search"},
        "candidates": {"listing_id": ["l1", "l2"], "price": [5.0, None]},
    }
    assert second == {"context": {"module_name": "home_feed", "price": 7.0}, "candidates": {"listing_id": ["l3"]}}


def test_an_entity_is_unchanged_until_its_first_event_since_the_cutoff_in_any_split():
    from serving.skew_check import unchanged_by_entity

    snapshot = {"cutoff": 100, "prior_until": 110, "entities": {"user": {"keys": ["user_id"]}}}
    rows = {"timestamp": np.array([100, 100, 120, 130]), "user_id": np.array(["a", "a", "a", "b"], dtype=object)}
    # both rows of a's first request, not its later one; b's only row
    assert unchanged_by_entity(rows, snapshot)["user"].tolist() == [True, True, False, True]
    heldout = {"timestamp": np.array([105]), "user_id": np.array(["b"], dtype=object)}  # the held-out module's
    events = {name: np.concatenate([values, heldout[name]]) for name, values in rows.items()}
    assert unchanged_by_entity(rows, snapshot, events)["user"].tolist() == [True, True, False, False]


def test_a_stored_feature_depends_on_its_entity_and_the_one_that_stores_its_key(tmp_path):
    import pandas as pd

    from serving.skew_check import StoredFeature, feature_dependencies

    tables = {
        "listing_id": ["listing_id", "category", "price", "hist_listing_id_impressions", "hist_listing_id_click_rate"],
        "category": ["category", "hist_category_impressions", "hist_category_click_rate"],
    }
    (tmp_path / "entities").mkdir()
    for name, columns in tables.items():
        pd.DataFrame({column: ["x"] for column in [*columns, "event_timestamp"]}).to_parquet(
            tmp_path / "entities" / f"{name}.parquet"
        )
    entity = {"listing_id": {"stored": ["category", "price"]}, "category": {"stored": []}}
    snapshot = {
        "entities": {
            name: {"keys": [name], "table": f"{name}.parquet", "rates": [f"hist_{name}_click_rate"], **entity[name]}
            for name in tables
        },
        "match": [["query_category", "category"]],
    }
    found = feature_dependencies(snapshot, str(tmp_path))
    listing, both = frozenset({"listing_id"}), frozenset({"listing_id", "category"})
    assert found["price"] == StoredFeature(listing, smoothed=False, catalog=listing)
    assert found["hist_listing_id_impressions"] == StoredFeature(listing)  # a count: the prior does not matter
    assert found["hist_listing_id_click_rate"] == StoredFeature(listing, smoothed=True)
    # the category's features are looked up by the listing's stored category
    assert found["hist_category_click_rate"] == StoredFeature(both, smoothed=True, catalog=listing)
    assert found["match_query_category_category"] == StoredFeature(listing, catalog=listing)
    for name in tables:  # written before rates were listed: every default-valued feature counts as one
        snapshot["entities"][name].pop("rates")
        snapshot["entities"][name]["defaults"] = {f"hist_{name}_impressions": 0.0, f"hist_{name}_click_rate": 0.1}
    assert feature_dependencies(snapshot, str(tmp_path))["hist_listing_id_impressions"].smoothed


def test_a_request_count_below_one_is_refused_before_anything_is_read():
    import pytest

    from ranker_core.cli_support import InvalidValueError
    from serving.skew_check import skew_check

    with pytest.raises(InvalidValueError, match="--max-requests must be 1 or more, got 0"):
        skew_check("no-examples", "no-model", "no-repo", max_requests=0)
