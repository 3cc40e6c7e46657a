"""KServe v2 (Open Inference Protocol) requests decoded into ranking instances and responses encoded, no server."""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kserve.protocol.infer_type import InferInput, InferRequest, InferResponse

from serving.open_inference import (
    HEADER_LENGTH,
    INPUTS,
    SchemaError,
    decode_request,
    encode_response,
    input_datatypes,
    json_columns,
    output_plan,
    tensor_metadata,
    tensors_to_instance,
)
from serving.request import RequestError, RequestParser, TooManyCandidatesError
from tests.conftest import synthetic_feature_spec

SPEC = synthetic_feature_spec()
DATATYPES = input_datatypes(SPEC)


def tensor(name: str, data: list, datatype: str | None = None, shape: list | None = None) -> InferInput:
    return InferInput(name, [len(data)] if shape is None else shape, datatype or DATATYPES.get(name, "FP32"), data)


SEARCH = tensor("module_name", ["search"])


def request(*inputs: InferInput, parameters: dict | None = None) -> InferRequest:
    return InferRequest("mmoe-ranker", list(inputs), request_id="r1", parameters=parameters)


def parse(infer_request: InferRequest, max_candidates: int = 5, max_request_candidates: int | None = None):
    parser = RequestParser(SPEC, max_candidates=max_candidates, max_request_candidates=max_request_candidates)
    return parser.parse_single(tensors_to_instance(infer_request, DATATYPES), INPUTS)


def test_metadata_lists_every_feature_with_its_datatype():
    inputs = {entry["name"]: entry for entry in tensor_metadata(DATATYPES)}
    assert list(inputs) == ["module_name", *SPEC.feature_names]
    assert inputs["module_name"] == {"name": "module_name", "datatype": "BYTES", "shape": [-1]}
    assert inputs["tags"]["datatype"] == inputs["category"]["datatype"] == inputs["user_id"]["datatype"] == "BYTES"
    assert inputs["price"]["datatype"] == "FP32"


def test_one_value_tensors_are_broadcast_and_per_candidate_ones_are_columns():
    batch = parse(
        request(
            tensor("module_name", ["search"]),
            tensor("user_id", ["u1"]),
            tensor("listing_id", ["l1", "l2", "l3"]),
            tensor("price", [1.5, None, float("nan")]),
            tensor("tags", ["gift|sale", "", "vintage"]),
        )
    )
    assert batch.columns["module_name"].tolist() == ["search"] * 3
    assert batch.columns["user_id"].tolist() == ["u1"] * 3
    assert batch.columns["tags"].tolist() == ["gift|sale", "", "vintage"]
    np.testing.assert_array_equal(batch.columns["price"], np.array([1.5, np.nan, np.nan], dtype=np.float32))
    assert batch.columns["category"].tolist() == ["", "", ""]  # absent: missing, as in v1
    assert batch.offsets.tolist() == [0, 3] and batch.ids[0].tolist() == ["l1", "l2", "l3"]


