"""The served ranker over KServe v2 (Open Inference Protocol): metadata, JSON and binary tensors, refusals."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import orjson
import pytest

from tests.serving.conftest import MAX_CANDIDATES, MAX_REQUEST_CANDIDATES
from tests.serving.test_server import KSERVE_PREDICT, ROWS, post, ranking_request

pytestmark = pytest.mark.slow

METADATA = "/v2/models/mmoe-ranker"
INFER = "/v2/models/mmoe-ranker/infer"
OUTPUTS = ("click", "favorite", "add_to_cart", "purchase", "score")
# ROWS as v2 tensors: the context's module and user once (shape [1]), every other feature per candidate.
TENSORS = [
    ("module_name", "BYTES", ["search"]),
    ("user_id", "BYTES", ["u3"]),
    ("listing_id", "BYTES", [row["listing_id"] for row in ROWS]),
    ("category", "BYTES", [row["category"] for row in ROWS]),
    ("tags", "BYTES", ["gift|sale", "", ""]),
    ("price", "FP32", [row.get("price") for row in ROWS]),
    ("listing_ctr", "FP32", [row.get("listing_ctr") for row in ROWS]),
    ("user_category_affinity", "FP32", [row.get("user_category_affinity") for row in ROWS]),
]


def v2_body(tensors=TENSORS, **fields) -> dict:
    inputs = [
        {"name": name, "datatype": datatype, "shape": [len(data)], "data": data} for name, datatype, data in tensors
    ]
    return {"inputs": inputs, **fields}


def v1_predictions(server) -> dict:
    response = post(server, KSERVE_PREDICT, ranking_request())
    assert response.status_code == 200, response.text
    return response.json()["predictions"][0]


def test_metadata_lists_the_input_and_output_tensors(server):
    metadata = httpx.get(server.url + METADATA).json()
    inputs = {tensor["name"]: (tensor["datatype"], tensor["shape"]) for tensor in metadata["inputs"]}
    assert inputs == {name: (datatype, [-1]) for name, datatype, _ in TENSORS}
    assert [(tensor["name"], tensor["datatype"], tensor["shape"]) for tensor in metadata["outputs"]] == [
        (name, "FP32", [-1]) for name in OUTPUTS
    ]


def test_metadata_names_the_served_version_and_its_routes_take_it(server, model_dir):
    from urllib.parse import quote

    from trainer.digest import saved_model_fingerprint

    version = saved_model_fingerprint(str(model_dir))
    assert "/" in version  # TensorFlow's singleprint: so the routes must take a version with slashes
    assert httpx.get(server.url + METADATA).json()["versions"] == [version]
    expected = v1_predictions(server)["score"]
    for spelled in (version, quote(version, safe="")):
        versioned = f"{METADATA}/versions/{spelled}"
        assert httpx.get(server.url + versioned).json()["versions"] == [version]
        assert httpx.get(server.url + versioned + "/ready").json() == {"name": "mmoe-ranker", "ready": True}
        answer = post(server, versioned + "/infer", v2_body())
        assert answer.status_code == 200, answer.text
        assert answer.json()["model_version"] == version
        np.testing.assert_allclose(answer.json()["outputs"][-1]["data"], expected, rtol=1e-6)
    for predict_route in (f"{METADATA}/versions/{version}/infer", INFER, "/v1/models/mmoe-ranker:predict"):
        wrong_method = httpx.get(server.url + predict_route)  # not the versioned metadata nor the v1 model status
        assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST", predict_route
        assert set(wrong_method.json()) == {"error"}, wrong_method.text  # the server's error shape on every route
    no_route = httpx.get(server.url + "/no/such/route")
    assert no_route.status_code == 404 and no_route.json() == {"error": "Not Found: GET /no/such/route"}
    assert httpx.get(server.url + "/v1/models/mmoe-ranker").json()["ready"] is True
    for route, send in (("", httpx.get), ("/ready", httpx.get), ("/infer", None)):
        path = f"{METADATA}/versions/1/2/3{route}"
        response = post(server, path, v2_body()) if send is None else send(server.url + path)
        assert response.status_code == 404, (route, response.text)
        assert "has no version '1/2/3'" in response.text and version in response.text
    other_model = post(server, f"/v2/models/another-model/versions/{version}/infer", v2_body())
    assert other_model.status_code == 404 and "another-model" in other_model.text


def test_json_tensors_score_as_the_v1_route_does(server):
    response = post(server, INFER, v2_body(id="request-7"))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["id"] == "request-7" and answer["model_name"] == "mmoe-ranker"
    assert len(answer["model_version"]) > 0  # the SavedModel's fingerprint
    outputs = {tensor["name"]: tensor for tensor in answer["outputs"]}
    assert list(outputs) == list(OUTPUTS)
    expected = v1_predictions(server)
    np.testing.assert_allclose(outputs["score"]["data"], expected["score"], rtol=1e-6)
    for task in OUTPUTS[:-1]:
        assert outputs[task]["shape"] == [len(ROWS)] and outputs[task]["datatype"] == "FP32"
        np.testing.assert_allclose(outputs[task]["data"], expected["tasks"][task], rtol=1e-6)


def test_binary_tensors_through_kserves_client_score_as_the_v1_route_does(server):
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

    inputs = []
    for name, datatype, data in TENSORS:
        values = np.array(data, dtype=object) if datatype == "BYTES" else np.array(data, dtype=np.float64)
        tensor = InferInput(name, [len(data)], datatype)
        tensor.set_data_from_numpy(values.astype(np.float32) if datatype == "FP32" else values, binary_data=True)
        inputs.append(tensor)
    request = InferRequest("mmoe-ranker", inputs, request_id="b1", parameters={"binary_data_output": True})
    body, json_length = request.to_rest()
    assert isinstance(body, bytes) and json_length < len(body)  # the raw tensors follow the JSON header

    async def call():
        client = InferenceRESTClient(RESTConfig(protocol="v2"))
        headers: dict[str, str] = {}
        response = await client.infer(server.url, request, model_name="mmoe-ranker", response_headers=headers)
        return response, headers

    response, headers = asyncio.run(call())
    assert int(headers["inference-header-content-length"]) > 0  # binary outputs came back
    expected = v1_predictions(server)
    assert response.id == "b1"
    np.testing.assert_allclose(response.get_output_by_name("score").as_numpy(), expected["score"], rtol=1e-6)
    for task in OUTPUTS[:-1]:
        np.testing.assert_allclose(response.get_output_by_name(task).as_numpy(), expected["tasks"][task], rtol=1e-6)


def test_a_client_may_ask_for_some_outputs_only(server):
    response = post(server, INFER, v2_body(outputs=[{"name": "score"}]))
    assert response.status_code == 200, response.text
    assert [tensor["name"] for tensor in response.json()["outputs"]] == ["score"]
    unknown = post(server, INFER, v2_body(outputs=[{"name": "revenue"}]))
    assert unknown.status_code == 400 and "revenue" in unknown.text


def test_binary_outputs_can_be_asked_for_one_output_at_a_time(server):
    from kserve import InferResponse

    outputs = [{"name": "score", "parameters": {"binary_data": True}}, {"name": "click"}]
    response = post(server, INFER, v2_body(outputs=outputs))
    assert response.status_code == 200, response.text
    json_length = int(response.headers["inference-header-content-length"])
    assert response.headers["content-type"] == "application/octet-stream"
    assert len(response.content) == json_length + 4 * len(ROWS)  # the score's raw FP32 values after the header
    answer = InferResponse.from_bytes(response.content, json_length)
    expected = v1_predictions(server)
    np.testing.assert_allclose(answer.get_output_by_name("score").as_numpy(), expected["score"], rtol=1e-6)
    np.testing.assert_allclose(answer.get_output_by_name("click").as_numpy(), expected["tasks"]["click"], rtol=1e-6)


def test_an_unknown_model_is_a_404_on_infer(server):
    response = post(server, "/v2/models/another-model/infer", v2_body())
    assert response.status_code == 404, response.text
    assert "another-model" in response.text


@pytest.mark.parametrize(
    ("header", "raw", "status", "message"),
    [
        ({"inputs": [{"name": "price", "datatype": "FP32", "parameters": {"binary_data_size": 4}}]}, b"\0" * 4, 422,
         "inputs[0].shape is required"),
        ({"inputs": [{"name": "price", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 4}}]},
         b"\0" * 4, 400, "input tensor 'price': 4 bytes of FP32 data for 2 values"),
    ],
    ids=["schema", "size"],
)  # fmt: skip
def test_bad_binary_bodies_get_a_4xx_naming_the_problem(server, header, raw, status, message):
    json_header = orjson.dumps(header)
    headers = {"content-type": "application/octet-stream", "inference-header-content-length": str(len(json_header))}
    response = httpx.post(server.url + INFER, content=json_header + raw, headers=headers, timeout=30)
    assert response.status_code == status, response.text
    assert message in response.text


def with_tensor(name: str, datatype: str, data: list, shape: list | None = None) -> dict:
    body = v2_body()
    body["inputs"] = [tensor for tensor in body["inputs"] if tensor["name"] != name]
    body["inputs"].append({"name": name, "datatype": datatype, "shape": shape or [len(data)], "data": data})
    return body


def prices(count: int) -> dict:
    return v2_body([TENSORS[0], ("price", "FP32", [1.0] * count)])


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (with_tensor("price", "FP64", [1.0, 2.0, 3.0]), 400, "'price' has datatype 'FP64'; the model takes FP32"),
        (with_tensor("price", "FP32", [1.0, 2.0, 3.0], [1, 3]), 400, "'price' has shape [1, 3]"),
        (with_tensor("price", "FP32", [1.0, 2.0]), 400, "input tensor 'price' has shape [2]; the others have 3 rows"),
        (with_tensor("price", "FP32", ["cheap", 1.0, 2.0]), 400, "inputs.candidates.price[0]: expected a number"),
        (with_tensor("colour", "BYTES", ["red"]), 400, "unknown feature(s) ['colour']"),
        (with_tensor("module_name", "BYTES", [None]), 400, "inputs.context.module_name is required"),
        (v2_body(parameters={"top_k": 2}), 400, "unknown parameter(s) ['top_k']"),
        ({"inputs": []}, 400, "the request has no input tensors"),
        ({"inputs": [{"name": "price", "datatype": "FP32", "data": [1.0]}]}, 422, "shape"),
        (
            prices(MAX_CANDIDATES + 1),
            400,
            f"candidates holds 61 candidates, more than the maximum {MAX_CANDIDATES}",
        ),
        (
            prices(MAX_REQUEST_CANDIDATES + 1),
            413,
            f"more than the maximum {MAX_REQUEST_CANDIDATES} per request",
        ),
    ],
    ids=["datatype", "rank", "rows", "value", "unknown", "module", "parameter", "empty", "no-shape", "max", "413"],
)
def test_bad_tensors_get_a_4xx_naming_the_tensor(server, body, status, message):
    response = post(server, INFER, body)
    assert response.status_code == status, response.text
    assert message in response.text


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/octet-stream", "application/cloudevents+json", "image/png"]
)
def test_every_content_type_gets_a_2xx_or_a_4xx_on_infer(server, content_type):
    headers = {} if content_type is None else {"content-type": content_type}
    bodies = (orjson.dumps(v2_body()), b"\x00\xff not json", b'{"inputs": 5}', b"", b'{"inputs": [{"name": 1}]}')
    for content in bodies:
        response = httpx.post(server.url + INFER, content=content, headers=headers, timeout=30)
        assert response.status_code < 500, (content_type, content, response.text)
    binary = httpx.post(
        server.url + INFER,
        content=orjson.dumps(v2_body()) + b"\x01\x02",
        headers={**headers, "inference-header-content-length": "99999"},
        timeout=30,
    )
    assert binary.status_code < 500, binary.text


def test_infer_requests_are_counted_as_predictions(server):
    post(server, INFER, v2_body())
    metrics = httpx.get(server.url + "/metrics").text
    assert 'ranker_requests_total{route="predict",status="200"}' in metrics
    assert "/infer" not in metrics
