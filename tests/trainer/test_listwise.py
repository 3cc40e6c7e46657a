"""The listwise loss per request: the loss itself, batches of whole requests and a training run with it."""

import dataclasses
import json
import logging
import math
from collections import Counter

import numpy as np
import pytest
import tensorflow as tf

from ranker_core.schema import REQUEST_ID
from tests.conftest import synthetic_rows
from tests.trainer.conftest import TINY_CONFIG
from trainer.config import TrainerConfig
from trainer.examples import write_shards
from trainer.inputs import RequestBatches, ShardedRequestBatches, pack_requests
from trainer.listwise import ListwiseSoftmaxLoss, listwise_tasks
from trainer.train import train_and_export

# Three requests in one flat batch, their rows interleaved; "b" has no positive.
REQUESTS = ["a", "b", "a", "c", "a", "b", "c"]
LABELS = [1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0]
LOGITS = [2.0, 3.0, 0.0, 0.5, 1.0, -1.0, -0.5]


def hand_cross_entropies() -> tuple[float, float]:
    """Requests "a" and "c" by hand ("b" has no positive)."""
    # a: logits (2, 0, 1), labels (1, 0, 1) -> targets (1/2, 0, 1/2)
    log_norm_a = math.log(math.exp(2.0) + math.exp(0.0) + math.exp(1.0))
    cross_entropy_a = -0.5 * (2.0 - log_norm_a) - 0.5 * (1.0 - log_norm_a)
    # c: logits (0.5, -0.5), labels (1, 0) -> targets (1, 0)
    cross_entropy_c = -(0.5 - math.log(math.exp(0.5) + math.exp(-0.5)))
    return cross_entropy_a, cross_entropy_c


def test_loss_equals_the_hand_computation_and_ignores_requests_without_a_positive():
    logits = tf.Variable(LOGITS)
    with tf.GradientTape() as tape:
        loss = ListwiseSoftmaxLoss()(tf.constant(LABELS), logits, tf.constant(REQUESTS))
    cross_entropy_a, cross_entropy_c = hand_cross_entropies()
    assert float(loss) == pytest.approx((cross_entropy_a + cross_entropy_c) / 2, rel=1e-6)
    gradient = tape.gradient(loss, logits).numpy()
    assert gradient[[1, 5]].tolist() == [0.0, 0.0]  # request "b" contributes nothing
    assert np.all(gradient[[0, 2, 3, 4, 6]] != 0.0)
    losses, has_positive = ListwiseSoftmaxLoss.per_request(tf.constant(LABELS), logits, tf.constant(REQUESTS))
    assert has_positive.numpy().tolist() == [True, False, True]  # a, b, c: order of first appearance
    assert losses.numpy()[[0, 2]] == pytest.approx([cross_entropy_a, cross_entropy_c], rel=1e-6)


def test_loss_is_zero_without_positives_and_stable_for_large_logits():
    loss = ListwiseSoftmaxLoss()
    assert float(loss(tf.zeros(3), tf.constant([1.0, 2.0, 3.0]), tf.constant(["a", "a", "b"]))) == 0.0
    large = loss(tf.constant([0.0, 1.0]), tf.constant([1000.0, 0.0]), tf.constant(["a", "a"]))
    assert float(large) == pytest.approx(1000.0)


def test_listwise_tasks_follow_the_config_and_the_data(spec):
    assert listwise_tasks(spec, TrainerConfig()) == []
    assert listwise_tasks(spec, TrainerConfig(listwise_weight=0.1)) == list(spec.task_names)
    assert listwise_tasks(spec, TrainerConfig(listwise_weight=0.1, listwise_tasks=["favorite"])) == ["favorite"]
    assert listwise_tasks(dataclasses.replace(spec, has_groups=False), TrainerConfig(listwise_weight=0.1)) == []
    with pytest.raises(ValueError, match=r"listwise_tasks names unknown task\(s\) \['favourite'\]"):
        listwise_tasks(spec, TrainerConfig(listwise_weight=0.1, listwise_tasks=["favourite"]))


def test_requests_fill_batches_in_order_and_a_large_one_is_a_batch_of_its_own():
    assert pack_requests([3, 4, 2, 9, 1], batch_size=6) == [0, 1, 3, 4]
    assert pack_requests([2, 2, 2], batch_size=6) == [0]
    assert pack_requests([7], batch_size=6) == [0]


@pytest.fixture(scope="module")
def scattered_rows() -> tuple[list[dict], dict[str, int]]:
    """Synthetic rows, a request's rows not next to each other, one request larger than a batch; rows per request."""
    rows = synthetic_rows(12, candidates=5, seed=3) + synthetic_rows(1, candidates=30, seed=4)
    order = np.random.default_rng(0).permutation(len(rows))
    return [rows[i] for i in order], dict(Counter(row[REQUEST_ID] for row in rows))