def test_per_candidate_modules_are_taken_as_sent():
    batch = parse(request(tensor("module_name", ["search", "cart"]), tensor("price", [1.0, 2.0])))
    assert batch.columns["module_name"].tolist() == ["search", "cart"]


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ((tensor("price", [1.0], datatype="BYTES"),), "tensor 'price' has datatype 'BYTES'; the model takes FP32"),
        ((tensor("module_name", ["s"], datatype="FP32"),), "'module_name' has datatype 'FP32'; the model takes BYTES"),
        ((tensor("price", [1.0, 2.0], shape=[1, 2]),), "'price' has shape [1, 2]; inputs are one-dimensional"),
        ((tensor("price", [1.0, 2.0], shape=[3]),), "input tensor 'price' has shape [3] but 2 values"),
        ((tensor("tags", [["gift"], ["sale"]]),), "input tensor 'tags': nested data"),
        ((SEARCH, tensor("price", [[1.0], [2.0]])), "candidates.price[0]: expected a number or null, got a list"),
        ((tensor("price", [1.0]), tensor("price", [2.0])), "input tensor 'price' is given twice"),
        ((tensor("price", [1.0, 2.0, 3.0]), tensor("listing_ctr", [0.1, 0.2])), "'listing_ctr' has shape [2]; the"),
        ((tensor("colour", ["red"], datatype="BYTES"),), "inputs.candidates has unknown feature(s) ['colour']"),
        ((SEARCH, tensor("price", ["cheap"])), "inputs.candidates.price[0]: expected a number or null"),
        ((SEARCH, tensor("price", [1e300])), "inputs.candidates.price[0]: 1e+300 is not a finite float32 number"),
        ((tensor("price", [1.0, 2.0]), tensor("module_name", [None])), "inputs.context.module_name is required"),
        ((tensor("price", [1.0] * 6),), "inputs.candidates holds 6 candidates, more than the maximum 5"),
        ((), "the request has no input tensors"),
    ],
)
def test_bad_tensors_are_refused_naming_the_tensor(inputs, message):
    with pytest.raises(RequestError) as error:
        parse(request(*inputs))
    assert message in str(error.value)


def test_unknown_parameters_are_refused_and_binary_output_is_known():
    with pytest.raises(RequestError, match=r"unknown parameter\(s\) \['top_n'\]"):
        tensors_to_instance(request(tensor("price", [1.0]), parameters={"top_n": 3}), DATATYPES)
    instance = tensors_to_instance(request(tensor("price", [1.0]), parameters={"binary_data_output": True}), DATATYPES)
    assert instance == {"context": {}, "candidates": {"price": [1.0]}}


@pytest.mark.parametrize(
    "body", [b'{"inputs": [], "parameters": 5}', b'{"inputs": [], "outputs": [{"name": "score", "parameters": [1]}]}']
)
def test_parameters_that_are_not_objects_are_refused(body):
    with pytest.raises(RequestError, match="parameters must be an object"):
        tensors_to_instance(decode_request(body, None), DATATYPES)


def test_too_many_candidates_in_the_request_is_the_413_error():
    with pytest.raises(TooManyCandidatesError, match="more than the maximum 4 per request"):
        parse(request(tensor("price", [1.0] * 5)), max_candidates=10, max_request_candidates=4)


def test_the_response_has_one_tensor_per_output_and_echoes_the_id():
    outputs = {"click": np.array([[0.25], [0.5]]), "score": np.array([1.0, 2.0], dtype=np.float32)}
    body, headers = encode_response("r1", outputs, [("click", False), ("score", False)], "m", "v7")
    assert headers == {"content-type": "application/json"}
    answer = orjson.loads(body)
    assert answer["id"] == "r1" and answer["model_name"] == "m" and answer["model_version"] == "v7"
    assert answer["outputs"] == [
        {"name": "click", "shape": [2], "datatype": "FP32", "data": [0.25, 0.5]},
        {"name": "score", "shape": [2], "datatype": "FP32", "data": [1.0, 2.0]},
    ]
    assert orjson.loads(encode_response(None, outputs, [("score", False)], "m", None)[0])["id"] == ""


def test_binary_outputs_are_read_back_by_kserves_client():
    outputs = {"click": np.array([[0.25], [np.nan]]), "score": np.array([1.5, -2.0], dtype=np.float32)}
    body, headers = encode_response("r1", outputs, [("click", True), ("score", False)], "m", "v7")
    assert headers["content-type"] == "application/octet-stream"
    response = InferResponse.from_bytes(body, int(headers[HEADER_LENGTH]))
    assert response.id == "r1"
    np.testing.assert_array_equal(response.get_output_by_name("click").as_numpy(), np.array([0.25, np.nan], "f4"))
    np.testing.assert_array_equal(response.get_output_by_name("score").as_numpy(), np.array([1.5, -2.0], "f4"))
    assert body[int(headers[HEADER_LENGTH]) :] == np.array([0.25, np.nan], "<f4").tobytes()


