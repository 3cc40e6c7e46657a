"""A real (short) training run: it learns, reports gate usage and is reproducible."""

import json
import logging

import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import ndcg_score

from ranker_core.cli_support import InvalidValueError
from ranker_core.schema import REQUEST_ID, FeatureSpec, label_key
from tests.trainer.conftest import TINY_CONFIG
from trainer.config import TrainerConfig
from trainer.examples import read_split
from trainer.inputs import make_dataset
from trainer.model import build_model
from trainer.predict import load_ranker
from trainer.progress import EpochReport
from trainer.storage import load_feature_spec
from trainer.train import (
    EmbeddingSchedule,
    WeightAveraging,
    configure_determinism,
    split_rows,
    tensorboard_installed,
    train_and_export,
)

pytestmark = pytest.mark.slow


def mean_ndcg_at_10(request_ids: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> float:
    """Mean NDCG@10 over the requests with at least one positive."""
    values = []
    for request in np.unique(request_ids):
        rows = request_ids == request
        if labels[rows].sum() > 0:
            values.append(ndcg_score(labels[rows][None, :], scores[rows][None, :], k=10))
    return float(np.mean(values))


def test_trained_model_beats_a_random_ranker_on_every_task(trained_model_dir, synthetic_examples):
    ranker = load_ranker(trained_model_dir)
    columns = read_split(synthetic_examples, "eval", ranker.feature_spec)
    outputs = ranker.predict(columns)
    rng = np.random.default_rng(0)
    for task in ranker.task_names:
        labels = columns[label_key(task)]
        model = mean_ndcg_at_10(columns[REQUEST_ID], labels, outputs[task])
        random = np.mean([mean_ndcg_at_10(columns[REQUEST_ID], labels, rng.random(len(labels))) for _ in range(5)])
        assert model > random + 0.05, f"{task}: model NDCG@10 {model:.3f} vs random {random:.3f}"


def test_the_reported_eval_ndcg_is_the_exported_models(trained_model_dir, synthetic_examples):
    ranker = load_ranker(trained_model_dir)
    columns = read_split(synthetic_examples, "eval", ranker.feature_spec)
    favorite = ranker.predict(columns)["favorite"]
    expected = mean_ndcg_at_10(columns[REQUEST_ID], columns[label_key("favorite")], favorite)
    metrics = json.loads((trained_model_dir / "metrics.json").read_text())
    assert metrics["eval_metrics"]["favorite_ndcg_at_10"] == pytest.approx(expected, abs=1e-5)


def test_gate_usage_and_metrics_are_written(trained_model_dir, spec):
    usage = json.loads((trained_model_dir / "gate_usage.json").read_text())
    assert usage["experts"] == ["expert_0_mlp", "expert_1_cross"]
    assert usage["tasks"] == list(spec.task_names)
    assert usage["modules"] == sorted(spec.modules)
    for module in spec.modules:
        for task in spec.task_names:
            weights = usage["weights"][module][task]
            assert len(weights) == 2 and sum(weights) == pytest.approx(1.0, abs=1e-4)
            assert 0.0 <= usage["entropy"][module][task] <= usage["max_entropy"] + 1e-6
    metrics = json.loads((trained_model_dir / "metrics.json").read_text())
    assert 1 <= metrics["best_epoch"] <= metrics["epochs_trained"] <= 8
    assert metrics["eval_metrics"]["click_auc"] > 0.6
    best = metrics["history"]["val_ranking_loss"][metrics["best_epoch"] - 1]
    assert best == min(metrics["history"]["val_ranking_loss"])
    # early stopping restored the best epoch's weights
    assert metrics["eval_metrics"]["ranking_loss"] == pytest.approx(best, rel=1e-4)


def test_checkpoints_and_tensorboard_logs_are_written(trained_model_dir):
    metrics = json.loads((trained_model_dir / "metrics.json").read_text())
    checkpoints = sorted(path.name for path in (trained_model_dir.parent / "checkpoints").glob("epoch-*.index"))
    assert len(checkpoints) == metrics["epochs_trained"] and checkpoints[0] == "epoch-001.index"
    if tensorboard_installed():
        assert list((trained_model_dir.parent / "tensorboard").rglob("events.out.tfevents.*"))


def test_tensorboard_dir_without_tensorboard_fails_before_training(synthetic_examples, tmp_path):
    if tensorboard_installed():
        pytest.skip("tensorboard is installed")
    with pytest.raises(RuntimeError, match="needs the tensorboard package"):
        train_and_export(synthetic_examples, tmp_path / "model", TrainerConfig(), tensorboard_dir=str(tmp_path))
    assert not (tmp_path / "model").exists()


def fit_briefly(examples, seed: int) -> list[np.ndarray]:
    """Weights after three shuffled training steps with a seeded config."""
    config = TrainerConfig(**{**TINY_CONFIG, "architecture": "shared_bottom", "seed": seed})
    configure_determinism(config)
    spec = FeatureSpec.load(examples)
    model = build_model(spec, config)
    model.compile(tf.keras.optimizers.Adam(0.01))
    batches = make_dataset(examples, "train", spec, 256, shuffle=True, seed=config.seed)
    model.fit(batches.take(3), epochs=1, verbose=0)
    return model.get_weights()


def test_same_seed_gives_the_same_model(synthetic_examples):
    first, second = fit_briefly(synthetic_examples, 3), fit_briefly(synthetic_examples, 3)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    other = fit_briefly(synthetic_examples, 4)
    assert any(not np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_learning_rate_decay_lowers_the_rate_of_every_epoch_after_the_first(synthetic_examples, tmp_path):
    config = TrainerConfig(
        **TINY_CONFIG, epochs=3, early_stopping_patience=3, learning_rate=0.004, learning_rate_decay=0.5
    )
    result = train_and_export(synthetic_examples, tmp_path / "model", config)
    np.testing.assert_allclose(result.history["lr"], [0.004, 0.002, 0.001], rtol=1e-6)
    with pytest.raises(ValueError, match=r"learning_rate_decay must be in \(0, 1\], got 1.5"):
        TrainerConfig(learning_rate_decay=1.5)


def test_a_batch_as_large_as_the_training_data_is_warned_about(synthetic_examples, tmp_path, caplog):
    """One optimizer step per epoch trained nothing useful (eval AUC under 0.5), with no word of why."""
    config = TrainerConfig(**{**TINY_CONFIG, "batch_size": 1_000_000}, epochs=1, weight_averaging=0)
    train_and_export(synthetic_examples, tmp_path / "model", config)
    assert "batch_size 1000000 is not below the" in caplog.text and "one optimizer step per epoch" in caplog.text


def test_a_diverging_run_stops_with_one_line_naming_the_learning_rate(synthetic_examples, tmp_path):
    # TerminateOnNaN stops fit; without the check the NaN scores failed later in the ranking metrics
    config = TrainerConfig(**TINY_CONFIG, epochs=1, learning_rate=1e6, weight_averaging=0)
    message = r"^training diverged: the loss became (NaN|infinite) in epoch 1; lower learning_rate \(1000000.0\)$"
    with pytest.raises(InvalidValueError, match=message):
        train_and_export(synthetic_examples, tmp_path / "model", config)
    assert not (tmp_path / "model").exists()


def test_rare_ids_share_one_row_in_the_exported_model(synthetic_examples, tmp_path):
    config = TrainerConfig(**TINY_CONFIG, epochs=1, rare_id_min_count=1_000_000)  # every training id is rare
    train_and_export(synthetic_examples, tmp_path / "model", config)
    ranker = load_ranker(tmp_path / "model")
    columns = {name: values[:3] for name, values in read_split(synthetic_examples, "eval", ranker.feature_spec).items()}
    seen = ranker.predict(columns)["score"]
    unseen = ranker.predict({**columns, "listing_id": np.array(["never-1", "never-2", "never-3"], dtype=object)})
    np.testing.assert_allclose(unseen["score"], seen, rtol=1e-6)  # an unseen id and a rare one: the same row


def test_frequency_scaled_l2_weighs_the_shared_rare_row_by_every_id_it_stands_for(synthetic_examples, tmp_path):
    config = TrainerConfig(
        **TINY_CONFIG, epochs=1, rare_id_min_count=1_000_000, embedding_l2=1.0, embedding_l2_scaling="frequency"
    )
    train_and_export(synthetic_examples, tmp_path / "model", config)
    reader = tf.train.load_checkpoint(str(tmp_path / "model" / "variables" / "variables"))
    weights = {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map() if "l2_row_weights" in name}
    assert len(weights) == 4  # user_id, listing_id, category, tags
    listing = next(value for value in weights.values() if len(value) == 257)  # 256 buckets and the shared row
    train_rows = split_rows(synthetic_examples, "train", load_feature_spec(synthetic_examples))
    assert listing[-1] == pytest.approx(1 / train_rows)  # every training id is rare: the shared row holds them all
    np.testing.assert_array_equal(listing[:-1], 1.0)  # the buckets no id uses any more


def trained_weights(checkpoint: str) -> dict[str, np.ndarray]:
    """The model's float weights in a per-epoch weights checkpoint, by name (optimizer slots left out)."""
    reader = tf.train.load_checkpoint(checkpoint)
    names = [name for name in reader.get_variable_to_shape_map() if name.endswith("VARIABLE_VALUE")]
    tensors = {name: reader.get_tensor(name) for name in names if not name.startswith("optimizer/")}
    return {name: tensor for name, tensor in tensors.items() if tensor.dtype == np.float32}


@pytest.mark.parametrize("schedule", ["train", "freeze", "reset"])
def test_the_embedding_schedule_decides_what_the_id_embeddings_do_after_epoch_1(synthetic_examples, tmp_path, schedule):
    # The raw weights: with weight averaging the checkpoints hold the average, which keeps moving toward a frozen row.
    config = TrainerConfig(
        **TINY_CONFIG, epochs=2, early_stopping_patience=2, embedding_schedule=schedule, weight_averaging=0.0
    )
    checkpoints = tmp_path / "checkpoints"
    train_and_export(synthetic_examples, tmp_path / "model", config, checkpoint_dir=str(checkpoints))
    first, second = (trained_weights(str(checkpoints / f"epoch-00{epoch}")) for epoch in (1, 2))
    moved = {name for name in first if not np.array_equal(first[name], second[name])}
    tables = {name for name in first if name.startswith("feature_encoder/strings/") and "/embedding/" in name}
    above = {name for name in first if name.startswith(("body/", "module_embedding/", "feature_encoder/numeric"))}
    assert len(tables) == 4 and above  # user_id, listing_id, category, tags
    assert above <= moved, "the layers above the embeddings train in epoch 2"
    if schedule == "freeze":
        assert not moved & tables, f"frozen tables changed in epoch 2: {sorted(moved & tables)}"
    else:
        assert tables <= moved, "every table changes in epoch 2 unless frozen"
    ranker = load_ranker(tmp_path / "model")
    assert np.isfinite(ranker.predict(read_split(synthetic_examples, "eval", ranker.feature_spec))["score"]).all()
    with pytest.raises(ValueError, match="embedding_schedule"):
        TrainerConfig(embedding_schedule="drop")


def test_a_reset_redraws_the_tables_and_zeroes_their_optimizer_slots_only(synthetic_examples):
    config = TrainerConfig(**TINY_CONFIG, embedding_schedule="reset")
    spec = FeatureSpec.load(synthetic_examples)
    model = build_model(spec, config)
    model.compile(tf.keras.optimizers.Adam(0.01))
    model.fit(make_dataset(synthetic_examples, "train", spec, 256).take(3), epochs=1, verbose=0)
    tables = {table.name: table.numpy() for table in model.feature_encoder.embedding_tables}
    others = {weight.name: weight.numpy() for weight in model.weights if weight.name not in tables}
    slots = {slot.name: slot for slot in model.optimizer.variables if "/" in slot.name}
    assert all(np.any(slot.numpy()) for slot in slots.values()), "three steps leave every slot non-zero"
    schedule = EmbeddingSchedule("reset")
    schedule.set_model(model)
    schedule.on_epoch_begin(0)  # the first epoch starts from the tables as built
    assert all(np.array_equal(table.numpy(), tables[table.name]) for table in model.feature_encoder.embedding_tables)
    schedule.on_epoch_begin(1)
    redrawn = {table.name: table.numpy() for table in model.feature_encoder.embedding_tables}
    schedule.on_epoch_begin(2)
    for table in model.feature_encoder.embedding_tables:
        assert not np.array_equal(redrawn[table.name], tables[table.name]), f"{table.name} was not redrawn"
        assert not np.array_equal(table.numpy(), redrawn[table.name]), f"{table.name}: the same draw twice"
        assert np.abs(table.numpy()).max() <= 0.05  # Keras's embedding initializer: uniform in [-0.05, 0.05]
    assert all(np.array_equal(weight.numpy(), others[weight.name]) for weight in model.weights if weight.name in others)
    for name, slot in slots.items():
        of_a_table = name.partition("/")[2] in tables
        assert np.any(slot.numpy()) != of_a_table, f"{name}: zeroed {of_a_table}, expected {not of_a_table}"


class RawWeights(tf.keras.callbacks.Callback):
    """Records the raw kernel after every train step (the average is swapped in only for validation)."""

    def __init__(self) -> None:
        super().__init__()
        self.kernels: list[np.ndarray] = []

    def on_train_batch_end(self, batch, logs=None):
        self.kernels.append(self.model.layers[0].kernel.numpy().copy())


def test_weight_averaging_validates_and_keeps_the_moving_average_of_the_raw_weights():
    tf.keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    y = x @ np.array([[1.0], [-2.0], [0.5]], np.float32)

    def fit(*callbacks: tf.keras.callbacks.Callback) -> tuple[tf.keras.Model, RawWeights, dict]:
        model = tf.keras.Sequential([tf.keras.layers.Dense(1, use_bias=False, input_shape=(3,))])
        model.layers[0].kernel.assign(np.full((3, 1), 0.1, np.float32))
        model.compile(tf.keras.optimizers.SGD(0.05), "mse")
        raw = RawWeights()  # after the averaging callback: both see each step's raw weights
        fitted = model.fit(
            x, y, batch_size=8, epochs=2, shuffle=False, validation_data=(x, y), callbacks=[*callbacks, raw], verbose=0
        )
        return model, raw, fitted.history

    momentum = 0.9
    model, raw, history = fit(WeightAveraging(momentum))
    expected = np.full((3, 1), 0.1, np.float32)
    for step, kernel in enumerate(raw.kernels, start=1):
        decay = min(momentum, (1 + step) / (10 + step))
        expected = decay * expected + (1 - decay) * kernel
    np.testing.assert_allclose(model.layers[0].kernel.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(expected, raw.kernels[-1], atol=1e-3)  # the average is not the last raw weights
    assert history["val_loss"][-1] == pytest.approx(model.evaluate(x, y, verbose=0), rel=1e-5)  # it validated it
    # Training moved the raw weights exactly as without averaging: every epoch went on from the raw weights.
    _, plain, plain_history = fit()
    np.testing.assert_array_equal(np.array(raw.kernels), np.array(plain.kernels))
    assert history["val_loss"] != plain_history["val_loss"]


def test_weight_averaging_in_training_exports_the_weights_it_validated(synthetic_examples, tmp_path):
    averaged = TrainerConfig(**TINY_CONFIG, epochs=2, early_stopping_patience=2, weight_averaging=0.9)
    result = train_and_export(synthetic_examples, tmp_path / "averaged", averaged)
    best = result.best_epoch - 1
    assert result.eval_metrics["ranking_loss"] == pytest.approx(result.history["val_ranking_loss"][best], rel=1e-4)
    plain_config = TrainerConfig(**TINY_CONFIG, epochs=2, weight_averaging=0.0)
    plain = train_and_export(synthetic_examples, tmp_path / "plain", plain_config)
    assert result.history["val_ranking_loss"] != plain.history["val_ranking_loss"]
    with pytest.raises(ValueError, match=r"weight_averaging must be in \[0, 1\), got 1.0"):
        TrainerConfig(weight_averaging=1.0)


def test_a_seed_ensemble_serves_the_mean_of_members_trained_alone(synthetic_examples, tmp_path, caplog):
    config = TrainerConfig(**TINY_CONFIG, epochs=1)
    with caplog.at_level(logging.INFO, logger="trainer.train"):
        result = train_and_export(synthetic_examples, tmp_path / "ensemble", config.replace(ensemble_size=2))
    epochs = [EpochReport.parse(record.getMessage()) for record in caplog.records]
    assert [(report.label, report.epoch) for report in epochs if report] == [("model 1/2", 1), ("model 2/2", 1)]
    alone = [
        train_and_export(synthetic_examples, tmp_path / f"seed-{seed}", config.replace(seed=seed)) for seed in (42, 43)
    ]
    ensemble = load_ranker(tmp_path / "ensemble")
    columns = read_split(synthetic_examples, "eval", ensemble.feature_spec)
    members = [load_ranker(tmp_path / f"seed-{seed}").predict(columns) for seed in (42, 43)]
    assert not np.allclose(members[0]["score"], members[1]["score"])  # each member has its own seed
    served = ensemble.predict(columns)
    for output in ensemble.output_names:
        np.testing.assert_allclose(served[output], (members[0][output] + members[1][output]) / 2, atol=1e-6)
    # The reported ranking metric is the ensemble's own; the members keep theirs.
    favorite = mean_ndcg_at_10(columns[REQUEST_ID], columns[label_key("favorite")], served["favorite"])
    assert result.eval_metrics["favorite_ndcg_at_10"] == pytest.approx(favorite, abs=1e-5)
    assert [member["seed"] for member in result.members] == [42, 43]
    for member, single in zip(result.members, alone, strict=True):
        assert member["eval_metrics"]["ranking_loss"] == pytest.approx(single.eval_metrics["ranking_loss"], rel=1e-5)
    assert ensemble.config.ensemble_size == 2 and ensemble.config.seed == 42
    with pytest.raises(ValueError, match="ensemble_size must be positive, got 0"):
        TrainerConfig(ensemble_size=0)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"positive_weights": {"click": 0}}, "TrainerConfig: positive_weights['click'] must be a finite number > 0"),
        ({"task_loss_weights": {"clik": 1.0}}, "task_loss_weights names unknown task(s) ['clik']; the data's tasks: ["),
    ],
)
def test_ranker_train_refuses_a_bad_weight_in_one_line_before_training(
    synthetic_examples, tmp_path, capsys, config, message
):
    from pipelines.cli import main

    model_dir = tmp_path / "model"
    paths = ["--examples", str(synthetic_examples), "--model-dir", str(model_dir)]
    assert main(["train", *paths, "--config", json.dumps(config)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("ranker train: ") and message in line and "ListWrapper" not in line
    assert not model_dir.exists()
