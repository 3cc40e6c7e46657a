"""The serving benchmark: its variants, the split of the server's CPU time by thread, its full garbage collections."""

from __future__ import annotations

import os
import threading
import time

import pytest

from benchmarks.bench_serving import (
    THREAD_KINDS,
    budget_misses,
    cpu_seconds,
    full_collections,
    full_gc_column,
    server_variant,
    thread_kind,
    thread_split,
)


def _burn(seconds: float) -> None:
    """Keep this thread on the CPU for ``seconds`` of its own CPU time."""
    started = time.thread_time()
    while time.thread_time() - started < seconds:
        sum(range(1000))


def test_threads_are_told_apart_by_id_and_by_tensorflows_names():
    assert thread_kind(100, 100, "ranker") == "main"
    assert thread_kind(101, 100, "tf_Compute") == "tensorflow"
    assert thread_kind(102, 100, "ranker") == "python"
    assert thread_kind(100, 100, "tf_Compute") == "main"


def test_cpu_time_lands_on_the_kind_of_thread_that_used_it():
    burned, release = threading.Event(), threading.Event()

    def work() -> None:
        _burn(0.4)
        burned.set()
        release.wait()  # a thread that has ended is no longer listed: it stays until it is counted

    before = cpu_seconds(os.getpid())
    worker = threading.Thread(target=work)
    worker.start()
    _burn(0.4)
    burned.wait()
    after = cpu_seconds(os.getpid())
    release.set()
    worker.join()
    spent = {kind: after[kind] - before[kind] for kind in ("total", *THREAD_KINDS)}
    assert spent["main"] >= 0.3
    assert spent["python"] >= 0.3
    assert spent["tensorflow"] == 0
    assert spent["total"] >= spent["main"] + spent["python"] - 0.05


def test_the_split_is_printed_as_main_python_tensorflow():
    summary = {"server_cpu_ms_main": 4.25, "server_cpu_ms_python": 1.3, "server_cpu_ms_tensorflow": 3.0}
    assert thread_split(summary) == "4.2/1.3/3.0"


def test_a_variant_names_batching_workers_and_the_heap_freeze():
    assert server_variant("batched") == (True, 1, True)
    assert server_variant("direct-2w-nofreeze") == (False, 2, False)
    with pytest.raises(ValueError, match="unknown variant 'batched-nofreeze-2w'"):
        server_variant("batched-nofreeze-2w")


def test_full_collections_are_read_from_the_servers_metrics():
    metrics = "\n".join(
        [
            'ranker_gc_pause_seconds_count{generation="0"} 40.0',
            'ranker_gc_pause_seconds_sum{generation="0"} 0.02',
            'ranker_gc_pause_seconds_count{generation="2"} 3.0',
            'ranker_gc_pause_seconds_sum{generation="2"} 0.5',
        ]
    )
    assert full_collections(metrics) == (3, 500.0)
    assert full_collections("") == (0, 0.0)  # a server that counts none
    assert full_gc_column({"full_gcs": 1, "full_gc_ms": 276.4}) == "1/276"
    assert full_gc_column({}) == "-"  # the plain server has no metrics


def test_the_p99_budget_judges_our_servers_not_the_plain_comparison():
    results = {
        "batched": {"fixed": {"p99_ms": 24.0}},
        "batched/v1": {"fixed": {"p99_ms": 31.5}},
        "plain": {"fixed": {"p99_ms": 900.0}},
    }
    assert budget_misses(results, 25) == ["batched/v1: p99 latency 31.5 ms exceeds the budget of 25 ms"]
    assert budget_misses(results, None) == [] and budget_misses(results, 40) == []