@pytest.mark.parametrize(
    ("parameters", "outputs", "plan"),
    [
        (None, None, [("click", False), ("score", False)]),
        ({"binary_data_output": True}, None, [("click", True), ("score", True)]),
        ({"binary_data_output": True}, [{"name": "score"}], [("score", True)]),
        ({"binary_data_output": True}, [{"name": "score", "parameters": {"binary_data": False}}], [("score", False)]),
        (None, [{"name": "score", "parameters": {"binary_data": True}}, {"name": "click"}],
         [("score", True), ("click", False)]),
    ],
    ids=["json", "all-binary", "some-binary", "output-overrides", "output-binary"],
)  # fmt: skip
def test_output_plan_follows_the_binary_extension(parameters, outputs, plan):
    body = {"inputs": [], "parameters": parameters, "outputs": outputs}
    assert output_plan(decode_request(orjson.dumps(body), None), ["click", "score"]) == plan


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"outputs": [{"name": "revenue"}]}, "outputs[0]: unknown output 'revenue'"),
        ({"parameters": {"binary_data_output": "yes"}}, "parameters.binary_data_output must be true or false"),
        ({"outputs": [{"name": "score", "parameters": {"binary_data": 1}}]}, "outputs[0].parameters.binary_data must"),
    ],
)
def test_bad_output_requests_are_refused(body, message):
    with pytest.raises(RequestError) as error:
        output_plan(decode_request(orjson.dumps({"inputs": [], **body}), None), ["click", "score"])
    assert message in str(error.value)


def framed(header: dict, *tensors: bytes) -> tuple[bytes, dict[str, str]]:
    """A binary-extension body: the JSON header, then the raw tensors; and its length header."""
    json_header = orjson.dumps(header)
    return json_header + b"".join(tensors), {HEADER_LENGTH: str(len(json_header))}


def binary_input(name: str, datatype: str, shape: list[int], size) -> dict:
    return {"name": name, "shape": shape, "datatype": datatype, "parameters": {"binary_data_size": size}}


def decode(body: bytes, headers: dict[str, str]):
    return decode_request(body, headers.get(HEADER_LENGTH))


