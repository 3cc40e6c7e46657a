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
