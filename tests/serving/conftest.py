"""Serving fixtures: a really trained tiny ranker and a `ranker serve` process on a loopback port."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
# Vertex AI sets these routes per deployment; the server must serve whatever they say.
VERTEX_PREDICT_ROUTE = "/v1/endpoints/123/deployedModels/456:predict"
VERTEX_HEALTH_ROUTE = "/v1/endpoints/123/deployedModels/456"
MAX_CANDIDATES = 60
MAX_REQUEST_CANDIDATES = 100
BODY_TIMEOUT_S = 2.0  # a slow-body test pauses well under it, the stalled-body test well over it
MAX_BODY_BYTES = 200_000


@pytest.fixture(scope="session")
def model_dir(synthetic_examples, tmp_path_factory) -> Path:
    """A tiny MMoE trained for one epoch on the synthetic examples and exported."""
    from trainer.config import TrainerConfig
    from trainer.train import train_and_export

    folder = tmp_path_factory.mktemp("served") / "model"
    config = TrainerConfig(epochs=1, batch_size=256, expert_units=[16, 8], tower_units=[8], embedding_dim=4)
    train_and_export(synthetic_examples, folder, config)
    return folder


@pytest.fixture(scope="session")
def store(tmp_path_factory) -> dict:
    """Examples, a tiny model trained on them and their materialized Feast repo (``online_store.materialized_store``),
    shared by the feature-store tests (which copy the repo before they change it)."""
    from tests.serving.online_store import materialized_store

    return materialized_store(tmp_path_factory.mktemp("feature_store"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`ranker serve` in a subprocess; ``url`` is its base URL."""

    def __init__(self, model_dir: Path, log_path: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        environment = {**os.environ, "AIP_HTTP_PORT": str(self.port), "MODEL_URI": str(model_dir), **env}
        self.log = log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pipelines.cli", "serve"],
            cwd=REPO,
            env=environment,
            stdout=self.log,
            stderr=self.log,
        )

    def log_records(self, skip_lines: int = 0) -> list[dict]:
        """The server's JSON log records (access lines included) after its first ``skip_lines`` lines."""
        lines = self.log_path.read_text().splitlines()[skip_lines:]
        return [json.loads(line) for line in lines if line.startswith("{")]

    def wait_ready(self, route: str, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}:\n{self.log_path.read_text()}")
            try:
                if httpx.get(self.url + route, timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"the server was not ready in {timeout_s} s:\n{self.log_path.read_text()}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        return self.process.returncode


@pytest.fixture(scope="session")
def server(model_dir, tmp_path_factory) -> Iterator[ServerProcess]:
    """A served ranker with Vertex AI routes, small limits and no batching, shared by the HTTP tests."""
    process = ServerProcess(
        model_dir,
        tmp_path_factory.mktemp("server") / "server.log",
        AIP_PREDICT_ROUTE=VERTEX_PREDICT_ROUTE,
        AIP_HEALTH_ROUTE=VERTEX_HEALTH_ROUTE,
        RANKER_MAX_CANDIDATES=str(MAX_CANDIDATES),
        RANKER_MAX_REQUEST_CANDIDATES=str(MAX_REQUEST_CANDIDATES),
        RANKER_MAX_BODY_BYTES=str(MAX_BODY_BYTES),
        RANKER_BODY_TIMEOUT_S=str(BODY_TIMEOUT_S),
        RANKER_BATCHING="false",  # one model call per request here; tests/serving/test_shutdown_and_batching.py batches
    )
    try:
        process.wait_ready(VERTEX_HEALTH_ROUTE)
        yield process
    finally:
        process.stop()
