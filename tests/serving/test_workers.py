"""`ranker serve --workers 2`: two server processes on one port, metrics summed over them, stopped together."""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.serving.conftest import ServerProcess

pytestmark = pytest.mark.slow

BODY = {
    "instances": [
        {"context": {"module_name": "search"}, "candidates": [{"listing_id": "l1", "price": 12.5}, {"price": 3.0}]}
    ]
}


def start_workers(model_dir, tmp_path) -> ServerProcess:
    # An inherited metrics directory (importing Feast sets one) is someone else's: the workers count elsewhere.
    inherited = tmp_path / "inherited-metrics"
    inherited.mkdir()
    process = ServerProcess(
        model_dir,
        tmp_path / "workers.log",
        RANKER_WORKERS="2",
        RANKER_BATCHING="false",
        PROMETHEUS_MULTIPROC_DIR=str(inherited),
    )
    process.wait_ready("/health")
    return process


def worker_pids(process: ServerProcess, count: int = 2, timeout_s: float = 60.0) -> set[int]:
    """The pids that logged the model loading: the worker processes, waiting until ``count`` have (the port is
    ready with the first worker; the second may not have started loading yet)."""
    deadline = time.monotonic() + timeout_s
    while True:
        pids = {record["pid"] for record in process.log_records() if record["message"].startswith("loading the ranker")}
        if len(pids) >= count or time.monotonic() > deadline:
            return pids
        time.sleep(0.2)


def served_count(metrics: str) -> float:
    found = re.search(r'^ranker_requests_total\{route="predict",status="200"\} (\S+)$', metrics, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def predict_on_new_connections(url: str, count: int) -> list[int]:
    """``count`` predictions, 8 at a time, each on a connection of its own (a kept-alive one stays with one worker)."""
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda _: httpx.post(url + "/predict", json=BODY, timeout=30).status_code, range(count)))


def wait_until_each_answers(process: ServerProcess, workers: set[int], timeout_s: float = 60.0) -> None:
    """Requests on new connections until every worker has answered one: the port is ready when the first worker
    is, and the others (still loading the model) join as they finish."""
    deadline = time.monotonic() + timeout_s
    while (answered := {record["pid"] for record in process.log_records() if "latency_ms" in record}) != workers:
        assert time.monotonic() < deadline, f"only {answered} of the workers {workers} answered on the shared port"
        assert predict_on_new_connections(process.url, 8) == [200] * 8


def wait_for_exit(pid: int, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def test_two_workers_share_the_port_count_into_one_metrics_and_stop_together(model_dir, tmp_path):
    process = start_workers(model_dir, tmp_path)
    try:
        workers = worker_pids(process)
        assert len(workers) == 2 and process.process.pid not in workers, workers
        wait_until_each_answers(process, workers)
        served_before = served_count(httpx.get(process.url + "/metrics").text)
        statuses = predict_on_new_connections(process.url, 60)
        assert statuses == [200] * 60
        # Whichever worker answers the scrape, it reports every worker's requests.
        for _ in range(4):
            assert served_count(httpx.get(process.url + "/metrics").text) == served_before + 60
        inherited = [path.name for path in (tmp_path / "inherited-metrics").iterdir()]
        assert not [name for name in inherited if any(f"_{pid}." in name for pid in workers)], inherited
    finally:
        code = process.stop()
    assert code == 0, process.log_path.read_text()[-3000:]
    assert all(wait_for_exit(pid) for pid in workers), "SIGTERM stops every worker"


def test_a_worker_that_dies_stops_the_server_with_an_error(model_dir, tmp_path):
    process = start_workers(model_dir, tmp_path)
    try:
        workers = worker_pids(process)
        assert len(workers) == 2, workers
        killed, other = sorted(workers)
        os.kill(killed, signal.SIGKILL)
        assert process.process.wait(timeout=60) == 1
        assert wait_for_exit(other), "the other worker is stopped too"
    finally:
        process.stop()
    errors = [record["message"] for record in process.log_records() if record["severity"] == "ERROR"]
    assert any(f"(pid {killed}) exited with code -9: stopping the others" in message for message in errors), errors


def test_a_port_in_use_is_an_error_that_names_it(model_dir, tmp_path):
    with socket.create_server(("0.0.0.0", 0)) as taken:
        port = taken.getsockname()[1]
        process = ServerProcess(model_dir, tmp_path / "workers.log", RANKER_WORKERS="2", AIP_HTTP_PORT=str(port))
        assert process.process.wait(timeout=120) == 1
        process.stop()
    errors = [record["message"] for record in process.log_records() if record["severity"] == "ERROR"]
    assert any(f"cannot listen on port {port}" in message for message in errors), errors


def test_a_worker_that_cannot_open_its_model_is_one_line_and_exit_status_2(tmp_path):
    """Each worker loads the model itself: a user error there is the same one line as from a single process."""
    process = ServerProcess(tmp_path / "no_model", tmp_path / "workers.log", RANKER_WORKERS="2")
    try:
        assert process.process.wait(timeout=120) == 2
    finally:
        process.stop()
    log = (tmp_path / "workers.log").read_text()
    assert "ranker serve: model folder" in log and "Traceback" not in log, log
