"""`ranker serve --feature-store` refuses bad ids-only requests as specifically as a server without the store, and
``ranker_request_missing_features_total`` counts the features requests leave out, with the store and without.

Fast: the serving model without a TensorFlow model (its parser and refusals only) and a stand-in store (views that
know every key) instead of a materialized Feast repo. ``InvalidInput`` is KServe's 400.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from kserve.errors import InvalidInput
from prometheus_client import REGISTRY

from serving.config import ServerConfig
from serving.feature_store import OnlineFeatures
from serving.observability import MISSING_FEATURES, MissingFeatureCounts
from serving.open_inference import DecodedRequest, InputTensor
from serving.request import RequestError, RequestParser
from serving.server import RankerServingModel
from tests.conftest import synthetic_feature_spec
from tests.serving.json_bodies import near_valid


class StandInView:
    """A feature view keyed by ``key`` that knows every id: strings ``stored-<id>``, numbers the id's length."""

    def __init__(self, key: str, strings: list[str], numbers: list[str]) -> None:
        self.name, self.keys, self.strings, self.numbers = key, [key], strings, numbers
        self.features = [*strings, *numbers]

    def values(self, keys: list[Any]) -> dict[str, np.ndarray]:
        strings = {name: np.array([f"stored-{key}" for key in keys], dtype=object) for name in self.strings}
        numbers = {name: np.array([float(len(str(key))) for key in keys]) for name in self.numbers}
        return {**strings, **numbers}


def stand_in_store() -> OnlineFeatures:
    """The listing's ``category`` and ``price`` and the user's ``user_category_affinity``, over the synthetic spec:
    a request sends ``module_name``, ``user_id``, ``listing_id``, ``tags`` and ``listing_ctr`` (not stored)."""
    features = OnlineFeatures.__new__(OnlineFeatures)  # no Feast repo to open
    features.item_key = "listing_id"
    features.views = [
        StandInView("listing_id", ["category"], ["price"]),
        StandInView("user_id", [], ["user_category_affinity"]),
    ]
    features.match, features.sequence_match, features.served = [], [], {}
    features.stored = {"category", "price", "user_category_affinity"}
    return features


def serving_model(store: bool) -> RankerServingModel:
    spec = synthetic_feature_spec()
    features = stand_in_store() if store else None
    return RankerServingModel("mmoe-ranker", SimpleNamespace(feature_spec=spec), ServerConfig(), features)


MODELS = {"store": serving_model(True), "plain": serving_model(False)}
CONTEXT = {"module_name": "search", "user_id": "u1"}
IDS = ["l1", "l2", "l3"]


def refusal_v1(mode: str, instance: Any) -> str:
    """The 400's message for a v1 body of the one ``instance`` (with a copy: the store fills it in place)."""
    with pytest.raises(InvalidInput) as refused:
        asyncio.run(MODELS[mode].preprocess({"instances": [_copy(instance)]}))
    assert type(refused.value) is InvalidInput, "a 400"
    return str(refused.value)


def refusal_v2(mode: str, *tensors: InputTensor) -> str:
    """The 400's message for a v2 request of ``tensors``."""
    with pytest.raises(InvalidInput) as refused:
        asyncio.run(MODELS[mode]._parse_tensors(DecodedRequest(inputs=list(tensors))))
    assert type(refused.value) is InvalidInput, "a 400"
    return str(refused.value)


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value


def tensor(name: str, data: list, shape: list[int] | None = None) -> InputTensor:
    datatype = "FP32" if name in ("price", "listing_ctr", "user_category_affinity") else "BYTES"
    return InputTensor(name, datatype, [len(data)] if shape is None else shape, data)


# -- (a), (b) and other candidate shapes: the store answers the server's own message -----------------------------


