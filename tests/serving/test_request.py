"""Request parsing and response building, without a server."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from serving.request import (
    RequestError,
    RequestParser,
    TooManyCandidatesError,
    build_response,
    numeric_column,
    string_column,
)
from tests.conftest import synthetic_feature_spec


@pytest.fixture(scope="module")
def parser() -> RequestParser:
    return RequestParser(synthetic_feature_spec(), max_candidates=5, max_instances=3)


def body(candidates, context=None, **parameters) -> dict:
    request = {
        "instances": [
            {
                "context": {"module_name": "search", "user_id": "u1"} if context is None else context,
                "candidates": candidates,
            }
        ]
    }
    if parameters:
        request["parameters"] = parameters
    return request


ROWS = [
    {"listing_id": "l1", "price": 10.0, "category": "toys", "tags": "gift|sale"},
    {"listing_id": "l2", "price": None, "category": "art", "tags": ["vintage", "gift"]},
    {"listing_id": 7, "listing_ctr": 0.2},
]


def test_rows_and_columns_give_the_same_columns(parser):
    columns = {
        "listing_id": ["l1", "l2", 7],
        "price": [10.0, None, None],
        "category": ["toys", "art", None],
        "tags": ["gift|sale", ["vintage", "gift"], None],
        "listing_ctr": [None, None, 0.2],
    }
    complete_rows = [{key: values[index] for key, values in columns.items()} for index in range(3)]
    from_columns = parser.parse(body(columns)).columns
    for rows in (ROWS, complete_rows):  # rows lacking keys, and rows that all carry every key
        from_rows = parser.parse(body(rows)).columns
        assert set(from_rows) == set(from_columns) == {"module_name", *synthetic_feature_spec().feature_names}
        for key, values in from_rows.items():
            np.testing.assert_array_equal(values, from_columns[key])


def test_context_broadcasts_and_missing_values_are_nan_or_empty(parser):
    columns = parser.parse(body(ROWS)).columns
    assert columns["module_name"].tolist() == ["search"] * 3
    assert columns["user_id"].tolist() == ["u1"] * 3
    assert columns["listing_id"].tolist() == ["l1", "l2", "7"]
    assert columns["tags"].tolist() == ["gift|sale", "vintage|gift", ""]
    assert columns["price"].dtype == np.float32
    assert columns["price"][0] == 10.0 and math.isnan(columns["price"][1]) and math.isnan(columns["price"][2])
    assert np.isnan(columns["user_category_affinity"]).all()  # sent nowhere


def test_several_instances_are_one_batch_with_offsets(parser):
    request = body(ROWS)
    request["instances"].append({"context": {"module_name": "brand_new_module"}, "candidates": {"price": [1, 2]}})
    batch = parser.parse(request)
    assert batch.offsets.tolist() == [0, 3, 5]
    assert batch.columns["module_name"].tolist() == ["search"] * 3 + ["brand_new_module"] * 2
    assert batch.ids[0].tolist() == ["l1", "l2", "7"] and batch.ids[1] is None


@pytest.mark.parametrize(
    ("request_body", "message"),
    [
        ([], "must be a JSON object"),
        ({"instances": []}, "non-empty list"),
        ({"instances": [{}] * 4}, "more than the maximum 3"),
        ({"instances": [1]}, "instances[0] must be an object"),
        ({"instances": [{"candidates": [{}]}], "extra": 1}, "unknown top-level field(s) ['extra']"),
        (body([{"price": 1}], context={"user_id": "u"}), "instances[0].context.module_name is required"),
        (body([{"price": 1}] * 6), "holds 6 candidates, more than the maximum 5"),
        (body([]), "instances[0].candidates is empty"),
        (body([{"price": 1}, "x"]), "instances[0].candidates[1] must be an object, got a string"),
        (body([{"price": 1}, {"colour": "red"}]), "unknown feature(s) ['colour']"),
        (body({"price": [1, 2], "listing_id": ["a"]}), "columns have different lengths"),
        (body({"price": 3}), "instances[0].candidates.price must be a list"),
        (body([{"price": 1}, {"price": "cheap"}]), "instances[0].candidates.price[1]: expected a number or null"),
        (body([{"price": 1}, {"price": True}]), "instances[0].candidates.price[1]: expected a number"),
        (body([{"price": 1e300}]), "instances[0].candidates.price[0]: 1e+300 is not a finite float32"),
        (body([{"price": math.inf}]), "is not a finite float32"),
        (body([{"category": 1.5}]), "instances[0].candidates.category[0]: expected a string, an integer id or null"),
        (body([{"tags": [1]}]), "instances[0].candidates.tags[0]: expected a string, a list of strings"),
        (body([{"tags": 5}]), "instances[0].candidates.tags[0]: expected a string, a list of strings or null"),
        (body([{"price": 1}], context={"module_name": None}), "instances[0].context.module_name is required"),
        (
            body({"price": [1, 2], "module_name": ["search", None]}, context={}),
            "instances[0].candidates.module_name[1] is required (absent or null",
        ),
        (body([{"price": 1}], context={"module_name": "search", "price": 2}), "['price'] given both"),
        (body([{"price": 1}], context={"module_name": ["search"]}), "instances[0].context.module_name: expected"),
        (body([{"price": 1}], top_k=0), "parameters.top_k must be a positive integer"),
        ({**body([{"price": 1}]), "parameters": {"k": 1}}, "unknown parameter(s) ['k']"),
    ],
)
def test_bad_requests_name_the_problem(parser, request_body, message):
    with pytest.raises(RequestError) as error:
        parser.parse(request_body)
    assert message in str(error.value)


def test_the_total_over_instances_is_capped_before_any_column_is_built():
    parser = RequestParser(synthetic_feature_spec(), max_candidates=5, max_instances=3, max_request_candidates=8)
    instance = body({"price": [1.0] * 4, "listing_id": ["x"] * 4})["instances"][0]
    assert parser.parse({"instances": [instance, instance]}).num_candidates == 8
    with pytest.raises(TooManyCandidatesError, match="holds 9 candidates in total, more than the maximum 8"):
        parser.parse({"instances": [instance, instance, body([{"price": "not even checked"}])["instances"][0]]})


def test_single_module_spec_defaults_the_module():
    spec = synthetic_feature_spec()
    spec.modules = ["default"]
    batch = RequestParser(spec).parse(body([{"price": 1.0}], context={}))
    assert batch.columns["module_name"].tolist() == ["default"]


def test_response_holds_every_candidate_and_the_top_k(parser):
    batch = parser.parse(body(ROWS, top_k=2))
    outputs = {
        "score": np.array([0.2, 0.9, 0.5], dtype=np.float32),
        **{task: np.full(3, 0.1, dtype=np.float32) for task in parser.task_names},
    }
    (prediction,) = build_response(batch, outputs, parser.task_names)["predictions"]
    assert prediction["score"].tolist() == pytest.approx([0.2, 0.9, 0.5])
    assert set(prediction["tasks"]) == set(parser.task_names)
    assert prediction["top_k"]["indices"].tolist() == [1, 2]
    assert prediction["top_k"]["ids"] == ["l2", "7"]


def test_numpy_columns_parse_like_the_json_lists_they_stand_for(parser):
    """The feature store adds NumPy columns in process: same model columns, same refusals."""
    as_json = {"listing_id": ["l1", "l2"], "price": [10.0, None], "category": ["toys", None], "tags": ["a|b", None]}
    as_numpy = {
        "listing_id": ["l1", "l2"],
        "price": np.array([10.0, np.nan]),
        "category": np.array(["toys", ""], dtype=object),
        "tags": np.array(["a|b", ""], dtype=object),
    }
    expected = parser.parse(body(as_json)).columns
    for key, values in parser.parse(body(as_numpy)).columns.items():
        np.testing.assert_array_equal(values, expected[key], err_msg=key)
    with pytest.raises(RequestError, match=r"candidates.price\[1\]: inf is not a finite float32"):
        parser.parse(body({**as_numpy, "price": np.array([1.0, np.inf])}))
    with pytest.raises(RequestError, match=r"candidates.price\[0\]: expected a number"):
        parser.parse(body({**as_numpy, "price": np.array(["cheap", "x"], dtype=object)}))
    with pytest.raises(RequestError, match="columns have different lengths"):
        parser.parse(body({**as_numpy, "price": np.array([1.0])}))


def test_column_converters():
    assert numeric_column([1, 2.5, None], "x").tolist()[:2] == [1.0, 2.5]
    assert string_column(["a", 7, None], "x").tolist() == ["a", "7", ""]
    with pytest.raises(RequestError, match=r"x\[1\]"):
        numeric_column([1, {}], "x")


def test_an_absent_or_null_module_is_the_only_module_of_a_single_module_model():
    spec = synthetic_feature_spec()
    parser = RequestParser(dataclasses.replace(spec, modules=["search"]), max_candidates=5)
    absent, null = body([{"price": 1}], context={}), body([{"price": 1}], context={"module_name": None})
    per_candidate = body({"price": [1, 2], "module_name": [None, "cart"]}, context={})
    assert parser.parse(absent).columns["module_name"].tolist() == ["search"]
    assert parser.parse(null).columns["module_name"].tolist() == ["search"]
    assert parser.parse(per_candidate).columns["module_name"].tolist() == ["search", "cart"]
