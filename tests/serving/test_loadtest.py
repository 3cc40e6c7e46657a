"""The load tester against a stub HTTP server: schedules, counts, coordinated omission, report, budgets, and
``ranker loadtest``'s refusals of what cannot run."""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import math
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import orjson
import pytest

from ranker_core.cli_support import UserError
from ranker_core.schema import FEATURE_SPEC_FILE, LIST_SEPARATOR, Feature
from serving.loadtest import (
    BODY_FORMATS,
    DROPPED,
    SYNTHETIC_SEQUENCE_TOKENS,
    InvalidSettingError,
    LoadTestConfig,
    LoadTestResult,
    Sample,
    arrival_times,
    auth_headers,
    check_budget,
    iter_arrivals,
    run_load_test,
    synthetic_payload,
    synthetic_request,
)
from serving.loadtest_cli import header, report, v2_model_name
from serving.loadtest_report import format_summary, write_report
from serving.open_inference import HEADER_LENGTH, INPUTS, decode_request, input_datatypes, tensors_to_instance
from serving.request import RequestParser
from tests.conftest import synthetic_feature_spec


class StubHandler(BaseHTTPRequestHandler):
    """POST /ok answers 200, /slow answers 200 after 200 ms, /fail answers 500, /missing 404 with a reason;
    records auth headers and the paths requested."""

    seen_auth: list[str] = []
    seen_paths: list[str] = []

    def do_POST(self):
        self.rfile.read(int(self.headers["content-length"]))
        StubHandler.seen_auth.append(self.headers.get("authorization", ""))
        StubHandler.seen_paths.append(self.path)
        if self.path == "/slow":
            time.sleep(0.2)
        status, body = {"/fail": (500, b"{}"), "/missing": (404, b'{"detail": "no such\nroute"}')}.get(
            self.path, (200, b"{}")
        )
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

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
    assert summary["first_error"] == "HTTP 500 Internal Server Error: {}"
    assert check_budget(summary, max_p99_ms=50, max_error_rate=0.01) == [
        "no p99 latency to hold to the budget of 50 ms: no request succeeded",
        "error rate 1.0000 exceeds the budget of 0.01",
    ]
    paths = write_report(result, tmp_path / "report")
    assert json.loads(paths["json"].read_text())["failed"] == 5
    assert paths["timeline"].read_bytes()[:4] == b"\x89PNG" and paths["histogram"].stat().st_size > 0
    assert "<img" in paths["html"].read_text() and "error_rate" in format_summary(summary)
    assert "<th>first_error</th><td>HTTP 500 Internal Server Error: {}</td>" in paths["html"].read_text()


def test_a_dropped_arrival_is_the_first_error_only_when_no_request_failed(stub_url):
    config = LoadTestConfig(
        url=f"{stub_url}/slow", rate=50, arrival="constant", duration_s=0.2, warmup_s=0, concurrency=1, timeout_s=0.05
    )
    timed_out = run_load_test(config, b"{}").summary()
    assert timed_out["dropped"] > 0 and timed_out["first_error"].endswith("no answer within 0.05 s")
    config = dataclasses.replace(config, timeout_s=10)
    assert run_load_test(config, b"{}").summary()["first_error"] == "dropped: 1 requests were in flight"


def test_a_huge_rate_schedules_no_more_than_it_sends():
    capped = LoadTestConfig(url="x", rate=1e9, duration_s=30, warmup_s=0, max_requests=10)
    assert len(arrival_times(capped)) == 10
    endless = LoadTestConfig(url="x", rate=1e6, duration_s=1000, warmup_s=0)
    assert len(list(itertools.islice(iter_arrivals(endless), 5))) == 5  # not a billion times up front
    with pytest.raises(InvalidSettingError, match=r"rate 1e\+09: schedules about 5e\+09 requests in 35 s") as refused:
        LoadTestConfig(url="x", rate=1e9, duration_s=30, warmup_s=5, max_requests=10)
    assert refused.value.field == "rate"


