"""The model: every architecture, module awareness of every layer, OOV scoring, the score lookup."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_recommenders as tfrs

from ranker_core.schema import Feature, label_key
from tests.trainer.conftest import TINY_CONFIG
from trainer.config import ARCHITECTURES, TrainerConfig
from trainer.model import SCORE, RankingScore, build_model, positive_weights


def tensors(batch):
    return {name: tf.constant(values) for name, values in batch.items()}


def tiny(**overrides) -> TrainerConfig:
    return TrainerConfig(**{**TINY_CONFIG, **overrides})


def record_inputs(layer: tf.keras.layers.Layer, log: list) -> None:
    """Make ``layer`` append (name, first input) to ``log`` on every call."""
    original = layer.call

    def call(inputs, *args, **kwargs):
        log.append((layer.name, inputs))
        return original(inputs, *args, **kwargs)

    layer.call = call


def weight_layers(block: tf.keras.layers.Layer) -> list[tf.keras.layers.Layer]:
    """The Dense and Cross layers inside an expert, gate or tower."""
    return [
        layer
        for layer in block._flatten_layers(include_self=False)
        if isinstance(layer, tf.keras.layers.Dense | tfrs.layers.dcn.Cross)
        and not any(layer in parent._flatten_layers(include_self=False) for parent in _crosses(block))
    ]


def _crosses(block):
    return [layer for layer in block._flatten_layers(include_self=False) if isinstance(layer, tfrs.layers.dcn.Cross)]


@pytest.mark.parametrize("architecture", ["mmoe", "ple", "shared_bottom", "dcn", "single_task"])
def test_every_expert_gate_and_tower_layer_receives_the_module_embedding(spec, raw_batch, architecture):
    config = tiny(architecture=architecture, ple_levels=2)
    model = build_model(spec, config)
    blocks = model.module_aware_blocks()
    layers = [layer for block in blocks for layer in weight_layers(block)]
    assert len(layers) >= len(blocks) > len(spec.task_names)
    log: list = []
    for layer in layers:
        record_inputs(layer, log)
    features = tensors(raw_batch)
    model(features, training=False)
    module = model.module_embedding(features["module_name"], training=False).numpy()
    assert {name for name, _ in log} == {layer.name for layer in layers}
    width = config.module_embedding_dim
    for name, inputs in log:
        np.testing.assert_array_equal(inputs.numpy()[:, -width:], module, err_msg=f"{name} lacks the module input")


@pytest.mark.parametrize("architecture", ["mmoe", "ple"])
def test_gates_on_the_module_alone_give_every_row_of_a_module_the_same_mixture(spec, raw_batch, architecture):
    features = tensors(raw_batch)
    modules = raw_batch["module_name"]
    same_module = np.flatnonzero(modules == modules[0])
    assert len(same_module) > 1
    for gate_inputs, rows_agree in (("module", True), ("features", False)):
        model = build_model(spec, tiny(architecture=architecture, ple_levels=2, gate_inputs=gate_inputs))
        _, gates = model.logits_and_gates(features)
        weights = gates[spec.task_names[0]].numpy()[same_module]
        assert np.allclose(weights, weights[0]) is rows_agree, gate_inputs


def test_dcn_feeds_a_cross_network_and_an_mlp_side_by_side_to_every_tower(spec, raw_batch):
    from trainer.layers import CrossExpert, ModuleAwareMLP

    config = tiny(architecture="dcn")
    model = build_model(spec, config)
    model(tensors(raw_batch), training=False)
    assert [type(bottom) for bottom in model.body.experts] == [CrossExpert, ModuleAwareMLP]
    assert model.body.gates == [] and model.expert_names == []
    first_dense = model.body.towers[0].dense_layers[0]
    assert first_dense.kernel.shape[0] == 2 * config.expert_units[-1] + config.module_embedding_dim


def test_the_ablation_has_no_module_input_anywhere(spec, raw_batch):
    model = build_model(spec, tiny(architecture="mmoe_no_module"))
    assert model.module_embedding is None
    assert not any("module" in variable.name for variable in model.variables)
    other_module = dict(raw_batch, module_name=np.array(["search"] * len(raw_batch["module_name"])))
    a, b = model(tensors(raw_batch)), model(tensors(other_module))
    for task in spec.task_names:
        np.testing.assert_allclose(a[task].numpy(), b[task].numpy())


@pytest.mark.slow
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_every_architecture_builds_trains_one_step_and_outputs_probabilities(spec, raw_batch, architecture):
    model = build_model(spec, tiny(architecture=architecture))
    model.compile(tf.keras.optimizers.Adam(0.01))
    features = tensors(raw_batch)
    labels = {label_key(task): tf.cast(tf.range(12) % (i + 2) == 0, tf.int64) for i, task in enumerate(spec.task_names)}
    before = [w.numpy().copy() for w in model.trainable_variables]
    history = model.fit(tf.data.Dataset.from_tensors({**features, **labels}), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.allclose(b, w.numpy()) for b, w in zip(before, model.trainable_variables, strict=True))
    outputs = model(features)
    assert set(outputs) == {*spec.task_names, SCORE}
    for task in spec.task_names:
        assert outputs[task].shape == (12,)
        assert ((outputs[task].numpy() >= 0) & (outputs[task].numpy() <= 1)).all()
    assert outputs[SCORE].shape == (12,)


def test_unknown_module_and_unseen_values_are_scored(spec, raw_batch):
    model = build_model(spec, tiny())
    unseen = dict(raw_batch)
    rows = len(raw_batch["module_name"])
    unseen["module_name"] = np.array(["email_digest"] * rows)
    unseen["category"] = np.array(["spaceships"] * rows)
    unseen["tags"] = np.array(["never|seen"] * rows)
    unseen["user_id"] = np.array(["new-user"] * rows)
    unseen["price"] = np.full(rows, np.nan, np.float32)
    outputs = model(tensors(unseen))
    for name, values in outputs.items():
        assert np.isfinite(values.numpy()).all(), name
    assert ((outputs["click"].numpy() > 0) & (outputs["click"].numpy() < 1)).all()


def test_score_weights_are_a_per_module_lookup_with_a_default():
    score = RankingScore(["click", "purchase"], {"search": {"purchase": 10.0}}, default={"click": 2.0})
    probabilities = tf.constant([[0.5, 0.1], [0.5, 0.1], [0.5, 0.1]])
    values = score(probabilities, tf.constant(["search", "home", "unknown"])).numpy()
    np.testing.assert_allclose(values, [2.0 * 0.5 + 10.0 * 0.1, 2.0 * 0.5 + 0.1, 2.0 * 0.5 + 0.1], rtol=1e-6)
    with pytest.raises(ValueError, match="unknown task"):
        RankingScore(["click"], {"search": {"clicks": 1.0}})


def test_positive_weights_come_from_train_counts_or_the_config(spec, synthetic_examples):
    from ranker_core.schema import FeatureSpec

    trained = FeatureSpec.load(synthetic_examples)
    weights = positive_weights(trained, TrainerConfig(positive_weight_power=0.5, positive_weights={"click": 1.5}))
    rows, positives = trained.splits["train"].rows, trained.splits["train"].positives
    assert weights["click"] == 1.5
    assert weights["purchase"] == pytest.approx(((rows - positives["purchase"]) / positives["purchase"]) ** 0.5)
    assert weights["purchase"] > weights["favorite"] > 1.0
    assert set(positive_weights(spec, TrainerConfig()).values()) == {1.0}  # no split counts: unweighted
    with pytest.raises(ValueError, match="unknown task"):
        positive_weights(trained, TrainerConfig(positive_weights={"buy": 2.0}))


def test_forced_numeric_encoding_applies_to_every_numeric_feature_with_quantiles(spec):
    model = build_model(spec, tiny(numeric_encoding="quantile"))
    encodings = model.feature_encoder.numeric.encodings
    # user_category_affinity has no quantiles in the spec, so it stays normalized
    assert encodings == {"price": "quantile", "listing_ctr": "quantile", "user_category_affinity": "normalize"}


def test_embedding_l2_penalizes_the_looked_up_rows_of_every_string_feature(spec, raw_batch):
    strings = [feature for feature in spec.features if feature.is_string]
    plain = build_model(spec, tiny(embedding_l2=0.0))
    plain(tensors(raw_batch), training=True)
    assert plain.losses == []
    regularized = build_model(spec, tiny(embedding_l2=0.1))
    regularized(tensors(raw_batch), training=True)
    penalties = [float(loss) for loss in regularized.losses]
    assert len(penalties) == len(strings)
    assert all(penalty > 0 for penalty in penalties)


def test_max_hash_buckets_caps_every_hashed_embedding(spec):
    hashed = [feature for feature in spec.features if feature.kind == "hashed"]
    assert hashed and all(feature.hash_buckets > 3 for feature in hashed)
    model = build_model(spec, tiny(max_hash_buckets=3))
    tables = {e.feature.name: e.embedding.input_dim for e in model.feature_encoder.strings if e.feature in hashed}
    assert tables == {feature.name: 3 for feature in hashed}


def test_sequence_dropout_reaches_the_sequences_in_training_and_never_in_serving(spec, raw_batch):
    spec = type(spec).from_dict(spec.to_dict())
    spec.features.append(Feature("recent_listings", "list", vocabulary=["l1"], target="listing_id"))
    rows = len(raw_batch["module_name"])
    features = tensors({**raw_batch, "recent_listings": np.array(["l1|l2|l3|l4|l5"] * rows)})
    model = build_model(spec, tiny(sequence_dropout=0.5, dropout=0.0, module_dropout=0.0))
    served = model(features)[SCORE].numpy()
    np.testing.assert_array_equal(model(features, training=False)[SCORE].numpy(), served)
    tf.random.set_seed(0)
    assert not np.allclose(model(features, training=True)[SCORE].numpy(), served)
    without = build_model(spec, tiny(dropout=0.0, module_dropout=0.0))
    without.set_weights(model.get_weights())
    np.testing.assert_allclose(without(features, training=True)[SCORE].numpy(), served, rtol=1e-6, atol=1e-7)


def test_uncertainty_weighting_scales_each_task_loss_by_a_learned_variance(spec, raw_batch):
    labels = {label_key(task): tf.cast(tf.range(12) % (i + 2) == 0, tf.int64) for i, task in enumerate(spec.task_names)}
    batch = {**tensors(raw_batch), **labels}
    tf.keras.utils.set_random_seed(3)
    fixed_loss = float(build_model(spec, tiny()).compute_loss(batch))
    tf.keras.utils.set_random_seed(3)
    weighted = build_model(spec, tiny(task_weighting="uncertainty"))
    assert float(weighted.compute_loss(batch)) == pytest.approx(fixed_loss, rel=1e-6)  # s = 0: weight 1, no penalty

    tasks = len(spec.task_names)
    weighted.task_log_variances.assign(tf.fill([tasks], 0.7))
    weighted.loss_tracker.reset_state()
    expected = np.exp(-0.7) * fixed_loss + tasks * 0.7 / 2
    assert float(weighted.compute_loss(batch)) == pytest.approx(expected, rel=1e-5)
    assert float(weighted.loss_tracker.result()) == pytest.approx(fixed_loss, rel=1e-6)  # early stopping's sum
    per_task = []
    for index in range(tasks):  # all weight on one task: that task's loss alone, plus the other tasks' s / 2
        weighted.task_log_variances.assign(np.where(np.arange(tasks) == index, 0.0, 40.0).astype(np.float32))
        per_task.append(float(weighted.compute_loss(batch)) - (tasks - 1) * 20.0)
    assert min(per_task) > 0
    assert sum(per_task) == pytest.approx(fixed_loss, rel=1e-4)

    weighted.task_log_variances.assign(tf.zeros([tasks]))
    weighted.compile(tf.keras.optimizers.Adam(0.05))
    weighted.fit(tf.data.Dataset.from_tensors(batch).repeat(5), epochs=1, verbose=0)
    assert (weighted.task_log_variances.numpy() != 0).all()  # trained with the model
    with pytest.raises(ValueError, match="task_weighting"):
        tiny(task_weighting="learned")


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("task_loss_weights", {"clik": 2.0}),
        ("positive_weights", {"clik": 2.0}),
        ("listwise_tasks", ["clik"]),
        ("score_weights", {"search": {"clik": 2.0}}),
    ],
)
def test_a_setting_naming_an_unknown_task_is_one_clean_line_before_training(spec, setting, value):
    from ranker_core.cli_support import InvalidValueError

    with pytest.raises(InvalidValueError) as refused:
        build_model(spec, tiny(**{setting: value}))
    message = str(refused.value)
    assert "names unknown task(s) ['clik']" in message and f"the data's tasks: {list(spec.task_names)}" in message
    assert "ListWrapper" not in message and "\n" not in message


def test_a_model_leaves_out_a_feature_without_values_and_still_serves_it(spec, raw_batch):
    import dataclasses

    emptied = dataclasses.replace(spec, features=[*spec.features, Feature("anchor_category", "categorical")])
    model = build_model(emptied, tiny())
    rows = len(raw_batch["module_name"])
    empty = model(tensors({**raw_batch, "anchor_category": np.array([""] * rows)}))
    valued = model(tensors({**raw_batch, "anchor_category": np.array(["toys"] * rows)}))
    for name, values in empty.items():
        assert np.isfinite(values.numpy()).all(), name
        np.testing.assert_array_equal(values.numpy(), valued[name].numpy())
