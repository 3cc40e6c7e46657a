"""KServe v2 (Open Inference Protocol) requests turned into ranking instances, without a server."""

from __future__ import annotations

import struct
from types import SimpleNamespace

import numpy as np
import orjson
import pytest
from kserve.errors import InvalidInput
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.infer_type import InferInput, InferRequest

from serving.open_inference import (
    INPUTS,
    infer_response,
    input_datatypes,
    refuse_malformed_binary_requests,
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
    decoded = extension_dataplane().decode_inference_request(body, {}, "mmoe-ranker")
    with pytest.raises(RequestError, match="parameters must be an object"):
        tensors_to_instance(decoded, DATATYPES)


def test_too_many_candidates_in_the_request_is_the_413_error():
    with pytest.raises(TooManyCandidatesError, match="more than the maximum 4 per request"):
        parse(request(tensor("price", [1.0] * 5)), max_candidates=10, max_request_candidates=4)


def test_the_response_has_one_tensor_per_output_and_echoes_the_id():
    outputs = {"click": np.array([[0.25], [0.5]]), "score": np.array([1.0, 2.0], dtype=np.float32)}
    response = infer_response(request(tensor("price", [1.0, 2.0])), outputs, ["click", "score"], "m", "v7")
    body, json_length = response.to_rest()
    assert json_length is None
    assert body["id"] == "r1" and body["model_name"] == "m" and body["model_version"] == "v7"
    assert body["outputs"] == [
        {"name": "click", "shape": [2], "datatype": "FP32", "data": [0.25, 0.5]},
        {"name": "score", "shape": [2], "datatype": "FP32", "data": [1.0, 2.0]},
    ]


def framed(header: dict, *tensors: bytes) -> tuple[bytes, dict[str, str]]:
    """A binary-extension body: the JSON header, then the raw tensors; and its length header."""
    json_header = orjson.dumps(header)
    return json_header + b"".join(tensors), {"inference-header-content-length": str(len(json_header))}


def binary_input(name: str, datatype: str, shape: list[int], size: int) -> dict:
    return {"name": name, "shape": shape, "datatype": datatype, "parameters": {"binary_data_size": size}}


def extension_dataplane() -> SimpleNamespace:
    """An object with KServe's own v2 decoding, wrapped as the server wraps its dataplane."""
    dataplane = SimpleNamespace()
    dataplane.decode_inference_request = DataPlane.decode_inference_request.__get__(dataplane)
    refuse_malformed_binary_requests(dataplane)
    return dataplane


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b'{"no_inputs": []}', {}),
        (b'[{"name": "price"}]', {}),
        (b'{"inputs": [{"name": "price"}]}', {}),
        (b'{"inputs": [[1]]}', {}),
        (b"\xff\xfe", {}),
        (b'{"inputs": []}', {"inference-header-content-length": "twelve"}),
        framed({"inputs": [binary_input("price", "FP32", [3], 8)]}, struct.pack("<2f", 1, 2)),
        framed({"inputs": [binary_input("price", "FP32", [1], 3)]}, b"abc"),
        framed({"inputs": [binary_input("tags", "BYTES", [1], 6)]}, struct.pack("<I", 2) + b"\xff\xfe"),
        framed({"inputs": [binary_input("tags", "BYTES", [1], 4)]}, struct.pack("<I", 9)),
    ],
    ids=["no-inputs", "not-an-object", "no-shape", "input-not-an-object", "not-json", "bad-header", "fp32-count",
         "fp32-size", "bytes-not-utf8", "bytes-truncated"],
)  # fmt: skip
def test_malformed_binary_requests_are_invalid_input_not_a_500(body, headers):
    with pytest.raises(InvalidInput):
        extension_dataplane().decode_inference_request(body, headers, "mmoe-ranker")


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
    dataplane = extension_dataplane()
    decoded = dataplane.decode_inference_request(*framed(header, np.array([1.5, np.nan], "<f4").tobytes(), words), "m")
    instance = tensors_to_instance(decoded, DATATYPES)
    assert decoded.id == "b1"
    assert instance["context"] == {"module_name": "search"}
    assert instance["candidates"]["tags"] == ["gift|sale", ""]
    assert instance["candidates"]["price"][0] == 1.5 and np.isnan(instance["candidates"]["price"][1])
    without_header = dataplane.decode_inference_request(orjson.dumps({"inputs": header["inputs"][2:]}), {}, "m")
    assert without_header.inputs[0].data == ["search"]
