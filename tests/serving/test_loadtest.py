"""The load tester against a stub HTTP server: schedules, counts, coordinated omission, report, budgets."""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import orjson
import pytest

from ranker_core.schema import LIST_SEPARATOR, Feature
from serving.loadtest import (
    BODY_FORMATS,
    DROPPED,
    SYNTHETIC_SEQUENCE_TOKENS,
    LoadTestConfig,
    arrival_times,
    auth_headers,
    check_budget,
    run_load_test,
    synthetic_payload,
    synthetic_request,
)
from serving.loadtest_cli import header, v2_model_name
from serving.loadtest_report import format_summary, write_report
from serving.open_inference import HEADER_LENGTH, INPUTS, decode_request, input_datatypes, tensors_to_instance
from serving.request import RequestParser
from tests.conftest import synthetic_feature_spec


class StubHandler(BaseHTTPRequestHandler):
    """POST /ok answers 200, /slow answers 200 after 200 ms, /fail answers 500; records auth headers."""

    seen_auth: list[str] = []

    def do_POST(self):
        self.rfile.read(int(self.headers["content-length"]))
        StubHandler.seen_auth.append(self.headers.get("authorization", ""))
        if self.path == "/slow":
            time.sleep(0.2)
        status = 500 if self.path == "/fail" else 200
        self.send_response(status)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def stub_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), StubHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_arrival_schedules():
    constant = arrival_times(LoadTestConfig(url="x", rate=10, arrival="constant", duration_s=2, warmup_s=1))
    assert len(constant) == 30 and np.allclose(np.diff(constant), 0.1)
    poisson = arrival_times(LoadTestConfig(url="x", rate=200, arrival="poisson", duration_s=20, warmup_s=0))
    assert 3600 < len(poisson) < 4400 and (np.diff(poisson) > 0).all()
    bursty = arrival_times(
        LoadTestConfig(url="x", rate=200, arrival="bursty", duration_s=20, warmup_s=0, burst_on_s=0.5, burst_off_s=1.5)
    )
    assert (np.mod(bursty, 2.0) < 0.5).all() and 800 < len(bursty) < 1200
    capped = arrival_times(
        LoadTestConfig(url="x", rate=10, arrival="constant", duration_s=5, warmup_s=1, max_requests=7)
    )
    assert (capped < 1).sum() == 10 and (capped >= 1).sum() == 7


def test_counts_add_up_and_auth_is_sent(stub_url):
    config = LoadTestConfig(
        url=f"{stub_url}/ok", rate=40, arrival="constant", duration_s=1.0, warmup_s=0.25, headers=auth_headers("t0k")
    )
    summary = run_load_test(config, b"{}").summary()
    assert summary["scheduled"] == 40 and summary["warmup_requests"] == 10
    assert summary["ok"] == 40 and summary["errors"] == 0 and summary["error_rate"] == 0
    assert summary["p50_ms"] <= summary["p90_ms"] <= summary["p99_ms"] <= summary["p99.9_ms"] <= summary["max_ms"]
    assert StubHandler.seen_auth[-1] == "Bearer t0k"


def test_concurrency_cap_drops_instead_of_delaying_and_latency_counts_from_the_intended_time(stub_url):
    config = LoadTestConfig(
        url=f"{stub_url}/slow", rate=50, arrival="constant", duration_s=1.0, warmup_s=0, concurrency=2
    )
    result = run_load_test(config, b"{}")
    summary = result.summary()
    assert summary["dropped"] > 0 and summary["ok"] + summary["dropped"] == summary["scheduled"] == 50
    assert summary["error_rate"] == pytest.approx(summary["dropped"] / 50)
    assert all(np.isnan(s.latency_s) for s in result.samples if s.status == DROPPED)
    assert summary["p50_ms"] >= 200


