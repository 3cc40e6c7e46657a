"""Batches of whole requests (the listwise loss's input): requests never split, shuffled by request, seeded."""

import numpy as np
import pytest
import tensorflow as tf

from ranker_core.schema import REQUEST_ID
from tests.conftest import synthetic_rows
from trainer.examples import write_shards
from trainer.inputs import RequestBatches, pack_requests


def test_requests_fill_batches_in_order_and_a_large_one_is_a_batch_of_its_own():
    assert pack_requests([3, 4, 2, 9, 1], batch_size=6) == [0, 1, 3, 4]
    assert pack_requests([2, 2, 2], batch_size=6) == [0]
    assert pack_requests([7], batch_size=6) == [0]


@pytest.fixture(scope="module")
def scattered_requests(tmp_path_factory, spec):
    """A train split whose rows of a request are scattered over the shard; one request is larger than a batch."""
    rows = synthetic_rows(12, candidates=5, seed=3) + synthetic_rows(1, candidates=30, seed=4)
    order = np.random.default_rng(0).permutation(len(rows))
    folder = tmp_path_factory.mktemp("scattered")
    write_shards([rows[i] for i in order], folder, "train", spec)
    sizes: dict[str, int] = {}
    for row in rows:
        sizes[row[REQUEST_ID]] = sizes.get(row[REQUEST_ID], 0) + 1
    return folder, sizes


def one_pass(dataset: tf.data.Dataset) -> list[list[str]]:
    return [[value.decode() for value in batch[REQUEST_ID].numpy()] for batch in dataset]


def test_batches_hold_whole_requests(scattered_requests, spec):
    folder, sizes = scattered_requests
    dataset = RequestBatches.read(folder, "train").dataset(spec, batch_size=12, shuffle=True, seed=7)
    first, second = one_pass(dataset), one_pass(dataset)
    for batches in (first, second):
        seen: list[str] = []
        for batch in batches:
            counts = {request: batch.count(request) for request in set(batch)}
            assert all(counts[request] == sizes[request] for request in counts), "a request was split"
            assert len(batch) <= 12 or len(counts) == 1, "only a request larger than a batch may exceed it, alone"
            seen += list(counts)
        assert sorted(seen) == sorted(sizes), "every request once per pass"
    assert any(len(batch) == 30 for batch in first)
    assert [sorted(set(b)) for b in first] != [sorted(set(b)) for b in second], "each pass reshuffles"
    again = RequestBatches.read(folder, "train").dataset(spec, batch_size=12, shuffle=True, seed=7)
    assert one_pass(again) == first, "the same seed gives the same batches"


def test_unshuffled_batches_take_the_planned_steps(scattered_requests, spec):
    folder, sizes = scattered_requests
    requests = RequestBatches.read(folder, "train")
    batches = one_pass(requests.dataset(spec, batch_size=12))
    assert len(batches) == requests.steps(12)
    assert sorted(r for batch in batches for r in batch) == sorted(r for r, n in sizes.items() for _ in range(n))
