"""A request cut off by shutdown is a 503 (retry elsewhere), never a 500."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from kserve.errors import ServerNotReady

from serving.batcher import RunnerClosedError
from serving.config import ServerConfig
from serving.request import RequestParser
from serving.server import RankerServingModel
from tests.conftest import synthetic_feature_spec


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


def test_a_body_still_arriving_when_the_grace_period_ends_is_a_503():
    """uvicorn cancels the request's task at the end of the grace period; while the middleware reads the body."""
    from serving.observability import ObservabilityMiddleware

    async def app(scope, receive, send):
        raise AssertionError("the app must not run without the body")

    async def receive():
        raise asyncio.CancelledError()

    sent = []

    async def send(message):
        sent.append(message)

    middleware = ObservabilityMiddleware(app, classify=lambda path: "predict", max_body_bytes=1 << 20, access_log=False)
    scope = {"type": "http", "method": "POST", "path": "/predict", "headers": [(b"content-length", b"1000")]}
    asyncio.run(middleware(scope, receive, send))
    assert sent[0]["status"] == 503
    assert b"shutting down" in sent[1]["body"]