def test_bursty_arrivals_cost_nothing_in_the_silences():
    config = LoadTestConfig(
        url="x", rate=1e5, arrival="bursty", duration_s=3000, warmup_s=0, burst_on_s=0.001, burst_off_s=1000
    )
    times = arrival_times(config)  # Poisson through 3000 s at 1e5/s would be 3e8 arrivals before the filter
    assert 200 < len(times) < 400 and (np.mod(times, 1000.001) < 0.001).all()


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"rate": math.nan}, "rate nan: must be a positive number of requests per second"),
        ({"rate": math.inf}, "rate inf: must be a positive number of requests per second"),
        ({"duration_s": 0.0}, "duration_s 0: must be a positive number of seconds"),
        ({"timeout_s": -1.0}, "timeout_s -1: must be a positive number of seconds"),
        ({"seed": -1}, "seed -1: must be 0 or positive"),
        ({"arrival": "bursty", "burst_off_s": math.nan}, "burst_off_s nan: must be 0 or a positive number of seconds"),
    ],
)
def test_a_setting_out_of_range_is_named_with_its_value(setting, message):
    with pytest.raises(InvalidSettingError, match=f"^{re.escape(message)}$"):
        LoadTestConfig(url="x", **setting)


def test_token_command_output_becomes_the_bearer_header():
    assert auth_headers(token_command="echo from-gcloud") == {"authorization": "Bearer from-gcloud"}


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("false", "exited with status 1 and printed nothing on stderr"),
        ('sh -c "echo denied >&2; exit 3"', "exited with status 3: denied"),
        ("true", "printed no token"),
        ("no-such-program-here", "no such program"),
    ],
)
def test_a_token_command_that_prints_no_token_is_a_user_error_naming_it(command, message):
    with pytest.raises(UserError) as refused:
        auth_headers(token_command=command)
    assert str(refused.value) == f"--token-command {command!r}: {message}"


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


@pytest.fixture
def spec_dir(tmp_path):
    synthetic_feature_spec().save(tmp_path / FEATURE_SPEC_FILE)
    return tmp_path


def ranker_loadtest(url: str, *arguments: str) -> int:
    """``ranker loadtest`` of a short, small test of ``url``; its exit status."""
    from pipelines.cli import main

    return main(["loadtest", "--url", url, "--rate", "20", "--duration", "0.2", "--warmup", "0", *arguments])


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--rate", "0"], "--rate 0: must be a positive number of requests per second"),
        (["--rate", "-5"], "--rate -5: must be a positive number of requests per second"),
        (["--rate", "inf"], "--rate inf: must be a positive number of requests per second"),
        (["--rate", "nan"], "--rate nan: must be a positive number of requests per second"),
        (["--duration", "0"], "--duration 0: must be a positive number of seconds"),
        (["--concurrency", "0"], "--concurrency 0: must be at least 1"),
        (["--warmup", "-1"], "--warmup -1: must be 0 or a positive number of seconds"),
        (["--max-requests", "0"], "--max-requests 0: must be at least 1"),
        (["--arrival", "bursty", "--burst-on", "0"], "--burst-on 0: must be a positive number of seconds"),
        (["--timeout", "0"], "--timeout 0: must be a positive number of seconds"),
        (["--candidates", "0"], "--candidates 0: must be at least 1"),
        (["--max-p99", "nan"], "--max-p99 nan: must be a positive number of milliseconds"),
        (["--max-error-rate", "2"], "--max-error-rate 2: must be between 0 and 1"),
        (["--token-command", "false"], "--token-command 'false': exited with status 1 and printed nothing on stderr"),
        (
            ["--rate", "1e9", "--warmup", "5", "--max-requests", "10"],
            "--rate 1e+09: schedules about 5e+09 requests in 5.2 s, "
            "more than one client can send (at most 1e+06 a second)",
        ),
    ],
)
def test_a_bad_flag_value_is_one_line_naming_it_and_exit_2_before_any_request(
    stub_url, spec_dir, capsys, arguments, message
):
    sent = len(StubHandler.seen_paths)
    assert ranker_loadtest(f"{stub_url}/ok", "--model-dir", str(spec_dir), *arguments) == 2
    assert capsys.readouterr().err == f"ranker loadtest: {message}\n"
    assert len(StubHandler.seen_paths) == sent


def test_a_url_without_a_scheme_is_refused(spec_dir, capsys):
    assert ranker_loadtest("127.0.0.1:8080/predict", "--model-dir", str(spec_dir)) == 2
    assert capsys.readouterr().err == "ranker loadtest: --url 127.0.0.1:8080/predict: not an http:// or https:// URL\n"


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no such file"), ("folder", "is a folder, not a file"), (b"{not json", "not valid JSON (")],
)
def test_a_payload_that_cannot_be_read_or_parsed_is_refused_before_any_request(
    stub_url, tmp_path, capsys, content, message
):
    payload = tmp_path / "request.json"
    if content == "folder":
        payload.mkdir()
    elif content is not None:
        payload.write_bytes(content)
    sent = len(StubHandler.seen_paths)
    assert ranker_loadtest(f"{stub_url}/ok", "--payload", str(payload)) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"ranker loadtest: --payload {payload}: {message}") and error.count("\n") == 1
    assert len(StubHandler.seen_paths) == sent