@pytest.fixture(scope="module")
def scattered_requests(scattered_rows, tmp_path_factory, spec):
    """A train split of one shard over which the rows of a request are scattered."""
    rows, sizes = scattered_rows
    folder = tmp_path_factory.mktemp("scattered")
    write_shards(rows, folder, "train", spec)
    return folder, sizes


def one_pass(dataset: tf.data.Dataset) -> list[list[str]]:
    return [[value.decode() for value in batch[REQUEST_ID].numpy()] for batch in dataset]


def assert_whole_requests_once(batches: list[list[str]], sizes: dict[str, int], batch_size: int) -> None:
    """Every request in exactly one batch of the pass, whole; only a request larger than a batch exceeds it, alone."""
    seen: list[str] = []
    for batch in batches:
        counts = {request: batch.count(request) for request in set(batch)}
        assert all(counts[request] == sizes[request] for request in counts), "a request was split"
        assert len(batch) <= batch_size or len(counts) == 1, "only a request larger than a batch may exceed it, alone"
        seen += list(counts)
    assert sorted(seen) == sorted(sizes), "every request once per pass"


def test_batches_hold_whole_requests(scattered_requests, spec):
    folder, sizes = scattered_requests
    dataset = RequestBatches.read(folder, "train").dataset(spec, batch_size=12, shuffle=True, seed=7)
    first, second = one_pass(dataset), one_pass(dataset)
    assert_whole_requests_once(first, sizes, batch_size=12)
    assert_whole_requests_once(second, sizes, batch_size=12)
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


@pytest.mark.slow
def test_training_with_the_listwise_loss_learns_to_rank(synthetic_examples, spec, tmp_path):
    config = TrainerConfig.from_sources(json.dumps(TINY_CONFIG), {"epochs": 3, "listwise_weight": 0.5})
    result = train_and_export(synthetic_examples, tmp_path / "model", config)
    history = result.history
    assert {"listwise_loss", "val_listwise_loss"} <= set(history)
    best = result.best_epoch - 1
    # every synthetic request has 10 candidates: uniform scores cost log(10) per task and request
    uniform = len(spec.task_names) * math.log(10)
    assert history["val_listwise_loss"][best] < uniform - 0.1
    # the eval loss early stopping watches includes the weighted listwise term
    assert history["val_ranking_loss"][best] > 0.5 * history["val_listwise_loss"][best]
    assert result.eval_metrics["favorite_ndcg_at_10"] > 0.0


@pytest.fixture(scope="module")
def sharded_requests(scattered_rows, tmp_path_factory, spec):
    """The same rows written as four shards, every request in one of them (as extraction writes a split)."""
    rows, sizes = scattered_rows
    folder = tmp_path_factory.mktemp("sharded")
    write_shards(rows, folder, "train", spec, shards=4)
    return folder, sizes


def test_a_split_streamed_by_groups_of_shards_batches_whole_requests(sharded_requests, spec):
    folder, sizes = sharded_requests
    streamed = ShardedRequestBatches.read(folder, "train", max_rows=30)
    assert sum(streamed.rows) == sum(sizes.values()) and len(streamed.files) > 1
    assert len(streamed.groups(range(len(streamed.files)))) > 1, "the shards do not fit in one group"
    dataset = streamed.dataset(spec, batch_size=12, shuffle=True, seed=7)
    first, second = one_pass(dataset), one_pass(dataset)
    assert_whole_requests_once(first, sizes, batch_size=12)
    assert_whole_requests_once(second, sizes, batch_size=12)
    assert first != second, "each pass reshuffles"
    again = one_pass(ShardedRequestBatches.read(folder, "train", max_rows=30).dataset(spec, 12, shuffle=True, seed=7))
    assert again == first, "the same seed gives the same batches"
    assert len(one_pass(streamed.dataset(spec, batch_size=12))) == streamed.steps(12)


def test_shards_are_grouped_up_to_the_row_limit_and_a_larger_shard_alone():
    streamed = ShardedRequestBatches(
        ["a", "b", "c", "d"], [np.array([5]), np.array([2, 2]), np.array([3]), np.array([4, 5])], max_rows=8
    )
    assert streamed.groups([0, 1, 2, 3]) == [[0], [1, 2], [3]]
    assert streamed.groups([3, 2, 1, 0]) == [[3], [2, 1], [0]]
    assert streamed.steps(batch_size=4) == 1 + 2 + 2  # [5]; [2, 2], [3]; [4], [5]


@pytest.mark.slow
def test_a_train_split_larger_than_the_cache_streams_and_trains(synthetic_examples, tmp_path, caplog):
    config = TrainerConfig.from_sources(json.dumps(TINY_CONFIG), {"listwise_weight": 0.1, "cache_max_rows": 100})
    with caplog.at_level(logging.INFO, logger="trainer.train"):
        result = train_and_export(synthetic_examples, tmp_path / "model", config)
    assert "more than cache_max_rows 100: its batches of whole requests stream from its shards" in caplog.text
    assert (tmp_path / "model" / "saved_model.pb").exists()
    assert "listwise_loss" in result.history
