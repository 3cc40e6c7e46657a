"""Running the model off the event loop, alone or with the candidates of concurrent requests batched together.

The model runs in worker threads (TensorFlow releases the GIL), so the event
loop keeps parsing and answering other requests meanwhile. A
:class:`DirectRunner` makes one model call per request; a :class:`MicroBatcher`
merges the candidates of the requests that queued while its workers were busy
(and, with ``max_wait_ms > 0``, of those arriving within that wait) into one
model call, so an idle server adds no latency and a busy one makes fewer,
larger calls::

    batcher = MicroBatcher(ranker.predict, max_wait_ms=0, max_candidates=16384, workers=2)
    outputs = await batcher.predict(columns)     # this request's rows only
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Mapping

import numpy as np

from serving.observability import MODEL_BATCH

Columns = Mapping[str, np.ndarray]
PredictFn = Callable[[Columns], Mapping[str, np.ndarray]]


class DirectRunner:
    """One model call per request, in a worker thread.

    Example::

        runner = DirectRunner(ranker.predict)
        outputs = await runner.predict({"module_name": ..., "price": ...})
    """

    def __init__(self, predict: PredictFn, threads: int = 2) -> None:
        self._predict = predict
        self._executor = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="ranker-model")
        self._closed = False

    async def predict(self, columns: Columns) -> Mapping[str, np.ndarray]:
        if self._closed:
            raise RunnerClosedError("the model runner is closed: the server is shutting down")
        MODEL_BATCH.observe(_rows(columns))
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._predict, columns)

    def close(self) -> None:
        self._closed = True
        self._executor.shutdown(wait=True)


class RunnerClosedError(RuntimeError):
    """A request reached the model runner after it closed (the server is shutting down): a 503."""


class MicroBatcher:
    """Merges concurrent requests into model calls; at most ``workers`` calls run at a time.

    A free worker takes every queued request (up to ``max_candidates`` rows),
    waits up to ``max_wait_ms`` for more, and scores them in one call. Each
    caller gets back its own rows.

    Example::

        batcher = MicroBatcher(ranker.predict, max_wait_ms=0, max_candidates=16384)
        outputs = await batcher.predict(columns)
    """

    def __init__(self, predict: PredictFn, max_wait_ms: float, max_candidates: int, workers: int = 2) -> None:
        self._predict = predict
        self._max_wait_s = max_wait_ms / 1000
        self._max_candidates = max_candidates
        self._workers_count = workers
        self._executor = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="ranker-batch")
        self._queue: asyncio.Queue[tuple[Columns, asyncio.Future]] | None = None
        self._workers: list[asyncio.Task] = []
        self._closed = False

    async def predict(self, columns: Columns) -> Mapping[str, np.ndarray]:
        if self._closed:
            raise RunnerClosedError("the model runner is closed: the server is shutting down")
        if not self._workers:
            self._queue = asyncio.Queue()
            loop = asyncio.get_running_loop()
            self._workers = [loop.create_task(self._run()) for _ in range(self._workers_count)]
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((columns, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            merged = batch[0][0] if len(batch) == 1 else _concatenate([columns for columns, _ in batch])
            MODEL_BATCH.observe(_rows(merged))
            try:
                outputs = await loop.run_in_executor(self._executor, self._predict, merged)
            except asyncio.CancelledError:  # close(): the requests of this call learn why they get no answer
                _fail(batch, RunnerClosedError("the server shut down while this request was scored"))
                raise
            except Exception as error:  # every waiting request learns about the failure
                _fail(batch, error)
                continue
            start = 0
            for columns, future in batch:
                end = start + _rows(columns)
                if not future.done():
                    future.set_result({key: values[start:end] for key, values in outputs.items()})
                start = end

    async def _collect(self) -> list[tuple[Columns, asyncio.Future]]:
        assert self._queue is not None
        batch = [await self._queue.get()]
        rows = _rows(batch[0][0])
        deadline = asyncio.get_running_loop().time() + self._max_wait_s
        while rows < self._max_candidates:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 and self._queue.empty():
                break
            try:
                item = (
                    self._queue.get_nowait() if remaining <= 0 else await asyncio.wait_for(self._queue.get(), remaining)
                )
            except (asyncio.QueueEmpty, TimeoutError):
                break
            batch.append(item)
            rows += _rows(item[0])
        return batch

    def close(self) -> None:
        """Stop the workers; every request still queued gets :class:`RunnerClosedError`."""
        self._closed = True
        for worker in self._workers:
            worker.cancel()
        while self._queue is not None and not self._queue.empty():
            _fail([self._queue.get_nowait()], RunnerClosedError("the server shut down before this request was scored"))
        self._executor.shutdown(wait=True)


def _fail(batch: list[tuple[Columns, asyncio.Future]], error: BaseException) -> None:
    """Hand ``error`` to every request of ``batch`` still waiting for its answer."""
    for _, future in batch:
        if not future.done():
            future.set_exception(error)


def _concatenate(parts: list[Columns]) -> dict[str, np.ndarray]:
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def _rows(columns: Columns) -> int:
    return len(next(iter(columns.values())))
