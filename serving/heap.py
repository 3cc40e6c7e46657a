"""The garbage collector in a long-running server: the start-up heap frozen, every pause measured.

A server that has loaded TensorFlow, Keras, KServe and the model holds about
440,000 objects that live as long as the process. Python's full (generation 2)
collections walk every one of them, and nothing else runs meanwhile: 264 to 305
ms per collection on a 2-core AMD EPYC, about every 13 s under 50 row-payload
requests a second, and every request in flight waits for it. Freezing the start-up heap
(``gc.freeze``, as large Python services do) moves those objects into a
permanent generation the collector no longer walks, so a full collection only
walks what requests allocated since: about 1 ms.

Every collection is timed into ``ranker_gc_pause_seconds{generation}`` at
``/metrics``, so an operator can see the pauses, frozen or not. The collector's
callback only appends to a queue: a collection can start inside any allocation,
including one made while prometheus_client holds its (non-reentrant) lock, and a
callback that observed the histogram there waited for that lock forever (a server
deadlock seen in a test run). The queue is moved into the histogram by
:func:`flush_gc_pauses`, which the request middleware calls before every request::

    record_gc_pauses()                 # once per process
    frozen = freeze_startup_heap()     # after the model is loaded and warmed up
    flush_gc_pauses()                  # outside any collection: before each request, before /metrics
"""

from __future__ import annotations

import collections
import gc
import time
from typing import Any

from prometheus_client import Histogram

GC_PAUSE = Histogram(
    "ranker_gc_pause_seconds",
    "garbage-collector pauses (every thread stops) by generation",
    ["generation"],
    buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)


def freeze_startup_heap() -> int:
    """Collect the start-up garbage, then freeze every object left; how many objects are frozen.

    Collecting first matters: garbage frozen along with the heap would never be freed.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


# (generation, seconds) of collections not yet in GC_PAUSE; bounded so that a server with no requests for
# a long while keeps the latest pauses only. deque.append takes no lock a collection could find held.
_PENDING: collections.deque[tuple[int, float]] = collections.deque(maxlen=100_000)


class _PauseTimer:
    """A ``gc.callbacks`` entry: the time between a collection's start and stop, queued for :data:`GC_PAUSE`."""

    def __init__(self) -> None:
        self.started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        else:
            _PENDING.append((info["generation"], time.perf_counter() - self.started))


def flush_gc_pauses() -> None:
    """Observe the queued pauses into ``ranker_gc_pause_seconds`` (call it outside collection callbacks)."""
    while _PENDING:
        generation, seconds = _PENDING.popleft()
        GC_PAUSE.labels(generation=str(generation)).observe(seconds)


def record_gc_pauses() -> None:
    """Time every collection of this process into ``ranker_gc_pause_seconds`` (once; later calls do nothing)."""
    if not any(isinstance(callback, _PauseTimer) for callback in gc.callbacks):
        gc.callbacks.append(_PauseTimer())