@pytest.mark.parametrize(
    "instance, message",
    [
        ({"context": CONTEXT}, "instances[0].candidates is required (absent or null)"),
        ({"context": CONTEXT, "candidates": None}, "instances[0].candidates is required (absent or null)"),
        ({"context": CONTEXT, "candidates": []}, "instances[0].candidates is empty: a ranking request needs at least"),
        ({"context": CONTEXT, "candidates": {}}, "instances[0].candidates is empty: a ranking request needs at least"),
        (
            {"context": CONTEXT, "candidates": {"listing_id": [], "listing_ctr": []}},
            "instances[0].candidates is empty: a ranking request needs at least one candidate",
        ),
        ({"context": CONTEXT, "candidates": "l1"}, "instances[0].candidates must be a list of objects or an object"),
        ({"context": CONTEXT, "candidates": [{"listing_id": "l1"}, 5]}, "instances[0].candidates[1] must be an object"),
        (
            {"context": CONTEXT, "candidates": {"listing_id": "l1"}},
            "instances[0].candidates.listing_id must be a list (columnar candidates), got a string",
        ),
        (
            {"context": CONTEXT, "candidate": {"listing_id": IDS}},
            "instances[0] has unknown field(s) ['candidate']: expected 'context' and 'candidates'",
        ),
    ],
)
def test_malformed_candidates_get_the_same_message_with_the_store_as_without(instance, message):
    assert message in refusal_v1("plain", instance)
    assert refusal_v1("store", instance) == refusal_v1("plain", instance)


def test_an_empty_chunk_is_still_joined_outside_a_request():
    """``ranker batch-rank`` joins table chunks through :meth:`OnlineFeatures.assemble`: only requests need one."""
    columns = stand_in_store().assemble({}, {"listing_id": [], "user_id": []})
    assert {name: len(values) for name, values in columns.items()} == dict.fromkeys(
        ["listing_id", "user_id", "category", "price", "user_category_affinity"], 0
    )
    with pytest.raises(RequestError, match=r"^instances\[2\]\.candidates is empty"):
        stand_in_store().assemble({}, {"listing_id": []}, index=2, at_least_one=True)


def test_a_request_with_unknown_top_level_fields_is_left_to_the_parser_without_a_lookup():
    body = {"instances": [{"context": CONTEXT, "candidates": {"listing_id": IDS, "price": [1.0] * 3}}], "x": 1}
    for mode in MODELS:
        with pytest.raises(InvalidInput, match=r"unknown top-level field\(s\) \['x'\]"):
            asyncio.run(MODELS[mode].preprocess(_copy(body)))


def test_the_second_instance_without_candidates_is_named():
    good = {"context": CONTEXT, "candidates": {"listing_id": IDS}}
    with pytest.raises(InvalidInput, match=r"^instances\[1\]\.candidates is required"):
        asyncio.run(MODELS["store"].preprocess({"instances": [good, {"context": CONTEXT}]}))


@pytest.mark.parametrize(
    "candidates, message",
    [
        ([{}, {}], "instances[0].candidates lack 'listing_id': with a feature store, send 'listing_id' ids"),
        ({"listing_ctr": [0.1, 0.2]}, "instances[0].candidates lack 'listing_id': with a feature store"),
    ],
)
def test_candidates_without_ids_are_refused_naming_the_id(candidates, message):
    assert refusal_v1("store", {"context": CONTEXT, "candidates": candidates}).startswith(message)


def test_ids_sent_in_the_context_are_refused_naming_where_they_belong():
    instance = {"context": {**CONTEXT, "listing_id": "l1"}, "candidates": {"listing_ctr": [0.1, 0.2]}}
    assert refusal_v1("store", instance) == (
        "instances[0].context.listing_id: with a feature store, send 'listing_id' ids in instances[0].candidates, "
        "one per candidate, not in the context"
    )


# -- (c), (d): KServe v2 requests are refused in terms of their input tensors ------------------------------------


def test_a_v2_id_tensor_of_one_element_among_longer_ones_is_refused_naming_the_tensor_and_the_shape():
    tensors = (tensor("listing_id", ["l1"]), tensor("listing_ctr", [0.1, 0.2, 0.3]), tensor("module_name", ["search"]))
    assert refusal_v2("store", *tensors) == (
        "input tensor 'listing_id' has shape [1]; the others have 3 rows: with a feature store, "
        "send one id per candidate (shape [3])"
    )
    asyncio.run(MODELS["plain"]._parse_tensors(DecodedRequest(inputs=list(tensors))))  # without the store: broadcast


