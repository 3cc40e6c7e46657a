"""A request cut off by shutdown is a 503 (retry elsewhere), never a 500."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from types import SimpleNamespace

import pytest
from kserve.errors import ServerNotReady

from serving.batcher import RunnerClosedError
from serving.config import ServerConfig
from serving.request import RequestParser
from serving.server import RankerServingModel
from tests.conftest import synthetic_feature_spec
from tests.serving.conftest import REPO


class StoppedRunner:
    """A model runner as shutdown leaves it: closed, or cancelling the request in flight."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    async def predict(self, columns):
        raise self.error


@pytest.mark.parametrize("error", [RunnerClosedError("closed"), asyncio.CancelledError()])
def test_a_request_cut_off_by_shutdown_is_a_503(error):
    spec = synthetic_feature_spec()
    model = RankerServingModel("mmoe-ranker", SimpleNamespace(feature_spec=spec), ServerConfig())
    model.runner = StoppedRunner(error)
    batch = RequestParser(spec).parse({"instances": [{"context": {"module_name": "search"}, "candidates": [{}]}]})
    with pytest.raises(ServerNotReady, match="shutting down"):
        asyncio.run(model.predict(batch))


# A ready stand-in model, and SIGTERM sent while KServe builds the app: after KServe installs its signal
# handlers and before uvicorn installs its own (the moment a supervisor or Kubernetes stops a starting server).
SIGTERM_WHILE_STARTING = """
import os, signal
from kserve import Model
from kserve.protocol.rest.server import RESTServer
from tests.serving.conftest import free_port
from serving.server import ListeningModelServer

build_app = RESTServer.create_application
def build_app_then_sigterm(self):
    build_app(self)
    os.kill(os.getpid(), signal.SIGTERM)
RESTServer.create_application = build_app_then_sigterm

class Ready(Model):
    def load(self):
        self.ready = True
        return True

model = Ready("ready")
model.load()
ListeningModelServer(None, http_port=free_port(), enable_grpc=False, workers=1, grace_period=5).start([model])
print("stopped")
"""


def test_a_sigterm_while_the_server_starts_stops_it():
    """KServe's own handler stops its gRPC and multi-process servers, not the one REST server, which stops on
    uvicorn's handler: a signal before uvicorn installs it was lost, and the server served on."""
    completed = subprocess.run(
        [sys.executable, "-c", SIGTERM_WHILE_STARTING], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0 and "stopped" in completed.stdout, completed.stderr[-3000:]
