"""Position bias: a training-only tower; serving neither takes a position nor depends on one."""

import dataclasses
import json
import logging

import numpy as np
import pytest
import tensorflow as tf

from ranker_core.schema import FEATURE_SPEC_FILE, POSITION, SPLITS, FeatureSpec
from tests.trainer.conftest import TINY_CONFIG
from trainer.config import TrainerConfig
from trainer.export import export_model
from trainer.inputs import make_dataset
from trainer.model import build_model
from trainer.position import position_buckets, positions_all_zero
from trainer.predict import load_ranker
from trainer.train import train_and_export


def tiny(**overrides) -> TrainerConfig:
    return TrainerConfig(**{**TINY_CONFIG, "position_bias": True, "position_dropout": 0.0, **overrides})


def with_position_role(spec: FeatureSpec) -> FeatureSpec:
    return dataclasses.replace(spec, roles={**spec.roles, POSITION: "position"})


@pytest.fixture(scope="module")
def positioned_examples(synthetic_examples, tmp_path_factory):
    """The synthetic examples (positions 0..3 per request) with a spec that declares the position role."""
    folder = tmp_path_factory.mktemp("positioned")
    for split in SPLITS:
        (folder / split).symlink_to(synthetic_examples / split)
    spec = with_position_role(FeatureSpec.load(synthetic_examples))
    (folder / FEATURE_SPEC_FILE).write_text(json.dumps(spec.to_dict()))
    return folder


def tensors(batch, **extra):
    return {**{name: tf.constant(values) for name, values in batch.items()}, **extra}


def test_positions_are_exact_when_small_and_log_bucketed_when_large():
    positions = tf.constant([-3, 0, 7, 8, 15, 16, 31, 32, 10**6])
    assert position_buckets(positions, 16).numpy().tolist() == [0, 0, 7, 8, 8, 9, 9, 10, 15]
    assert position_buckets(tf.constant([0, 1, 2, 50]), 2).numpy().tolist() == [0, 1, 1, 1]


def test_the_tower_shifts_training_logits_by_logged_position(spec, raw_batch):
    model = build_model(with_position_role(spec), tiny())
    features = tensors(raw_batch)
    rows = len(raw_batch["module_name"])
    top, _ = model.logits_and_gates(features, positions=tf.zeros([rows], tf.int64))
    low, _ = model.logits_and_gates(features, positions=tf.fill([rows], tf.constant(9, tf.int64)))
    for task in model.task_names:
        assert not np.allclose(top[task].numpy(), low[task].numpy())


def test_serving_uses_the_reference_position_and_ignores_a_given_one(spec, raw_batch):
    model = build_model(with_position_role(spec), tiny(position_reference=2))
    features = tensors(raw_batch)
    rows = len(raw_batch["module_name"])
    served = model(features)
    assert all(np.allclose(served[k], model(tensors(raw_batch, position=tf.fill([rows], 9)))[k]) for k in served)
    logits, _ = model.logits_and_gates(features, positions=tf.fill([rows], tf.constant(2, tf.int64)))
    offsets = model.logit_offsets.numpy()
    for index, task in enumerate(model.task_names):
        expected = tf.sigmoid(logits[task] - offsets[index]).numpy()
        np.testing.assert_allclose(served[task].numpy(), expected, rtol=1e-5)


def test_a_null_reference_drops_the_term_at_serving(spec, raw_batch):
    model = build_model(with_position_role(spec), tiny(position_reference=None))
    features = tensors(raw_batch)
    x, module = model.encode(features)
    body_logits, _ = model.body(x, module)
    served = model(features)
    offsets = model.logit_offsets.numpy()
    for index, task in enumerate(model.task_names):
        expected = tf.sigmoid(body_logits[task][:, 0] - offsets[index]).numpy()
        np.testing.assert_allclose(served[task].numpy(), expected, rtol=1e-5)


def test_without_a_position_role_the_option_is_a_logged_no_op(spec, caplog):
    with caplog.at_level(logging.INFO, logger="trainer.position"):
        model = build_model(spec, tiny())
    assert model.position_bias is None
    assert "no position role" in caplog.text


def test_all_zero_positions_are_detected():
    batches = tf.data.Dataset.from_tensor_slices({POSITION: tf.zeros([10], tf.int64)}).batch(4)
    assert positions_all_zero(batches)
    shown = tf.data.Dataset.from_tensor_slices({POSITION: tf.constant([0] * 9 + [3], tf.int64)}).batch(4)
    assert not positions_all_zero(shown)


@pytest.mark.slow
def test_the_tower_trains_and_stays_out_of_the_serving_signature(positioned_examples, raw_batch, tmp_path):
    spec = FeatureSpec.load(positioned_examples)
    config = tiny(position_dropout=0.1)
    model = build_model(spec, config)
    before = [weight.numpy().copy() for weight in model.position_bias.trainable_weights]
    model.compile(tf.keras.optimizers.Adam(0.01))
    model.fit(make_dataset(positioned_examples, "train", spec, 128), epochs=1, verbose=0)
    after = model.position_bias.trainable_weights
    assert all(not np.allclose(old, new.numpy()) for old, new in zip(before, after, strict=True))

    ranker = load_ranker(export_model(model, str(tmp_path / "model")))
    assert POSITION not in ranker.input_signature
    signature = tf.saved_model.load(str(tmp_path / "model")).signatures["serving_default"]
    assert POSITION not in signature.structured_input_signature[1]
    np.testing.assert_allclose(ranker.predict(raw_batch)["score"], model(tensors(raw_batch))["score"], rtol=1e-4)


@pytest.mark.slow
def test_training_without_positions_works_and_keeps_the_signature(synthetic_examples, raw_batch, tmp_path):
    config = tiny(epochs=1, embedding_l2=1e-3)
    result = train_and_export(synthetic_examples, tmp_path / "model", config)
    assert result.epochs_trained == 1
    ranker = load_ranker(tmp_path / "model")
    assert POSITION not in ranker.input_signature
    assert np.isfinite(ranker.predict(raw_batch)["score"]).all()