def test_a_v2_request_of_one_element_tensors_is_one_candidate():
    tensors = [tensor("listing_id", ["l1"]), tensor("module_name", ["search"]), tensor("user_id", ["u1"])]
    batch = asyncio.run(MODELS["store"]._parse_tensors(DecodedRequest(inputs=tensors)))
    assert batch.num_candidates == 1 and batch.columns["category"].tolist() == ["stored-l1"]


@pytest.mark.parametrize(
    "tensors, message",
    [
        (
            [tensor("listing_id", ["l1", "l2"], [2, 1]), tensor("module_name", ["search"])],
            "input tensor 'listing_id' has shape [2, 1]; inputs are one-dimensional",
        ),
        (
            [tensor("listing_id", ["l1", "l2"]), tensor("listing_ctr", [0.1, 0.2, 0.3])],
            "input tensor 'listing_id' has shape [2]; the others have 3 rows",
        ),
        ([tensor("listing_id", []), tensor("module_name", ["search"])], "input tensor 'listing_id' has shape [0]"),
        ([tensor("listing_id", []), tensor("module_name", [])], "inputs.candidates is empty"),
    ],
)
def test_v2_tensors_of_the_wrong_shape_get_the_same_message_with_the_store_as_without(tensors, message):
    assert message in refusal_v2("plain", *tensors)
    assert refusal_v2("store", *tensors) == refusal_v2("plain", *tensors)


def test_a_v2_tensor_of_no_elements_beside_one_element_ones_is_told_its_shape():
    message = refusal_v2("plain", tensor("listing_id", []), tensor("module_name", ["search"]))
    assert message == "input tensor 'listing_id' has shape [0]; the others have 1 rows: send [1]"


@pytest.mark.parametrize(
    "tensors",
    [
        [tensor("module_name", ["search"])],
        [tensor("module_name", ["search", "search"])],
        [tensor("listing_ctr", [0.1, 0.2]), tensor("module_name", ["search"])],
    ],
)
def test_a_v2_request_without_the_id_tensor_is_refused_naming_it(tensors):
    assert refusal_v2("store", *tensors).startswith(
        "no input tensor 'listing_id': with a feature store, send 'listing_id' ids, one per candidate"
    )


@pytest.mark.parametrize("shape", [[2], [1]])
@pytest.mark.parametrize("name", ["price", "category", "user_category_affinity"])
def test_a_v2_tensor_of_a_stored_feature_is_refused_naming_the_tensor(name, shape):
    stored = tensor(name, [1.0, 2.0][: shape[0]] if name != "category" else ["toys", "art"][: shape[0]])
    message = refusal_v2("store", tensor("listing_id", ["l1", "l2"]), stored, tensor("module_name", ["search"]))
    assert message == (
        f"input tensor '{name}' comes from the feature store; send ids only "
        "(GET /v2/models/<name> lists the inputs a request sends)"
    )
    assert "instances[0]" not in message


def test_v1_names_where_the_stored_feature_was_sent():
    candidates = {"listing_id": IDS, "price": [1.0, 2.0, 3.0]}
    assert refusal_v1("store", {"context": CONTEXT, "candidates": candidates}) == (
        "instances[0].candidates: price comes from the feature store; send ids only"
    )
    context = {**CONTEXT, "category": "toys"}
    assert refusal_v1("store", {"context": context, "candidates": {"listing_id": IDS}}) == (
        "instances[0].context: category comes from the feature store; send ids only"
    )


def test_several_stored_features_sent_are_named_with_the_plural_verb():
    candidates = {"listing_id": IDS, "price": [1.0, 2.0, 3.0], "category": ["toys", "art", "toys"]}
    assert refusal_v1("store", {"context": CONTEXT, "candidates": candidates}) == (
        "instances[0].candidates: category, price come from the feature store; send ids only"
    )
    message = refusal_v2(
        "store",
        tensor("listing_id", ["l1", "l2"]),
        tensor("price", [1.0, 2.0]),
        tensor("category", ["toys", "art"]),
        tensor("module_name", ["search"]),
    )
    assert message == (
        "input tensors 'category', 'price' come from the feature store; send ids only "
        "(GET /v2/models/<name> lists the inputs a request sends)"
    )


# -- no body the store takes gets anything but a RequestError (the server's 4xx) ---------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=near_valid)
def test_no_near_valid_body_raises_anything_but_a_request_error_with_the_store(body):
    parser = MODELS["store"].parser
    try:
        parser.check_limits(body)
        parser.parse(stand_in_store().fill(body))
    except RequestError:
        pass