def test_server_errors_count_as_errors_and_budgets_fail(stub_url, tmp_path):
    config = LoadTestConfig(
        url=f"{stub_url}/fail", rate=20, arrival="poisson", duration_s=0.5, warmup_s=0, max_requests=5
    )
    result = run_load_test(config, b"{}")
    summary = result.summary()
    assert summary["scheduled"] == summary["failed"] == 5 and summary["error_rate"] == 1.0
    assert summary["statuses"] == {"500": 5}
    assert check_budget(summary, max_p99_ms=50, max_error_rate=0.01) == [
        "p99 latency nan ms exceeds the budget of 50 ms",
        "error rate 1.0000 exceeds the budget of 0.01",
    ]
    paths = write_report(result, tmp_path / "report")
    assert json.loads(paths["json"].read_text())["failed"] == 5
    assert paths["timeline"].read_bytes()[:4] == b"\x89PNG" and paths["histogram"].stat().st_size > 0
    assert "<img" in paths["html"].read_text() and "error_rate" in format_summary(summary)


def test_token_command_output_becomes_the_bearer_header():
    assert auth_headers(token_command="echo from-gcloud") == {"authorization": "Bearer from-gcloud"}
    with pytest.raises(RuntimeError, match="token command 'false' failed"):
        auth_headers(token_command="false")


@pytest.mark.parametrize("columnar", [True, False])
def test_generated_payload_is_a_valid_request_for_the_spec(columnar):
    spec = synthetic_feature_spec()
    payload = synthetic_payload(spec, candidates=25, columnar=columnar)
    batch = RequestParser(spec, max_candidates=25).parse(orjson.loads(payload))
    assert batch.num_candidates == 25
    assert (batch.columns["user_id"] == batch.columns["user_id"][0]).all()
    assert np.isfinite(batch.columns["price"]).all() and (batch.columns["price"] >= 0).all()
    assert set(batch.columns["category"]) <= set(spec.feature("category").vocabulary)


def test_a_behaviour_sequence_is_one_full_user_history_in_the_context():
    spec = synthetic_feature_spec()
    spec.features.append(Feature("recent_categories", "list", vocabulary=["art"], target="category"))
    instance = orjson.loads(synthetic_payload(spec, candidates=5))["instances"][0]
    history = instance["context"]["recent_categories"].split(LIST_SEPARATOR)
    assert len(history) == SYNTHETIC_SEQUENCE_TOKENS and set(history) <= set(spec.feature("category").vocabulary)
    assert "recent_categories" not in instance["candidates"]
    batch = RequestParser(spec, max_candidates=5).parse({"instances": [instance]})
    assert (batch.columns["recent_categories"] == instance["context"]["recent_categories"]).all()


@pytest.mark.parametrize("body_format", [f for f in BODY_FORMATS if f.startswith("v2")])
def test_v2_bodies_carry_the_columnar_payloads_values(body_format):
    spec = synthetic_feature_spec()
    parser = RequestParser(spec, max_candidates=25)
    v1 = parser.parse(orjson.loads(synthetic_payload(spec, candidates=25, seed=3)))
    body, headers = synthetic_request(spec, 25, body_format, seed=3)
    request = decode_request(body, headers.get(HEADER_LENGTH))
    v2 = parser.parse_single(tensors_to_instance(request, input_datatypes(spec)), INPUTS)
    assert v2.columns.keys() == v1.columns.keys()
    for name, column in v1.columns.items():
        assert list(v2.columns[name]) == list(column), name
    if body_format == "v2":
        assert headers == {"content-type": "application/json"}
        assert all("data" in tensor for tensor in orjson.loads(body)["inputs"])
        return
    assert headers["content-type"] == "application/octet-stream"
    tensors = orjson.loads(body[: int(headers[HEADER_LENGTH])])["inputs"]
    binary = {tensor["name"] for tensor in tensors if "binary_data_size" in tensor.get("parameters", {})}
    strings = {tensor["name"] for tensor in tensors if tensor["datatype"] == "BYTES"}
    assert binary == {tensor["name"] for tensor in tensors} - (set() if body_format == "v2-binary" else strings)


def test_an_unknown_body_format_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="body_format must be one of columns, rows, v2"):
        synthetic_request(synthetic_feature_spec(), 5, "protobuf")


def test_header_options_and_the_v2_models_name():
    assert header(" Content-Type :application/octet-stream") == ("content-type", "application/octet-stream")
    with pytest.raises(argparse.ArgumentTypeError, match="expected 'NAME: VALUE', got 'no-colon'"):
        header("no-colon")
    assert v2_model_name("http://h:8080/v2/models/ranker-b/versions/3/infer") == "ranker-b"
    assert v2_model_name("http://h:8080/v1/models/ranker-b:predict") == "mmoe-ranker"