@pytest.mark.parametrize(
    ("body", "headers", "message"),
    [
        (b'{"no_inputs": []}', {}, "inputs is required"),
        (b'[{"name": "price"}]', {}, "a v2 request is a JSON object with 'inputs', got list"),
        (b'{"inputs": [{"name": "price"}]}', {}, "inputs[0].datatype is required"),
        (b'{"inputs": [{"name": "price", "datatype": "FP32", "data": [1]}]}', {}, "inputs[0].shape is required"),
        (b'{"inputs": [{"name": "p", "datatype": "FP32", "shape": [1]}]}', {}, "inputs[0].data is required"),
        (b'{"inputs": [{"name": "p", "datatype": "FP32", "shape": ["1"], "data": [1]}]}', {}, "list of integers"),
        (b'{"inputs": [[1]]}', {}, "inputs[0] must be an object (a tensor), got list"),
        (b'{"inputs": [], "id": 7}', {}, "id must be a string, got int 7"),
        (b'{"inputs": [], "outputs": [5]}', {}, "outputs[0] must be an object with a name"),
    ],
    ids=["no-inputs", "not-an-object", "no-datatype", "no-shape", "no-data", "shape-strings", "input-not-an-object",
         "id-number", "output-not-an-object"],
)  # fmt: skip
def test_bodies_that_are_not_v2_requests_are_schema_errors(body, headers, message):
    with pytest.raises(SchemaError) as error:
        decode(body, headers)
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("body", "headers", "message"),
    [
        (b"\xff\xfe", {}, "the request's JSON is not valid"),
        (b'{"inputs": []}', {HEADER_LENGTH: "twelve"}, "inference-header-content-length must be an integer"),
        (b'{"inputs": []}', {HEADER_LENGTH: "99"}, "is 99 but the body has 14 bytes"),
        (*framed({"inputs": [binary_input("price", "FP32", [3], 8)]}, struct.pack("<2f", 1, 2)), "8 bytes of FP32"),
        (*framed({"inputs": [binary_input("price", "FP32", [1], 3)]}, b"abc"), "3 bytes of FP32 data for 1 values"),
        (*framed({"inputs": [binary_input("price", "FP32", [1], 8)]}, b"abcd"), "size 8 but only 4 bytes left"),
        (*framed({"inputs": [binary_input("price", "FP32", [1], 4)]}, b"abcdef"), "2 bytes after the last tensor"),
        (*framed({"inputs": [binary_input("price", "FP32", [1], -4)]}, b""), "binary_data_size must be a byte count"),
        (*framed({"inputs": [binary_input("price", "FP64", [1], 8)]}, b"abcdefgh"), "datatype 'FP64' in binary data"),
        (*framed({"inputs": [{**binary_input("price", "FP32", [1], 4), "data": [1.0]}]}, b"abcd"), "both data and"),
        (*framed({"inputs": [binary_input("tags", "BYTES", [1], 6)]}, struct.pack("<I", 2) + b"\xff\xfe"), "not UTF-8"),
        (*framed({"inputs": [binary_input("tags", "BYTES", [1], 4)]}, struct.pack("<I", 9)), "element 0 runs past"),
        (*framed({"inputs": [binary_input("tags", "BYTES", [1], 2)]}, b"\x01\x00"), "element 0 has no 4-byte length"),
        (*framed({"inputs": [binary_input("tags", "BYTES", [2], 4)]}, struct.pack("<I", 0)), "1 BYTES elements for 2"),
    ],
    ids=["not-json", "bad-header", "header-too-long", "fp32-count", "fp32-size", "past-the-end", "bytes-left",
         "negative-size", "fp64", "data-and-binary", "bytes-not-utf8", "bytes-truncated", "bytes-no-length",
         "bytes-count"],
)  # fmt: skip
def test_malformed_binary_requests_are_request_errors(body, headers, message):
    with pytest.raises(RequestError) as error:
        decode(body, headers)
    assert message in str(error.value) and not isinstance(error.value, SchemaError)


def test_a_binary_request_decodes_to_the_values_sent():
    words = b"".join(struct.pack("<I", len(word)) + word for word in (b"gift|sale", b""))
    header = {
        "id": "b1",
        "inputs": [
            binary_input("price", "FP32", [2], 8),
            binary_input("tags", "BYTES", [2], len(words)),
            {"name": "module_name", "shape": [1], "datatype": "BYTES", "data": ["search"]},
        ],
    }
    decoded = decode(*framed(header, np.array([1.5, np.nan], "<f4").tobytes(), words))
    instance = tensors_to_instance(decoded, DATATYPES)
    assert decoded.id == "b1"
    assert instance["context"] == {"module_name": "search"}
    assert instance["candidates"]["tags"] == ["gift|sale", ""]
    price = instance["candidates"]["price"]
    assert isinstance(price, np.ndarray) and price.dtype == np.float32  # the raw bytes, not one Python float each
    assert price[0] == 1.5 and np.isnan(price[1])
    assert decode(orjson.dumps({"inputs": header["inputs"][2:]}), {}).inputs[0].data == ["search"]