# -- ranker_request_missing_features_total ------------------------------------------------------------------------


def missing(feature: str) -> float:
    """The counter's value for ``feature`` as a scrape of the default registry reads it (the tally flushed)."""
    return REGISTRY.get_sample_value("ranker_request_missing_features_total", {"feature": feature}) or 0.0


def counted(parse: Any) -> dict[str, float]:
    """How much each of the synthetic spec's features was counted while ``parse()`` ran."""
    names = synthetic_feature_spec().feature_names
    before = {name: missing(name) for name in names}
    parse()
    return {name: missing(name) - before[name] for name in names if missing(name) != before[name]}


def test_an_ids_only_request_counts_the_feature_it_leaves_out_that_the_store_does_not_keep():
    ids_only = {"instances": [{"context": CONTEXT, "candidates": {"listing_id": IDS, "tags": ["a", None, "b"]}}]}
    # category, price and user_category_affinity come from the store; listing_ctr, the caller's to send, is missing
    assert counted(lambda: asyncio.run(MODELS["store"].preprocess(_copy(ids_only)))) == {"listing_ctr": 1.0}
    sent = {"listing_id": IDS, "tags": [None] * 3, "listing_ctr": [0.1, None, 0.2]}  # null values are sent
    body = {"instances": [{"context": CONTEXT, "candidates": sent}]}
    assert counted(lambda: asyncio.run(MODELS["store"].preprocess(body))) == {}


def test_without_the_store_every_feature_left_out_is_counted_once_per_instance():
    rows = [{"listing_id": "l1", "price": 3.0}, {"listing_id": "l2", "category": "toys"}]  # each key sent by a row
    body = {
        "instances": [
            {"context": CONTEXT, "candidates": rows},
            {"context": {"module_name": "search"}, "candidates": {"price": [1.0]}},
        ]
    }
    assert counted(lambda: asyncio.run(MODELS["plain"].preprocess(body))) == {
        "tags": 2.0,
        "listing_ctr": 2.0,
        "user_category_affinity": 2.0,
        "category": 1.0,
        "listing_id": 1.0,
        "user_id": 1.0,
    }


def test_a_v2_request_counts_as_one_and_a_refused_request_not_at_all():
    tensors = [tensor("listing_id", ["l1", "l2"]), tensor("module_name", ["search"]), tensor("user_id", ["u1"])]
    assert counted(lambda: asyncio.run(MODELS["store"]._parse_tensors(DecodedRequest(inputs=tensors)))) == {
        "tags": 1.0,
        "listing_ctr": 1.0,
    }
    good = {"context": CONTEXT, "candidates": {"price": [1.0]}}
    bad = {"context": CONTEXT, "candidates": {"price": ["cheap"]}}

    def refused() -> None:
        with pytest.raises(InvalidInput):
            asyncio.run(MODELS["plain"].preprocess({"instances": [good, bad]}))

    assert counted(refused) == {}


def test_each_feature_has_its_series_from_the_start():
    RequestParser(synthetic_feature_spec())
    for name in synthetic_feature_spec().feature_names:
        assert REGISTRY.get_sample_value("ranker_request_missing_features_total", {"feature": name}) is not None


def test_the_tally_reaches_the_counter_after_flush_s_or_at_a_scrape():
    now = [0.0]
    counts = MissingFeatureCounts(flush_s=1.0, clock=lambda: now[0])
    counts.add(frozenset({"price", "tags"}))
    counts.add(frozenset({"price"}))
    counts.add(frozenset())
    assert counts.counter.labels("price")._value.get() == 0, "tallied, not yet counted"
    now[0] = 1.0
    counts.add(frozenset())  # the first add after flush_s moves the tally
    assert counts.counter.labels("price")._value.get() == 2 and counts.counter.labels("tags")._value.get() == 1
    counts.add(frozenset({"tags"}))
    samples = {(s.name, s.labels["feature"]): s.value for m in counts.collect() for s in m.samples}
    assert samples[("ranker_request_missing_features_total", "tags")] == 2, "a scrape flushes first"
    assert MISSING_FEATURES in REGISTRY._collector_to_names
