"""The served ranker over HTTP: KServe v1 and Vertex AI routes, bad input, health, metrics, logs, load test."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time

import httpx
import numpy as np
import orjson
import pytest

from serving.request import RequestParser
from tests.serving.conftest import (
    BODY_TIMEOUT_S,
    MAX_BODY_BYTES,
    MAX_CANDIDATES,
    MAX_REQUEST_CANDIDATES,
    VERTEX_HEALTH_ROUTE,
    VERTEX_PREDICT_ROUTE,
)

pytestmark = pytest.mark.slow

KSERVE_PREDICT = "/v1/models/mmoe-ranker:predict"
ROWS = [
    {"listing_id": "l1", "category": "toys", "price": 12.5, "listing_ctr": 0.2, "tags": ["gift", "sale"]},
    {"listing_id": "l2", "category": "art", "price": None, "user_category_affinity": 1.5},
    {"listing_id": "l3", "category": "unknown-category", "price": 300.0},
]


def ranking_request(candidates=ROWS, module="search", **parameters) -> dict:
    request = {"instances": [{"context": {"module_name": module, "user_id": "u3"}, "candidates": candidates}]}
    if parameters:
        request["parameters"] = parameters
    return request


def post(server, route: str, body, **kwargs) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = kwargs.pop("headers", {"content-type": "application/json"})
    return httpx.post(server.url + route, content=content, headers=headers, timeout=30, **kwargs)


def test_vertex_route_scores_match_the_exported_model(server, model_dir):
    from trainer.predict import load_ranker

    ranker = load_ranker(model_dir)
    response = post(server, VERTEX_PREDICT_ROUTE, ranking_request(top_k=2))
    assert response.status_code == 200, response.text
    (prediction,) = response.json()["predictions"]
    expected = ranker.predict(RequestParser(ranker.feature_spec).parse(ranking_request()).columns)
    np.testing.assert_allclose(prediction["score"], expected["score"], rtol=1e-5)
    for task in ranker.task_names:
        probabilities = np.array(prediction["tasks"][task])
        assert ((probabilities > 0) & (probabilities < 1)).all()
        np.testing.assert_allclose(probabilities, expected[task], rtol=1e-5)
    best = np.argsort(-expected["score"], kind="stable")[:2]
    assert prediction["top_k"]["indices"] == best.tolist()
    assert prediction["top_k"]["ids"] == [ROWS[i]["listing_id"] for i in best]


def test_kserve_client_predicts_columnar_candidates_and_sees_readiness(server):
    from kserve import InferenceRESTClient

    columns = {key: [row.get(key) for row in ROWS] for key in ("listing_id", "category", "price")}

    async def call():
        client = InferenceRESTClient()
        ready = await client.is_model_ready(server.url, "mmoe-ranker")
        rows = await client.infer(server.url, ranking_request(ROWS), model_name="mmoe-ranker")
        cols = await client.infer(server.url, ranking_request(columns), model_name="mmoe-ranker")
        return ready, rows, cols

    ready, by_rows, by_columns = asyncio.run(call())
    assert ready is True
    without_extras = post(server, KSERVE_PREDICT, ranking_request([{k: r.get(k) for k in columns} for r in ROWS]))
    assert by_columns["predictions"][0]["score"] == without_extras.json()["predictions"][0]["score"]
    assert len(by_rows["predictions"][0]["score"]) == 3


def test_an_unknown_module_is_scored_not_refused(server):
    response = post(server, KSERVE_PREDICT, ranking_request(module="a-surface-never-trained-on"))
    assert response.status_code == 200, response.text
    assert np.isfinite(response.json()["predictions"][0]["score"]).all()


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b'{"instances": [', 400, "Unrecognized request format"),
        (b'{"instances": [{"context": {"module_name": "s"}, "candidates": [{"price": NaN}]}]}', 400, "Unrecognized"),
        (b'{"instances": [{"context": {"module_name": "s"}, "candidates": [{"price": 1e999}]}]}', 400, "infinity"),
        ({"inputs": []}, 400, "unknown top-level field(s) ['inputs']"),
        ({"instances": "all of them"}, 400, "'instances' must be a non-empty list"),
        (ranking_request([{"price": "cheap"}]), 400, "instances[0].candidates.price[0]: expected a number or null"),
        (ranking_request([{"price": 1}, {"colour": "red"}]), 400, "unknown feature(s) ['colour']"),
        (ranking_request([{"price": 1}] * (MAX_CANDIDATES + 1)), 400, f"more than the maximum {MAX_CANDIDATES}"),
        (ranking_request({"price": [1.0, 2.0], "category": ["a"]}), 400, "columns have different lengths"),
        (ranking_request(top_k=-1), 400, "parameters.top_k must be a positive integer"),
        (b"x" * (MAX_BODY_BYTES + 1), 413, f"exceeds the limit of {MAX_BODY_BYTES} bytes"),
    ],
)
def test_bad_input_gets_a_4xx_naming_the_problem(server, body, status, message):
    for route in (KSERVE_PREDICT, VERTEX_PREDICT_ROUTE):
        response = post(server, route, body)
        assert response.status_code == status, response.text
        assert message in response.json()["error"]


def test_a_chunked_body_over_the_limit_is_refused_while_reading(server):
    def chunks():
        for _ in range(MAX_BODY_BYTES // 10_000 + 2):
            yield b" " * 10_000

    response = httpx.post(server.url + KSERVE_PREDICT, content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413 and "exceeds the limit" in response.json()["error"]


def test_a_body_without_json_content_type_is_still_parsed_or_refused(server):
    good = post(server, KSERVE_PREDICT, ranking_request(), headers={"content-type": "text/plain"})
    assert good.status_code == 200, good.text
    bad = post(server, KSERVE_PREDICT, b"not json", headers={"content-type": "text/plain"})
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]
    assert post(server, "/v1/models/another-model:predict", ranking_request()).status_code == 404


CLOUDEVENT_ATTRIBUTES = {"specversion": "1.0", "id": "e1", "source": "tests", "type": "ranking.request"}


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (ranking_request(), {"content-type": "application/cloudevents+json"}),
        (
            {**CLOUDEVENT_ATTRIBUTES, "time": "2026-01-01T00:00:00Z", "data": ranking_request()},
            {"content-type": "application/cloudevents+json"},
        ),
        ({**CLOUDEVENT_ATTRIBUTES, "data": ranking_request()}, {"content-type": "application/cloudevents+json"}),
        (
            ranking_request(),
            {"content-type": "application/json", **{f"ce-{k}": v for k, v in CLOUDEVENT_ATTRIBUTES.items()}},
        ),
        (
            ranking_request(),
            {"ce-contenttype": "application/json", **{f"ce-{k}": v for k, v in CLOUDEVENT_ATTRIBUTES.items()}},
        ),
    ],
    ids=[
        "structured-content-type",
        "structured-event",
        "structured-event-without-time",  # CloudEvents 1.0 makes `time` optional; KServe 0.x wants it
        "binary-event",
        "binary-event-with-ce-contenttype",
    ],
)
def test_cloudevents_are_scored_and_answered_as_cloudevents(server, content, headers):
    expected = post(server, KSERVE_PREDICT, ranking_request()).json()["predictions"][0]["score"]
    for route in (KSERVE_PREDICT, VERTEX_PREDICT_ROUTE):
        response = post(server, route, content, headers=headers)
        assert response.status_code == 200, response.text
        answer = response.json()
        predictions = answer["data"]["predictions"] if "specversion" in answer else answer["predictions"]
        np.testing.assert_allclose(predictions[0]["score"], expected, rtol=1e-6)


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", "application/cloudevents+json"])
def test_json_nested_deeper_than_the_decoders_go_is_a_400(server, content_type):
    """msgspec recurses without a limit into the free-form context and parameters; a RecursionError was a 500."""
    nested = "[" * 1100 + "]" * 1100
    in_context = ranking_request()
    in_context["instances"][0]["context"]["listing_ctr"] = "NESTED"
    in_parameters = ranking_request(top_k="NESTED")
    for request in (in_context, in_parameters):
        body = orjson.dumps(request).replace(b'"NESTED"', nested.encode())
        for route in (KSERVE_PREDICT, VERTEX_PREDICT_ROUTE):
            response = post(server, route, body, headers={"content-type": content_type})
            assert response.status_code == 400, (route, response.text[:300])


@pytest.mark.parametrize(
    "content_type", ["", "text/plain", "application/octet-stream", "multipart/form-data; boundary=x", "image/png"]
)
def test_every_content_type_gets_a_2xx_or_a_4xx(server, content_type):
    headers = {"content-type": content_type} if content_type else {}
    for content in (orjson.dumps(ranking_request()), b"\x00\xff not json", b'{"instances": 5}', b""):
        for route in (KSERVE_PREDICT, VERTEX_PREDICT_ROUTE):
            response = post(server, route, content, headers=headers)
            assert response.status_code < 500, (content_type, content, response.text)


def test_too_many_candidates_in_one_request_is_a_413_naming_the_limit(server):
    per_instance = MAX_REQUEST_CANDIDATES // 2 + 1  # each instance is within --max-candidates, the sum is not
    instance = ranking_request({"price": [1.0] * per_instance})["instances"][0]
    assert per_instance <= MAX_CANDIDATES
    assert post(server, KSERVE_PREDICT, {"instances": [instance]}).status_code == 200
    for route in (KSERVE_PREDICT, VERTEX_PREDICT_ROUTE):
        response = post(server, route, {"instances": [instance, instance]})
        assert response.status_code == 413, response.text
        assert f"more than the maximum {MAX_REQUEST_CANDIDATES} per request" in response.json()["error"]


def test_health_metrics_and_json_logs(server):
    for route in ("/", "/v2/health/live", "/v1/models/mmoe-ranker", VERTEX_HEALTH_ROUTE):
        assert httpx.get(server.url + route).status_code == 200, route
    post(server, KSERVE_PREDICT, ranking_request())
    post(server, KSERVE_PREDICT, ranking_request([{"price": "x"}]))
    metrics = httpx.get(server.url + "/metrics").text
    assert 'ranker_requests_total{route="predict",status="200"}' in metrics
    assert 'ranker_requests_total{route="predict",status="400"}' in metrics
    assert 'ranker_request_latency_seconds_bucket{le="0.05",route="predict"}' in metrics
    assert "ranker_candidates_per_request_count" in metrics
    ticks = re.search(r"^ranker_event_loop_lag_seconds_count (\S+)$", metrics, re.MULTILINE)
    assert ticks and float(ticks.group(1)) > 0, "the stall watchdog ticks on the serving loop"
    full = re.search(r'^ranker_gc_pause_seconds_count\{generation="2"\} (\S+)$', metrics, re.MULTILINE)
    assert full and float(full.group(1)) >= 1, "the collection before the start-up freeze is timed"
    lines = server.log_records()
    [frozen] = [line["message"] for line in lines if line["message"].startswith("froze ")]
    assert int(frozen.split()[1]) > 100_000, frozen  # TensorFlow, KServe and the model's objects
    access = [line for line in lines if line["logger"] == "serving.access"]
    assert any(line["status"] == 400 and line["path"] == KSERVE_PREDICT for line in access)
    refused = [line for line in lines if line["message"].startswith("invalid input:")]
    assert refused and all(line["severity"] == "WARNING" and "exception" not in line for line in refused)


def test_the_access_line_tells_the_wait_for_a_slow_clients_body_from_the_servers_own_time(server):
    body = orjson.dumps(ranking_request())
    head = f"POST {KSERVE_PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as client:
        client.sendall(f"{head}X-Request-Id: slow-body\r\nContent-Length: {len(body)}\r\n\r\n".encode())
        time.sleep(0.6)  # the client pauses between its headers and its body
        client.sendall(body)
        assert client.recv(4096).startswith(b"HTTP/1.1 200")
    deadline = time.monotonic() + 10
    while not (lines := [line for line in server.log_records() if line.get("request_id") == "slow-body"]):
        assert time.monotonic() < deadline, "no access line for the request"
        time.sleep(0.05)
    # The server's clock starts once it has read the headers, a little after the client sent them.
    assert lines[0]["body_read_ms"] >= 500 and lines[0]["latency_ms"] >= lines[0]["body_read_ms"], lines[0]
    assert lines[0]["latency_ms"] - lines[0]["body_read_ms"] < 500, lines[0]  # the server's own time: scoring ROWS


def test_a_client_that_stalls_mid_body_gets_a_408_and_loses_its_connection(server):
    body = orjson.dumps(ranking_request())
    head = f"POST {KSERVE_PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as client:
        client.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body[: len(body) // 2])
        started = time.monotonic()
        answer = client.recv(4096)
        waited = time.monotonic() - started
        client.settimeout(5)  # the server closes the connection (a timeout here fails the test): the rest
        while chunk := client.recv(4096):  # of the body is never read
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408") and b"RANKER_BODY_TIMEOUT_S" in answer, answer
    assert BODY_TIMEOUT_S - 0.5 < waited < BODY_TIMEOUT_S + 5


def test_an_unknown_model_route_is_a_404_and_one_warning_line(server):
    response = post(server, "/v1/models/no-such-model:predict", ranking_request())
    assert response.status_code == 404 and "no-such-model" in response.text
    lines = server.log_records()
    unknown = [line for line in lines if "no-such-model" in line["message"] and line["logger"] != "serving.access"]
    assert unknown and all(line["severity"] == "WARNING" and "exception" not in line for line in unknown)
    assert all(line["message"].startswith("unknown model:") for line in unknown)


def test_a_short_load_test_reports_and_enforces_budgets(server, model_dir, tmp_path):
    from pipelines.cli import main

    arguments = ["loadtest", "--url", server.url + KSERVE_PREDICT, "--model-dir", str(model_dir)]
    arguments += ["--candidates", "50", "--rate", "20", "--duration", "1", "--warmup", "0.25", "--arrival", "bursty"]
    arguments += ["--burst-on", "0.5", "--burst-off", "0.25"]
    assert main([*arguments, "--out", str(tmp_path / "report"), "--max-error-rate", "0"]) == 0
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["scheduled"] > 0 and summary["ok"] + summary["errors"] == summary["scheduled"]
    assert summary["statuses"] == {"200": summary["ok"]}
    assert (tmp_path / "report" / "report.html").stat().st_size > 0
    assert main([*arguments, "--max-p99", "0.001"]) == 1


@pytest.mark.parametrize("body_format", ["rows", "v2", "v2-binary", "v2-mixed"])
def test_a_load_test_sends_every_body_format_to_its_route(server, model_dir, body_format):
    from pipelines.cli import main

    route = "/v2/models/mmoe-ranker/infer" if body_format.startswith("v2") else KSERVE_PREDICT
    arguments = ["loadtest", "--url", server.url + route, "--model-dir", str(model_dir), "--format", body_format]
    arguments += ["--candidates", "20", "--rate", "20", "--duration", "0.5", "--warmup", "0", "--arrival", "constant"]
    assert main([*arguments, "--max-error-rate", "0"]) == 0  # every request answered 200