def kserve_request(binary: bool) -> InferRequest:
    """A request as KServe's client builds it: a one-value context tensor and per-candidate ones."""
    inputs = []
    for name, values in (
        ("module_name", np.array(["search"], dtype=object)),
        ("listing_id", np.array(["l1", "l2", "l3"], dtype=object)),
        ("tags", np.array(["gift|sale", "", "vintage"], dtype=object)),
        ("price", np.array([1.5, np.nan, 3.0], dtype=np.float32)),
        ("listing_ctr", np.array([0.25], dtype=np.float32)),
    ):
        infer_input = InferInput(name, [len(values)], DATATYPES[name])
        infer_input.set_data_from_numpy(values, binary_data=binary)
        inputs.append(infer_input)
    return InferRequest("mmoe-ranker", inputs, request_id="k1", parameters={"binary_data_output": binary})


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_kserves_client_requests_parse_as_kserves_own_decoding_does(binary):
    body, json_length = kserve_request(binary).to_rest()
    content = body if binary else orjson.dumps(body)
    decoded = decode_request(content, None if json_length is None else str(json_length))
    reference = InferRequest.from_bytes(content, json_length or len(content), "mmoe-ranker")  # KServe's decoding
    ours, theirs = parse(decoded), parse(reference)
    assert decoded.id == "k1" and output_plan(decoded, ["score"]) == [("score", binary)]
    assert ours.columns.keys() == theirs.columns.keys()
    for key, column in ours.columns.items():
        np.testing.assert_array_equal(column, theirs.columns[key])
    assert ours.columns["listing_ctr"].tolist() == [0.25] * 3


def test_binary_columns_go_to_the_feature_store_as_json_lists_and_parse_the_same():
    body, json_length = kserve_request(binary=True).to_rest()
    instance = tensors_to_instance(decode_request(body, str(json_length)), DATATYPES)
    columns = json_columns(instance)["candidates"]
    assert all(type(values) is list for values in columns.values())
    assert columns["price"][0] == 1.5 and math.isnan(columns["price"][1]) and type(columns["price"][0]) is float
    parser = RequestParser(SPEC)
    expected, got = parser.parse_single(instance, INPUTS).columns, parser.parse_single(json_columns(instance), INPUTS)
    for key, column in expected.items():
        np.testing.assert_array_equal(got.columns[key], column)


def test_infinite_binary_values_are_refused_and_nan_is_missing():
    body, headers = framed(
        {"inputs": [{"name": "module_name", "shape": [1], "datatype": "BYTES", "data": ["search"]},
                    binary_input("price", "FP32", [3], 12)]},
        np.array([1.0, np.nan, -np.inf], "<f4").tobytes(),
    )  # fmt: skip
    with pytest.raises(RequestError, match=r"inputs.candidates.price\[2\]: -inf is not a finite float32 number"):
        parse(decode(body, headers))


tensor_data = st.lists(st.none() | st.floats(width=32) | st.text(max_size=4) | st.integers() | st.lists(st.none()))
tensors = st.fixed_dictionaries(
    {"name": st.sampled_from([*DATATYPES, "colour"]), "datatype": st.sampled_from(["FP32", "BYTES", "FP64", 5])},
    optional={"shape": st.lists(st.integers(-2, 4), max_size=2), "data": tensor_data,
              "parameters": st.fixed_dictionaries({}, optional={"binary_data_size": st.integers(-1, 12)})},
)  # fmt: skip
headers_ = st.fixed_dictionaries(
    {"inputs": st.lists(tensors, max_size=4)},
    optional={"id": st.text(max_size=3) | st.integers(),
              "outputs": st.lists(st.fixed_dictionaries({"name": st.text()})),
              "parameters": st.fixed_dictionaries({}, optional={"binary_data_output": st.booleans() | st.integers()})},
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(header=headers_, raw=st.binary(max_size=24), with_length=st.booleans())
def test_random_and_near_valid_bodies_are_request_errors_or_parse(header, raw, with_length):
    json_header = json.dumps(header).encode()  # json, not orjson: it also writes integers beyond 64 bits and NaN
    body = json_header + raw if with_length else json_header
    try:
        request = decode_request(body, str(len(json_header)) if with_length else None)
        parse(request)
        output_plan(request, ["click", "score"])
    except RequestError:
        pass
