"""The logged-order head: ListMLE of each request's logged order, trained beside the tasks and never served."""

import dataclasses
import json
import logging
import math

import numpy as np
import pytest
import tensorflow as tf

from ranker_core.schema import POSITION
from tests.conftest import synthetic_feature_spec, write_synthetic_examples
from tests.trainer.conftest import TINY_CONFIG
from trainer.config import TrainerConfig
from trainer.listwise import LoggedOrderLoss, logged_order_on
from trainer.model import LOGGED_ORDER, build_model
from trainer.predict import load_ranker
from trainer.train import _without_constant_positions, train_and_export

# Two requests in one flat batch, their rows interleaved and out of logged order; "c" has one candidate.
REQUESTS = ["a", "b", "a", "c", "b", "a"]
POSITIONS = [2, 1, 0, 0, 0, 1]
LOGITS = [0.5, -1.0, 2.0, 7.0, 0.0, 1.0]


def plackett_luce_nll_per_candidate(logits_in_logged_order: list[float]) -> float:
    """The negative log-likelihood of the logged order, divided by the number of candidates, by hand."""
    total = 0.0
    for i, logit in enumerate(logits_in_logged_order):
        total += math.log(sum(math.exp(s) for s in logits_in_logged_order[i:])) - logit
    return total / len(logits_in_logged_order)


def test_loss_is_the_plackett_luce_likelihood_of_the_logged_order_per_candidate():
    logits = tf.Variable(LOGITS)
    with tf.GradientTape() as tape:
        loss = LoggedOrderLoss()(tf.constant(POSITIONS), logits, tf.constant(REQUESTS))
    nll_a = plackett_luce_nll_per_candidate([2.0, 1.0, 0.5])  # a's rows at positions 0, 1, 2
    nll_b = plackett_luce_nll_per_candidate([0.0, -1.0])
    assert float(loss) == pytest.approx((nll_a + nll_b) / 2, rel=1e-6)
    gradient = tf.convert_to_tensor(tape.gradient(loss, logits)).numpy()
    assert gradient[3] == 0.0  # request "c" has no order to learn
    assert np.all(np.isfinite(gradient)) and np.all(gradient[[0, 1, 2, 4, 5]] != 0.0)
    losses, sizes = LoggedOrderLoss.per_request(tf.constant(POSITIONS), logits, tf.constant(REQUESTS))
    assert sizes.numpy().tolist() == [3, 2, 1]  # a, b, c: order of first appearance
    assert losses.numpy()[:2] == pytest.approx([nll_a, nll_b], rel=1e-6)


def test_loss_does_not_depend_on_the_batch_row_order_and_prefers_the_logged_order():
    loss = LoggedOrderLoss()
    shuffled = np.random.default_rng(0).permutation(len(REQUESTS))
    original = float(loss(tf.constant(POSITIONS), tf.constant(LOGITS), tf.constant(REQUESTS)))
    permuted = loss(*(tf.constant(np.array(values)[shuffled]) for values in (POSITIONS, LOGITS, REQUESTS)))
    assert float(permuted) == pytest.approx(original, rel=1e-6)
    for shift in (-7, 10_000):  # only the order of the positions within a request matters
        shifted = loss(tf.constant(POSITIONS) + shift, tf.constant(LOGITS), tf.constant(REQUESTS))
        assert float(shifted) == pytest.approx(original, rel=1e-6)
    positions = tf.constant([0, 1, 2, 3])
    agreeing = loss(positions, tf.constant([3.0, 2.0, 1.0, 0.0]), tf.constant(["a"] * 4))
    reversed_ = loss(positions, tf.constant([0.0, 1.0, 2.0, 3.0]), tf.constant(["a"] * 4))
    assert float(agreeing) < plackett_luce_nll_per_candidate([0.0] * 4) < float(reversed_)
    assert float(loss(tf.constant([0]), tf.constant([1.0]), tf.constant(["a"]))) == 0.0  # nothing to order


