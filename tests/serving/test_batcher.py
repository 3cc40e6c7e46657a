"""The model runners: one call per request, or concurrent requests merged into one call."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from serving.batcher import DirectRunner, MicroBatcher, RunnerClosedError


class RecordingModel:
    """score = price * 2; records the size of every call."""

    def __init__(self, fail: bool = False, seconds: float = 0.0) -> None:
        self.calls: list[int] = []
        self.fail = fail
        self.seconds = seconds
        self.lock = threading.Lock()

    def __call__(self, columns):
        with self.lock:
            self.calls.append(len(columns["price"]))
        time.sleep(self.seconds)
        if self.fail:
            raise RuntimeError("model exploded")
        return {"score": columns["price"] * 2, "click": columns["price"] / 10}


def request(first: float, size: int) -> dict[str, np.ndarray]:
    return {"price": np.arange(first, first + size, dtype=np.float32), "module_name": np.full(size, "m", dtype=object)}


async def run_concurrently(runner, requests):
    return await asyncio.gather(*(runner.predict(columns) for columns in requests))


def test_micro_batcher_merges_concurrent_requests_and_returns_each_its_rows():
    model = RecordingModel()
    batcher = MicroBatcher(model, max_wait_ms=50, max_candidates=10_000, workers=1)
    requests = [request(100 * i, size) for i, size in enumerate([3, 5, 2, 4])]
    outputs = asyncio.run(run_concurrently(batcher, requests))
    batcher.close()
    assert sum(model.calls) == 14 and len(model.calls) < 4  # merged into fewer calls
    for columns, output in zip(requests, outputs, strict=True):
        np.testing.assert_allclose(output["score"], columns["price"] * 2)
        np.testing.assert_allclose(output["click"], columns["price"] / 10)


def test_micro_batcher_closes_a_batch_at_the_candidate_cap():
    model = RecordingModel()
    batcher = MicroBatcher(model, max_wait_ms=1000, max_candidates=4, workers=1)
    asyncio.run(run_concurrently(batcher, [request(0, 4), request(10, 4)]))
    batcher.close()
    assert model.calls == [4, 4]


def test_without_a_wait_requests_queued_while_the_model_is_busy_go_in_the_next_call():
    model = RecordingModel(seconds=0.2)
    batcher = MicroBatcher(model, max_wait_ms=0, max_candidates=10_000, workers=1)

    async def first_then_three():
        first = asyncio.ensure_future(batcher.predict(request(0, 1)))
        await asyncio.sleep(0.05)  # the first call is running
        rest = [batcher.predict(request(10 * i, 2)) for i in range(1, 4)]
        return await asyncio.gather(first, *rest)

    outputs = asyncio.run(first_then_three())
    batcher.close()
    assert model.calls == [1, 6]
    assert outputs[3]["score"].tolist() == pytest.approx([60.0, 62.0])


def test_micro_batcher_hands_a_model_failure_to_every_waiting_request():
    batcher = MicroBatcher(RecordingModel(fail=True), max_wait_ms=20, max_candidates=100)

    async def both():
        return await asyncio.gather(*(batcher.predict(request(0, 2)) for _ in range(2)), return_exceptions=True)

    results = asyncio.run(both())
    batcher.close()
    assert all(isinstance(result, RuntimeError) for result in results)


def test_direct_runner_calls_the_model_once_per_request():
    model = RecordingModel()
    runner = DirectRunner(model)
    outputs = asyncio.run(run_concurrently(runner, [request(0, 3), request(5, 2)]))
    runner.close()
    assert sorted(model.calls) == [2, 3]
    assert outputs[1]["score"].tolist() == pytest.approx([10.0, 12.0])


def test_requests_queued_or_sent_after_close_learn_the_runner_closed():
    model = RecordingModel(seconds=0.3)
    batcher = MicroBatcher(model, max_wait_ms=0, max_candidates=10_000, workers=1)

    async def close_while_queued():
        first = asyncio.ensure_future(batcher.predict(request(0, 2)))
        await asyncio.sleep(0.05)  # the first is in the model; the second waits in the queue
        queued = asyncio.ensure_future(batcher.predict(request(5, 2)))
        await asyncio.sleep(0.05)
        batcher.close()  # in the loop, as the server stops it
        return await asyncio.gather(first, queued, return_exceptions=True)

    in_the_model, queued = asyncio.run(close_while_queued())
    assert isinstance(in_the_model, RunnerClosedError) and isinstance(queued, RunnerClosedError)
    for runner in (batcher, DirectRunner(RecordingModel())):
        runner.close()
        with pytest.raises(RunnerClosedError):
            asyncio.run(runner.predict(request(0, 1)))
