"""Request parsing and response building, without a server."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.request import (
    ParsedBatch,
    RequestError,
    RequestParser,
    TooManyCandidatesError,
    TypedBodyDecoder,
    build_response,
    numeric_column,
    string_column,
)
from tests.conftest import synthetic_feature_spec
from tests.serving.json_bodies import bodies, feature_values


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
        (
            body([{"listing_ctr": 1}], context={"module_name": "search", "price": 10**400}),
            "instances[0].context.price: 10000000000000000000000000000000000000",
        ),
        (body([{"price": -(10**400)}, {"price": 1}]), "instances[0].candidates.price[0]: -1000000000000000"),
        (body([{f"colour{i:03}": 1 for i in range(200)}]), "['colour000', 'colour001', 'colour002', 'colour003', "),
        (body([{f"colour{i:03}": 1 for i in range(200)}]), "'colour009'] and 190 more; the model takes"),
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


DECODER = TypedBodyDecoder(synthetic_feature_spec())


@pytest.mark.parametrize("where", ["context", "candidates"])
def test_an_integer_id_is_taken_up_to_64_bits_in_the_context_and_the_candidates_alike(parser, where):
    def parsed(user_id: int) -> ParsedBatch:
        context = {"module_name": "search"} | ({"user_id": user_id} if where == "context" else {})
        candidates = [{"price": 1.0} | ({"user_id": user_id} if where == "candidates" else {})]
        return parser.parse(DECODER.decode(json.dumps(body(candidates, context=context))))  # orjson: 64 bits

    assert parsed(2**64 - 1).columns["user_id"].tolist() == [str(2**64 - 1)]
    assert parsed(-(2**63)).columns["user_id"].tolist() == [str(-(2**63))]
    with pytest.raises(RequestError, match="send an id beyond 64 bits as a string"):
        parsed(2**64)


def test_the_typed_decoder_checks_column_types_while_decoding_and_leaves_the_rest_to_the_parser(parser):
    decoder = DECODER
    columns = {"listing_id": ["l1", 7], "price": [10, None], "tags": [["a", "b"], None], "user id": [1]}
    decoded = decoder.decode(orjson.dumps(body({key: columns[key] for key in ("listing_id", "price", "tags")})))
    typed = decoded["instances"][0]["candidates"]
    assert typed["price"].dtype == np.float64 and np.isnan(typed["price"][1])  # decoded as a number column
    assert typed["listing_id"] == ["l1", 7] and typed["tags"] == [["a", "b"], None]
    assert "category" not in typed  # absent stays absent: a context value may fill it
    for refused in ({**columns, "price": [1, True]}, {"user id": [1]}, {"price": 3}):
        untyped = decoder.decode(orjson.dumps(body(refused)))["instances"][0]["candidates"]
        assert untyped == refused  # decoded as it is, for the parser to name the problem
    rows = decoder.decode(orjson.dumps(body(ROWS)))["instances"][0]["candidates"]  # rows: typed into columns
    assert rows["price"].dtype == np.float64 and rows["price"][0] == 10.0 and np.isnan(rows["price"][1:]).all()
    assert rows["listing_id"] == ["l1", "l2", 7] and rows["tags"] == ["gift|sale", ["vintage", "gift"], None]
    assert "user_id" not in rows and set(rows) == set().union(*ROWS)  # a key no row has stays absent
    complete = decoder.decode(orjson.dumps(body([{"price": 1}, {"price": None}])))["instances"][0]["candidates"]
    assert complete["price"].dtype == np.float64 and complete["price"][0] == 1.0 and np.isnan(complete["price"][1])
    assert decoder.decode(orjson.dumps(body([{}, {}])))["instances"][0]["candidates"] == [{}, {}]
    for refused in ([*ROWS, {"price": "3"}], [*ROWS, {"user id": 1}], [*ROWS, 5]):
        assert decoder.decode(orjson.dumps(body(refused)))["instances"][0]["candidates"] == refused
    with pytest.raises(orjson.JSONDecodeError):
        decoder.decode(b'{"instances": [')


def candidate_bodies(spec) -> st.SearchStrategy[bytes]:
    """Requests whose candidates, columns or rows, hold values of their feature's type, or values of any type."""
    typed = {
        "numeric": st.none() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False),
        "string": st.none() | st.text(max_size=4) | st.integers(0, 2**63 - 1) | st.integers(-(2**63) - 2, 2**64 + 1),
        "list": st.none() | st.text(max_size=4) | st.lists(st.text(max_size=3), max_size=3),
    }
    kinds = {f.name: "list" if f.kind == "list" else "string" if f.is_string else "numeric" for f in spec.features}
    kinds["module_name"] = "string"

    def columns(size: int) -> st.SearchStrategy[dict]:
        values = {kind: st.lists(typed[kind] | feature_values, min_size=size, max_size=size) for kind in typed}
        typed_values = {kind: st.lists(typed[kind], min_size=size, max_size=size) for kind in typed}
        optional = {key: typed_values[kind] | values[kind] for key, kind in kinds.items()}
        return st.fixed_dictionaries({}, optional=optional)

    def row() -> st.SearchStrategy[dict]:
        optional = {key: typed[kind] | (typed[kind] | feature_values) for key, kind in kinds.items()}
        return st.fixed_dictionaries({}, optional=optional)

    candidates = st.integers(1, 4).flatmap(columns) | st.lists(row(), min_size=1, max_size=4)
    context = st.fixed_dictionaries({}, optional={"module_name": st.none() | st.text(max_size=4)})
    instance = st.builds(lambda candidates, context: {"context": context, "candidates": candidates},
                         candidates, context)  # fmt: skip
    # json, not orjson: it also writes integers beyond 64 bits and NaN / Infinity (not JSON, but clients send them).
    return st.lists(instance, min_size=1, max_size=2).map(lambda items: json.dumps({"instances": items}).encode())


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_a_typed_decode_parses_to_the_batch_or_the_message_of_an_untyped_one(parser, data):
    """Whatever the body, the typed decoder changes nothing the parser answers (it only answers it sooner)."""
    payload = data.draw(candidate_bodies(parser.spec) | bodies)
    try:
        expected = outcome(parser, orjson.loads(payload))
    except orjson.JSONDecodeError:  # integers beyond 64 bits, NaN, not JSON: the typed decoder is held to no answer
        return
    assert outcome(parser, DECODER.decode(payload)) == expected