def test_a_payload_sent_as_binary_need_not_be_json(stub_url, tmp_path):
    payload = tmp_path / "request.bin"
    payload.write_bytes(b"\x00\x01 not json")
    binary = ["--header", "content-type: application/octet-stream", "--max-requests", "1"]
    assert ranker_loadtest(f"{stub_url}/ok", "--payload", str(payload), *binary) == 0


@pytest.mark.parametrize("out", ["afile", "afile/report"])
def test_an_out_folder_that_cannot_be_made_is_refused_before_any_request(stub_url, spec_dir, tmp_path, capsys, out):
    (tmp_path / "afile").write_text("a file, not a folder")
    sent = len(StubHandler.seen_paths)
    assert ranker_loadtest(f"{stub_url}/ok", "--model-dir", str(spec_dir), "--out", str(tmp_path / out)) == 2
    expected = f"ranker loadtest: --out {tmp_path / out}: {tmp_path / 'afile'} is a file, not a folder\n"
    assert capsys.readouterr().err == expected
    assert len(StubHandler.seen_paths) == sent


def test_a_first_request_answered_with_an_error_stops_the_test_with_the_answer(stub_url, spec_dir, caplog, capsys):
    sent = len(StubHandler.seen_paths)
    with caplog.at_level(logging.ERROR, logger="serving.loadtest_cli"):
        assert ranker_loadtest(f"{stub_url}/missing", "--model-dir", str(spec_dir)) == 1
    assert StubHandler.seen_paths[sent:] == ["/missing"]
    assert caplog.messages == [
        'no request succeeded: HTTP 404 Not Found: {"detail": "no such route"} '
        "(the request sent before the test; the test did not run)"
    ]
    assert capsys.readouterr().out == ""


def test_a_first_request_to_no_server_stops_the_test_with_the_transport_error(spec_dir, caplog):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with caplog.at_level(logging.ERROR, logger="serving.loadtest_cli"):
        assert ranker_loadtest(f"http://127.0.0.1:{port}/predict", "--model-dir", str(spec_dir)) == 1
    assert caplog.messages[0].startswith(
        f"no request succeeded: ClientConnectorError: Cannot connect to host 127.0.0.1:{port}"
    )


def budgets(max_p99: float | None = None, max_error_rate: float | None = None) -> argparse.Namespace:
    return argparse.Namespace(out=None, max_p99=max_p99, max_error_rate=max_error_rate)


def test_a_run_where_no_request_succeeded_exits_1_with_the_first_error(caplog, capsys):
    samples = [
        Sample(0.0, math.nan, DROPPED, False, "dropped: 1 requests were in flight"),
        Sample(0.1, 0.01, 500, False, "HTTP 500 Internal Server Error: boom"),
    ]
    result = LoadTestResult(LoadTestConfig(url="http://h/predict"), samples, measured_s=1.0)
    with caplog.at_level(logging.ERROR, logger="serving.loadtest_cli"):
        assert report(result, budgets(max_p99=50)) == 1
    assert caplog.messages == ["no request succeeded: HTTP 500 Internal Server Error: boom"]
    assert "first_error      HTTP 500 Internal Server Error: boom" in capsys.readouterr().out


def test_a_run_where_some_requests_failed_shows_the_first_error_and_keeps_the_budgets(caplog, capsys):
    samples = [Sample(0.0, 0.01, 200, False), Sample(0.1, 0.01, 503, False, "HTTP 503 Service Unavailable: busy")]
    result = LoadTestResult(LoadTestConfig(url="http://h/predict"), samples, measured_s=1.0)
    assert report(result, budgets(max_p99=50)) == 0
    assert "first_error      HTTP 503 Service Unavailable: busy" in capsys.readouterr().out
    with caplog.at_level(logging.ERROR, logger="serving.loadtest_cli"):
        assert report(result, budgets(max_error_rate=0.1)) == 1
    assert caplog.messages == ["budget missed: error rate 0.5000 exceeds the budget of 0.1"]
