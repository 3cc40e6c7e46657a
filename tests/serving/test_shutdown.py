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