def test_columns_of_different_lengths_get_the_same_message_whatever_the_order_of_their_keys(parser):
    # Found by the property test above: the typed decoder hands columns over in the model's feature order.
    columns = {"module_name": [], "listing_id": [], "user_id": [None]}
    lengths = "{'listing_id': 0, 'module_name': 0, 'user_id': 1}"
    for keys in (list(columns), list(reversed(columns))):
        payload = orjson.dumps({"instances": [{"context": {}, "candidates": {key: columns[key] for key in keys}}]})
        typed, untyped = outcome(parser, DECODER.decode(payload)), outcome(parser, orjson.loads(payload))
        assert typed == untyped == f"instances[0].candidates: columns have different lengths {lengths}"


@pytest.mark.parametrize("user_id", [-(2**63) - 1, -(2**63), 2**63 - 1, 2**63, 2**64 - 1])
@pytest.mark.parametrize("candidates", ["columns", "rows"])
def test_a_typed_decode_answers_as_an_untyped_one_at_the_edges_of_64_bit_ids(parser, user_id, candidates):
    # orjson reads an integer below -2**63 as a float: a typed decoder that took it as an id answered otherwise.
    values = {"user_id": [user_id]} if candidates == "columns" else [{"user_id": user_id}]
    payload = json.dumps({"instances": [{"context": {"module_name": "search"}, "candidates": values}]}).encode()
    assert outcome(parser, DECODER.decode(payload)) == outcome(parser, orjson.loads(payload))


def outcome(parser: RequestParser, payload) -> str | dict:
    """The parser's answer as something comparable: the error message, or every column and the offsets."""
    try:
        batch = parser.parse(payload)
    except RequestError as error:
        return str(error)
    return {"offsets": batch.offsets.tolist(), **{key: repr(values.tolist()) for key, values in batch.columns.items()}}


def test_the_server_decodes_v1_json_bodies_typed_and_leaves_the_rest_to_kserve():
    from types import SimpleNamespace

    from serving.server import decode_v1_json_typed

    calls = []
    dataplane = SimpleNamespace(decode=lambda body, headers=None, **options: calls.append(body) or ("kserve", {}))
    decode_v1_json_typed(dataplane, SimpleNamespace(body_decoder=DECODER))
    payload = orjson.dumps(body({"price": [1.5, None]}))
    for headers in (None, {}, {"content-type": "application/json"}, {"content-type": "application/octet-stream"}):
        decoded, _ = dataplane.decode(body=payload, headers=headers)
        assert decoded["instances"][0]["candidates"]["price"].dtype == np.float64  # typed: numbers as an array
    assert calls == []
    kserve_cases = [
        {"body": payload, "headers": {"content-type": "application/cloudevents+json"}},
        {"body": payload, "headers": {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "s", "ce-type": "t"}},
        {"body": payload, "headers": {"content-type": "text/plain"}},
        {"body": payload, "headers": {}, "protocol_version": "v2"},
        {"body": b'{"instances": [', "headers": {}},  # not JSON: KServe's own message
    ]
    for case in kserve_cases:
        assert dataplane.decode(**case) == ("kserve", {})
    assert len(calls) == len(kserve_cases)