def test_the_head_needs_request_groups_and_positions(spec, caplog):
    config = TrainerConfig(logged_order_weight=0.5)
    positioned = dataclasses.replace(spec, roles={**spec.roles, POSITION: "position"})
    assert logged_order_on(positioned, config)
    assert not logged_order_on(positioned, TrainerConfig())
    with caplog.at_level(logging.INFO, logger="trainer.listwise"):
        assert not logged_order_on(spec, config)
        assert not logged_order_on(dataclasses.replace(positioned, has_groups=False), config)
    assert "no position role" in caplog.text and "no request groups" in caplog.text


def test_the_head_joins_the_body_but_not_the_outputs(spec, raw_batch):
    positioned = dataclasses.replace(spec, roles={**spec.roles, POSITION: "position"})
    model = build_model(positioned, TrainerConfig(**TINY_CONFIG, logged_order_weight=0.5))
    features = {name: tf.constant(values) for name, values in raw_batch.items()}
    logits, gates = model.logits_and_gates(features)
    assert set(logits) == {*spec.task_names, LOGGED_ORDER} and LOGGED_ORDER in gates
    assert set(model(features)) == {*spec.task_names, "score"}
    assert f"tower_{LOGGED_ORDER}" in [block.name for block in model.module_aware_blocks()]


def logged_by_affinity(rows: list[dict]) -> list[dict]:
    """The rows as a production ranker that sorted each request by user-category affinity would log them."""
    requests: dict[str, list[dict]] = {}
    for row in rows:
        requests.setdefault(row["request_id"], []).append(row)
    for request_rows in requests.values():
        for position, row in enumerate(sorted(request_rows, key=lambda r: -r["user_category_affinity"])):
            row["position"] = position
    return rows


def logged_at_position_0(rows: list[dict]) -> list[dict]:
    """The rows of a log that records no position (every one 0)."""
    return [{**row, "position": 0} for row in rows]


def test_all_zero_positions_turn_the_head_and_the_position_tower_off(tmp_path, caplog):
    spec = synthetic_feature_spec()
    spec.roles[POSITION] = "position"
    config = TrainerConfig(**TINY_CONFIG, logged_order_weight=1.0, position_bias=True)
    unlogged = write_synthetic_examples(tmp_path / "unlogged", spec, logged_at_position_0)
    with caplog.at_level(logging.INFO, logger="trainer.train"):
        off = _without_constant_positions(str(unlogged), spec, config)
    assert (off.logged_order_weight, off.position_bias) == (0.0, False)
    assert "every training position is 0" in caplog.text
    logged = write_synthetic_examples(tmp_path / "logged", spec, logged_by_affinity)
    assert _without_constant_positions(str(logged), spec, config) == config


@pytest.mark.slow
def test_training_learns_the_logged_order_and_exports_without_the_head(tmp_path, raw_batch):
    spec = synthetic_feature_spec()
    spec.roles[POSITION] = "position"
    examples = write_synthetic_examples(tmp_path / "examples", spec, logged_by_affinity)
    overrides = {"epochs": 4, "learning_rate": 0.01, "logged_order_weight": 1.0, "early_stopping_patience": 4}
    config = TrainerConfig.from_sources(json.dumps(TINY_CONFIG), overrides)
    result = train_and_export(examples, tmp_path / "model", config)
    history = result.history
    assert {"logged_order_loss", "val_logged_order_loss"} <= set(history)
    # 10 candidates per request: equal logits cost log(10!) / 10 = 1.51 per candidate
    uniform = plackett_luce_nll_per_candidate([0.0] * 10)
    assert history["val_logged_order_loss"][result.best_epoch - 1] < uniform - 0.3
    ranker = load_ranker(tmp_path / "model")
    assert set(ranker.predict(raw_batch)) == {*spec.task_names, "score"}
