"""A server with micro-batching on: batched answers equal direct scoring; SIGTERM finishes in-flight requests."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import time

import httpx
import numpy as np
import orjson
import pytest

from tests.serving.conftest import ServerProcess

pytestmark = pytest.mark.slow

MODULES = ("search", "home_feed", "item_page", "never-seen")


def request_for(module: str, size: int) -> dict:
    candidates = {"price": [float(10 + i) for i in range(size)], "listing_id": [f"l{i}" for i in range(size)]}
    return {"instances": [{"context": {"module_name": module}, "candidates": candidates}]}


@pytest.fixture(scope="module")
def batching_server(model_dir, tmp_path_factory):
    process = ServerProcess(
        model_dir,
        tmp_path_factory.mktemp("batching") / "server.log",
        RANKER_BATCHING="1",
        RANKER_BATCH_WAIT_MS="50",
        RANKER_MODEL_THREADS="1",
        RANKER_GC_FREEZE="off",  # the shared server freezes its heap (tests/serving/test_server.py); this one does not
    )
    try:
        process.wait_ready("/health")
        yield process
    finally:
        process.stop()


def test_concurrent_requests_are_batched_and_each_gets_its_own_scores(batching_server, model_dir):
    from serving.request import RequestParser
    from trainer.predict import load_ranker

    ranker = load_ranker(model_dir)
    requests = [request_for(MODULES[i % len(MODULES)], 3 + i) for i in range(8)]

    async def send_all():
        async with httpx.AsyncClient(base_url=batching_server.url, timeout=30) as client:
            return await asyncio.gather(*(client.post("/predict", json=request) for request in requests))

    responses = asyncio.run(send_all())
    for request, response in zip(requests, responses, strict=True):
        assert response.status_code == 200, response.text
        expected = ranker.predict(RequestParser(ranker.feature_spec).parse(request).columns)["score"]
        np.testing.assert_allclose(response.json()["predictions"][0]["score"], expected, rtol=1e-5)
    metrics = httpx.get(batching_server.url + "/metrics").text
    model_calls = float(re.search(r"^ranker_model_batch_candidates_count (\S+)$", metrics, re.M).group(1))
    assert model_calls < len(requests)


def test_sigterm_finishes_the_request_in_flight_then_exits(model_dir, tmp_path):
    server = ServerProcess(model_dir, tmp_path / "server.log")
    server.wait_ready("/health")
    body = orjson.dumps(request_for("search", 20))
    head = (
        "POST /predict HTTP/1.1\r\nHost: ranker\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as connection:
        connection.sendall(head.encode() + body[:10])  # the request is in flight: headers and part of the body
        time.sleep(0.5)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        assert server.process.poll() is None, "the server quit with a request in flight"
        with pytest.raises(httpx.TransportError):  # ... but it takes no new connection
            httpx.get(server.url + "/health", timeout=2)
        connection.sendall(body[10:])
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 200 OK", answer[:500]
    payload = orjson.loads(rest.split(b"\r\n\r\n", 1)[1])
    assert len(payload["predictions"][0]["score"]) == 20
    assert server.process.wait(timeout=30) == 0, server.log_path.read_text()[-2000:]
    server.stop()


def test_with_the_freeze_off_nothing_is_frozen_and_pauses_are_still_timed(batching_server):
    httpx.post(batching_server.url + "/predict", json=request_for(MODULES[0], 3), timeout=30).raise_for_status()
    assert not [line for line in batching_server.log_records() if line["message"].startswith("froze ")]
    metrics = httpx.get(batching_server.url + "/metrics").text
    assert re.search(r'^ranker_gc_pause_seconds_count\{generation="0"\} ', metrics, re.M), "collections are not timed"
