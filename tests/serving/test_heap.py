"""The server's garbage collector: the start-up heap frozen (garbage freed first), every pause timed."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import threading

import pytest
from prometheus_client import REGISTRY

from serving.heap import GC_PAUSE, flush_gc_pauses, freeze_startup_heap, record_gc_pauses


class Node:
    """An object that can sit in a reference cycle, which only the collector frees."""


@pytest.fixture
def unfrozen():
    """Unfreeze after the test: this test process must not keep its heap out of the collector."""
    yield
    gc.unfreeze()


def pauses(generation: int) -> float:
    return REGISTRY.get_sample_value("ranker_gc_pause_seconds_count", {"generation": str(generation)}) or 0.0


FREEZE_IN_A_QUIET_PROCESS = """
import gc, json, weakref
from serving.heap import freeze_startup_heap

class Node:
    pass

cycle = Node()
cycle.itself = cycle
garbage = weakref.ref(cycle)
kept = weakref.ref(keep := Node())
del cycle
frozen = freeze_startup_heap()
print(json.dumps({"frozen": frozen, "count": gc.get_freeze_count(), "garbage": garbage() is not None,
                  "kept": kept() is not None}))
"""


def test_freezing_frees_the_start_up_garbage_first_and_freezes_what_lives():
    # A fresh interpreter with no other thread: in the suite's process, threads left by earlier tests can free
    # frozen objects between the two counts, and the exact equality below would race with them.
    completed = subprocess.run(
        [sys.executable, "-c", FREEZE_IN_A_QUIET_PROCESS], capture_output=True, text=True, check=True
    )
    facts = json.loads(completed.stdout.splitlines()[-1])
    assert not facts["garbage"], "a cycle frozen with the heap would never be freed"
    assert facts["frozen"] == facts["count"] > 1000  # the modules' and the script's live objects
    assert facts["kept"]


def test_a_full_collection_after_the_freeze_walks_only_what_was_made_since(unfrozen):
    freeze_startup_heap()
    made_since = [Node() for _ in range(10)]
    assert len(gc.get_objects(generation=2)) < 0.01 * gc.get_freeze_count()
    assert made_since


@pytest.fixture
def no_automatic_collections():
    """Only the test's own collections run (reading the registry allocates enough to start one)."""
    gc.disable()
    yield
    gc.enable()


def test_every_collection_is_timed_once_by_generation(no_automatic_collections):
    record_gc_pauses()
    record_gc_pauses()  # a second call adds no second timer
    before = [pauses(generation) for generation in range(3)]
    gc.collect(0)
    gc.collect()
    flush_gc_pauses()
    assert [pauses(generation) for generation in range(3)] == [before[0] + 1, before[1], before[2] + 1]
    assert REGISTRY.get_sample_value("ranker_gc_pause_seconds_sum", {"generation": "2"}) > 0


def test_a_collection_never_waits_for_a_lock_the_metrics_hold(no_automatic_collections):
    # A collection starts inside whatever allocates: in the server, once, inside prometheus_client while it held
    # its lock, and a callback that observed the histogram there waited for that lock forever.
    record_gc_pauses()
    flush_gc_pauses()
    before = pauses(2)
    value = GC_PAUSE.labels(generation="2")._sum  # a MutexValue: what observe() locks in a single process
    collected = threading.Event()
    with value._lock:
        thread = threading.Thread(target=lambda: (gc.collect(), collected.set()), daemon=True)
        thread.start()
        finished = collected.wait(5)
    thread.join()
    assert finished, "the collection's callback waited for the metric's lock"
    assert pauses(2) == before  # queued, not yet observed
    flush_gc_pauses()
    assert pauses(2) == before + 1
