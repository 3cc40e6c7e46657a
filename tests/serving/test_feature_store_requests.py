"""`ranker serve --feature-store` refuses malformed and oversized ids-only requests before any store lookup.

Fast: a stand-in store (views that know every key) instead of a materialized Feast repo.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from kserve.errors import InvalidInput

from ranker_core.feature_store import match_feature
from serving.config import ServerConfig
from serving.feature_store import OnlineFeatures
from serving.open_inference import DecodedRequest, InputTensor
from serving.request import RequestError
from serving.server import RankerServingModel, RequestTooLargeError
from tests.conftest import synthetic_feature_spec


class StandInView:
    """A feature view keyed by ``key`` that knows every id: its one feature is the id with a prefix."""

    def __init__(self, key: str, feature: str) -> None:
        self.name, self.keys, self.features = key, [key], [feature]

    def values(self, keys: list[Any]) -> dict[str, np.ndarray]:
        return {self.features[0]: np.array([f"stored-{key}" for key in keys], dtype=object)}


def stand_in_features() -> OnlineFeatures:
    """:class:`OnlineFeatures` over stand-in views: the listing's ``category``, the user's ``user_country``,
    and the match of the request's ``query_category`` with the listing's ``category``."""
    features = OnlineFeatures.__new__(OnlineFeatures)  # no Feast repo to open
    features.item_key = "listing_id"
    features.views = [StandInView("listing_id", "category"), StandInView("user_id", "user_country")]
    features.match = [("query_category", "category")]
    features.sequence_match = []
    features.stored = {"category", "user_country", match_feature("query_category", "category")}
    features.served = {}
    return features


CONTEXT = {"module_name": "search", "user_id": "u1", "device": "ios"}
IDS = ["l1", "l2"]


@pytest.mark.parametrize(
    "context, candidates, lengths",
    [
        (CONTEXT, {"listing_id": IDS, "query_category": ["toys"]}, {"listing_id": 2, "query_category": 1}),
        ({"module_name": "search"}, {"listing_id": IDS, "user_id": ["u1"]}, {"listing_id": 2, "user_id": 1}),
        (
            {"module_name": "search"},
            {"listing_id": IDS, "user_id": ["u1", "u2", "u3"]},
            {"listing_id": 2, "user_id": 3},
        ),
        (CONTEXT, {"listing_id": IDS, "listing_age_days": [1.0]}, {"listing_age_days": 1, "listing_id": 2}),
    ],
)
def test_sent_columns_of_different_lengths_are_refused_naming_only_them(context, candidates, lengths):
    with pytest.raises(RequestError) as refused:
        stand_in_features().assemble(context, candidates, index=3)
    assert str(refused.value) == f"instances[3].candidates: columns have different lengths {lengths}"


def test_sent_columns_of_one_length_are_joined():
    columns = stand_in_features().assemble(CONTEXT, {"listing_id": IDS, "query_category": ["stored-l1", "x"]})
    assert columns["category"].tolist() == ["stored-l1", "stored-l2"]
    assert columns["user_country"].tolist() == ["stored-u1", "stored-u1"]
    assert columns["match_query_category_category"].tolist() == [1.0, 0.0]


class RecordingStore:
    """A feature store that records the requests it was asked to fill (and fills nothing)."""

    def __init__(self) -> None:
        self.filled: list[Any] = []

    def fill(self, body: Any) -> Any:
        self.filled.append(body)
        return body


def served_with_store(**limits: int) -> tuple[RankerServingModel, RecordingStore]:
    store = RecordingStore()
    spec = synthetic_feature_spec()
    model = RankerServingModel("mmoe-ranker", SimpleNamespace(feature_spec=spec), ServerConfig(**limits), store)
    return model, store


def instance(count: int) -> dict:
    return {"context": {"module_name": "search"}, "candidates": {"listing_id": [f"l{i}" for i in range(count)]}}


@pytest.mark.parametrize(
    "instances, error, message",
    [
        ([instance(6)], InvalidInput, "instances[0].candidates holds 6 candidates, more than the maximum 5"),
        ([instance(1), instance(6)], InvalidInput, "instances[1].candidates holds 6 candidates, more than the maximum"),
        ([instance(5)] * 3, RequestTooLargeError, "the request holds 15 candidates in total, more than the maximum 8"),
        ([instance(1)] * 4, InvalidInput, "'instances' holds 4 requests, more than the maximum 3"),
    ],
)
def test_a_v1_request_over_the_limits_is_refused_before_any_store_lookup(instances, error, message):
    model, store = served_with_store(max_candidates=5, max_instances=3, max_request_candidates=8)
    with pytest.raises(error) as refused:
        asyncio.run(model.preprocess({"instances": instances}))
    assert type(refused.value) is error and message in str(refused.value)
    assert store.filled == [], "no lookup for a request over the limits"


@pytest.mark.parametrize(
    "count, error, message",
    [
        (6, InvalidInput, "inputs.candidates holds 6 candidates, more than the maximum 5"),
        (9, RequestTooLargeError, "the request holds 9 candidates in total, more than the maximum 8"),
    ],
)
def test_v2_tensors_over_the_limits_are_refused_before_any_store_lookup(count, error, message):
    model, store = served_with_store(max_candidates=5 if count == 6 else 10, max_request_candidates=8)
    ids = InputTensor("listing_id", "BYTES", [count], [f"l{i}" for i in range(count)])
    module = InputTensor("module_name", "BYTES", [1], ["search"])
    with pytest.raises(error) as refused:
        asyncio.run(model._parse_tensors(DecodedRequest(inputs=[ids, module])))
    assert type(refused.value) is error and message in str(refused.value)
    assert store.filled == [], "no lookup for tensors over the limits"


def test_a_request_within_the_limits_reaches_the_store():
    model, store = served_with_store(max_candidates=5, max_instances=3, max_request_candidates=8)
    batch = asyncio.run(model.preprocess({"instances": [instance(5)]}))
    assert len(store.filled) == 1 and batch.num_candidates == 5
