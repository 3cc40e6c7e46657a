"""Train, evaluate and export the ranker: the one function every entry point calls.

``ranker train`` (trainer/cli.py), ``python -m trainer.task`` (a Vertex AI
custom job) and the ``train_mmoe`` pipeline component all call
:func:`train_and_export`::

    result = train_and_export("work/examples", "work/model", TrainerConfig(epochs=3))
    result.eval_metrics["click_auc"], result.gate_usage["weights"]["search"]["click"]

Training reads the ``train`` split (in batches of whole requests, shuffled by request,
when ``listwise_weight`` or ``logged_order_weight`` adds a loss over requests:
:class:`trainer.inputs.RequestBatches`),
early-stops on the mean ``eval`` loss or, with ``early_stopping_metric="ndcg@10"``, on the
primary target's eval NDCG@10
(:mod:`trainer.selection`), restores the best epoch's weights, writes
checkpoints and TensorBoard logs when asked, then exports the SavedModel, the gate diagnostics
(``gate_usage.json``) and the metrics (``metrics.json``) into ``model_dir``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from ranker_core.cli_support import InvalidValueError
from ranker_core.schema import MODULE, POSITION, FeatureSpec
from trainer.config import TrainerConfig
from trainer.export import check_serving_names, export_model
from trainer.features import FeatureEncoder
from trainer.inputs import RequestBatches, ShardedRequestBatches, make_dataset
from trainer.model import RankerEnsemble, RankerModel, build_model
from trainer.position import positions_all_zero
from trainer.progress import EpochReport, current_label, labelled
from trainer.selection import RankingMetric, Selection
from trainer.storage import load_feature_spec, write_json

logger = logging.getLogger(__name__)

GATE_USAGE_FILE = "gate_usage.json"
METRICS_FILE = "metrics.json"
LAST_BATCH_METRICS = ("loss", "regularization_loss", "total_loss")


@dataclasses.dataclass
class TrainingResult:
    """What a training run produced (also written as ``metrics.json`` in the model dir)."""

    model_dir: str
    eval_metrics: dict[str, float]
    gate_usage: dict[str, Any]
    history: dict[str, list[float]]
    epochs_trained: int
    best_epoch: int
    # train rows x epochs / wall seconds of fit (graph tracing and per-epoch validation included)
    train_examples_per_second: float
    # An ensemble's members (ensemble_size > 1), each with its seed, eval_metrics, epochs_trained and
    # best_epoch; history, epochs_trained and best_epoch above are then the first member's.
    members: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def configure_determinism(config: TrainerConfig) -> None:
    """Seed Python, NumPy and TensorFlow; make ops deterministic when the config asks for it."""
    tf.keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()


def train_and_export(
    examples_dir: str | Path,
    model_dir: str | Path,
    config: TrainerConfig | None = None,
    checkpoint_dir: str | None = None,
    tensorboard_dir: str | None = None,
    strategy: tf.distribute.Strategy | None = None,
    ranking_metrics: Sequence[str] = ("ndcg@10",),
) -> TrainingResult:
    """Train on ``<examples_dir>/train``, early-stop on ``eval``, export to ``model_dir`` (local or gs://).

    ``eval_metrics`` also holds each of ``ranking_metrics`` (NDCG of the evaluation's primary target on
    the eval split, for the kept weights: ``favorite_ndcg_at_10``) when the data has request groups.
    With ``config.ensemble_size`` N > 1, N models are trained this way at seeds ``seed`` to ``seed + N - 1``
    and exported as one :class:`~trainer.model.RankerEnsemble` (see :func:`_ensemble_metrics`).

    Example::

        result = train_and_export("work/examples", "work/model", TrainerConfig(architecture="ple"))
        result.best_epoch, result.eval_metrics["ranking_loss"]
    """
    config = config or TrainerConfig()
    examples_dir, model_dir = str(examples_dir), str(model_dir)
    if tensorboard_dir and not tensorboard_installed():
        raise RuntimeError(
            f"--tensorboard-dir {tensorboard_dir} needs the tensorboard package (pip install tensorboard)"
        )
    spec = load_feature_spec(examples_dir)
    check_serving_names(spec)
    config = _without_constant_positions(examples_dir, spec, config)
    if unmeasured := spec.one_class_tasks("eval"):
        logger.warning("the eval split's labels of %s are all of one class: no validation AUC for them", unmeasured)
    strategy = strategy or tf.distribute.get_strategy()
    size = config.ensemble_size
    members: list[_Fitted] = []
    for index in range(size):
        with labelled(f"model {index + 1}/{size}") if size > 1 else contextlib.nullcontext():
            members.append(
                _fit(
                    examples_dir,
                    spec,
                    config.replace(seed=config.seed + index, ensemble_size=1),
                    strategy,
                    _member_dir(checkpoint_dir, index, size),
                    _member_dir(tensorboard_dir, index, size),
                )
            )
    first = members[0]
    if size == 1:
        model, eval_metrics = first.model, first.eval_metrics
        eval_metrics.update(_ranking_metrics(model, first.evaluation, spec, ranking_metrics, known=eval_metrics))
    else:
        model = RankerEnsemble([member.model for member in members])
        eval_metrics = _ensemble_metrics(model, members, spec, ranking_metrics)
    usage = gate_usage(first.model, first.evaluation)  # an ensemble's: its first member's
    export_model(model, model_dir)
    result = TrainingResult(
        model_dir=model_dir,
        eval_metrics=eval_metrics,
        gate_usage=usage,
        history=first.history,
        epochs_trained=first.epochs_trained,
        best_epoch=first.best_epoch,
        train_examples_per_second=sum(m.examples for m in members) / max(sum(m.seconds for m in members), 1e-9),
        members=[member.summary() for member in members] if size > 1 else [],
    )
    write_json(f"{model_dir}/{GATE_USAGE_FILE}", usage)
    write_json(f"{model_dir}/{METRICS_FILE}", result.to_dict())
    logger.info(
        "exported %s (%d model(s), best epoch %d of %d): %s",
        model_dir,
        size,
        first.best_epoch,
        first.epochs_trained,
        eval_metrics,
    )
    return result


@dataclasses.dataclass
class _Fitted:
    """One trained model with the kept epoch's weights, and what its training logged."""

    model: RankerModel
    evaluation: tf.data.Dataset  # one pass over the eval split
    eval_metrics: dict[str, float]  # the kept weights' Keras metrics on the eval split (and the selection's)
    history: dict[str, list[float]]
    epochs_trained: int
    best_epoch: int
    examples: int  # train rows x epochs
    seconds: float  # wall time of fit

    def summary(self) -> dict[str, Any]:
        return {"seed": self.model.config.seed} | {
            key: getattr(self, key) for key in ("eval_metrics", "epochs_trained", "best_epoch")
        }


def _fit(
    examples_dir: str,
    spec: FeatureSpec,
    config: TrainerConfig,
    strategy: tf.distribute.Strategy,
    checkpoint_dir: str | None,
    tensorboard_dir: str | None,
) -> _Fitted:
    """Build one model for ``config`` (seeded by its ``seed``), fit it, early-stop and evaluate its kept weights."""
    configure_determinism(config)
    multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    with strategy.scope():
        model = build_model(spec, config)
        model.compile(
            optimizer=tf.keras.optimizers.Adam(config.learning_rate),
            # Across workers, several steps per call mismatch the all-gathers of the sparse embedding gradients.
            steps_per_execution=1 if multi_worker else config.steps_per_execution,
        )
    if multi_worker:
        # Metric results are already all-reduced over the workers; Keras's default would add them up once more.
        model.distribute_reduction_method = "first"
    _fit_id_counts(model.feature_encoder, config, make_dataset(examples_dir, "train", spec, 8192))
    train_rows = split_rows(examples_dir, "train", spec)
    if config.batch_size >= train_rows:
        too_large = "batch_size %d is not below the %d training rows: one optimizer step per epoch"
        logger.warning(too_large, config.batch_size, train_rows)
    # Steps are explicit so several can run per tf.function call (steps_per_execution).
    whole_requests = bool(model.listwise_tasks or model.logged_order)  # losses over whole requests
    (train, train_steps), (evaluation, eval_steps) = _input_batches(
        examples_dir, spec, config, train_rows, whole_requests
    )
    selection = Selection.resolve(config, spec)
    started = time.perf_counter()
    history = model.fit(
        train.repeat(),
        steps_per_epoch=train_steps,
        validation_data=evaluation.repeat(),
        validation_steps=eval_steps,
        epochs=config.epochs,
        callbacks=_callbacks(config, selection, evaluation, spec, checkpoint_dir, tensorboard_dir),
        verbose=0,  # EpochLogger logs each epoch
    )
    seconds = time.perf_counter() - started
    _require_finite_loss(history.history.get("loss", []), config.learning_rate)
    epochs_trained = len(history.history.get("loss", []))
    best_epoch = selection.best_epoch(history.history, epochs_trained)
    evaluated = model.evaluate(evaluation.repeat(), steps=eval_steps, return_dict=True, verbose=0)
    # tfrs's "loss"/"total_loss" are the last batch's; ranking_loss is the mean over the split.
    eval_metrics = {name: float(value) for name, value in evaluated.items() if name not in LAST_BATCH_METRICS}
    if selection.by_ranking:  # the restored weights are the best epoch's
        eval_metrics[selection.name] = float(history.history[selection.monitor][best_epoch - 1])
    return _Fitted(
        model=model,
        evaluation=evaluation,
        eval_metrics=eval_metrics,
        history={key: [float(v) for v in values] for key, values in history.history.items()},
        epochs_trained=epochs_trained,
        best_epoch=best_epoch,
        examples=train_rows * epochs_trained,
        seconds=seconds,
    )


def _require_finite_loss(losses: Sequence[float], learning_rate: float) -> None:
    """Raise a one-line :class:`InvalidValueError` if training diverged: TerminateOnNaN stops ``fit`` on the first
    NaN or infinite training loss, which then ends the epoch's ``loss`` history (its weights are no use)."""
    for epoch, loss in enumerate(losses, start=1):
        if not math.isfinite(loss):
            became = "NaN" if math.isnan(loss) else "infinite"
            raise InvalidValueError(
                f"training diverged: the loss became {became} in epoch {epoch}; lower learning_rate ({learning_rate})"
            )


def _member_dir(directory: str | None, index: int, size: int) -> str | None:
    """Where an ensemble member writes its checkpoints or logs: ``<directory>/member-<index>`` (one model: as is)."""
    return f"{directory.rstrip('/')}/member-{index}" if directory and size > 1 else directory


def _ensemble_metrics(
    ensemble: RankerEnsemble, members: Sequence[_Fitted], spec: FeatureSpec, ranking_metrics: Sequence[str]
) -> dict[str, float]:
    """An ensemble's eval metrics: the members' mean of each Keras metric (the loss, the AUCs: the ensemble has
    no loss of its own) and each ranking metric (the selection's included) of the ensemble's own scores."""
    config = members[0].model.config
    selection = Selection.resolve(config, spec)
    metrics = [*ranking_metrics, *([config.early_stopping_metric] if selection.by_ranking else [])]
    ranking = _ranking_metrics(ensemble, members[0].evaluation, spec, list(dict.fromkeys(metrics)), known={})
    names = [name for name in members[0].eval_metrics if name not in ranking]
    return {name: float(np.mean([member.eval_metrics[name] for member in members])) for name in names} | ranking


Batches = tuple[tf.data.Dataset, int]  # one pass over a split, and its number of batches


def _fit_id_counts(encoder: FeatureEncoder, config: TrainerConfig, train: tf.data.Dataset) -> None:
    """Count the string features' ids over the train split once: for the shared rare row and the penalty per row."""
    if not (config.rare_id_min_count or encoder.l2_by_frequency):
        return
    id_counts = encoder.count_ids(train)
    if config.rare_id_min_count:
        rare = encoder.keep_frequent_ids(id_counts, config.rare_id_min_count)
        logger.info("hashed buckets seen fewer than %d times share one row: %s", config.rare_id_min_count, rare)
    if encoder.l2_by_frequency:
        used = encoder.weigh_l2_by_frequency(id_counts)
        logger.info("embedding_l2 divided by each row's uses in the train split; rows used per feature: %s", used)


def _input_batches(
    examples_dir: str, spec: FeatureSpec, config: TrainerConfig, train_rows: int, whole_requests: bool
) -> tuple[Batches, Batches]:
    """The train batches (shuffled each pass) and the eval batches, each with its steps per pass."""
    if whole_requests:
        return _request_batches(examples_dir, spec, config, train_rows)
    train = make_dataset(
        examples_dir,
        "train",
        spec,
        config.batch_size,
        shuffle=True,
        seed=config.seed,
        cache=train_rows <= config.cache_max_rows,
        shuffle_buffer=config.shuffle_buffer,
    )
    evaluation = make_dataset(examples_dir, "eval", spec, config.batch_size, cache=True)
    eval_rows = split_rows(examples_dir, "eval", spec)
    return (train, math.ceil(train_rows / config.batch_size)), (evaluation, math.ceil(eval_rows / config.batch_size))


def _request_batches(
    examples_dir: str, spec: FeatureSpec, config: TrainerConfig, train_rows: int
) -> tuple[Batches, Batches]:
    """Batches of whole requests for the losses over requests; the train requests are shuffled each pass (seeded).

    A split of at most ``cache_max_rows`` rows is held in memory; a larger one streams a group of shards at a time.
    """
    size = config.batch_size
    train = _requests(examples_dir, "train", train_rows, config.cache_max_rows)
    evaluation = _requests(examples_dir, "eval", split_rows(examples_dir, "eval", spec), config.cache_max_rows)
    train_batches = train.dataset(spec, size, shuffle=True, seed=config.seed)
    return (train_batches, train.steps(size)), (evaluation.dataset(spec, size), evaluation.steps(size))


def _requests(examples_dir: str, split: str, rows: int, max_rows: int) -> RequestBatches | ShardedRequestBatches:
    """A split's requests: held in memory up to ``max_rows`` rows, else streamed a group of shards at a time."""
    if rows <= max_rows:
        return RequestBatches.read(examples_dir, split)
    logger.info(
        "%s split: %d rows, more than cache_max_rows %d: its batches of whole requests stream from its shards",
        split,
        rows,
        max_rows,
    )
    return ShardedRequestBatches.read(examples_dir, split, max_rows)


def _without_constant_positions(examples_dir: str, spec: FeatureSpec, config: TrainerConfig) -> TrainerConfig:
    """``config`` with ``position_bias`` and ``logged_order_weight`` off when every training position is 0
    (nothing for the position tower or the logged-order head to learn)."""
    uses_positions = config.position_bias or config.logged_order_weight > 0
    if not uses_positions or POSITION not in spec.roles:
        return config
    if not positions_all_zero(make_dataset(examples_dir, "train", spec, config.batch_size)):
        return config
    logger.info("every training position is 0: training without the position tower and the logged-order head")
    return config.replace(position_bias=False, logged_order_weight=0.0)


def tensorboard_installed() -> bool:
    """Whether TensorBoard summaries can be written (TensorFlow does not install the package itself)."""
    return importlib.util.find_spec("tensorboard") is not None


def _ranking_metrics(
    model: RankerModel,
    evaluation: tf.data.Dataset,
    spec: FeatureSpec,
    metrics: Sequence[str],
    known: Mapping[str, float],
) -> dict[str, float]:
    """Each metric's eval value for the model's current weights, keyed by :attr:`Selection.name`; one already
    ``known`` (logged by the selection for the kept epoch) is not computed again, and one that no eval request
    can measure (none has a positive target) is left out, with a warning."""
    if not spec.has_groups:
        return {}
    values = {}
    for selection in (Selection.ranking(metric, spec) for metric in metrics):
        if selection.name not in known:
            callback = RankingMetric(evaluation, spec, selection)
            callback.set_model(model)
            value = callback.evaluate()
            if math.isfinite(value):
                values[selection.name] = value
            else:
                logger.warning("no eval request has a positive %r: no validation %s", selection.target, selection.name)
    return values


def split_rows(examples_dir: str, split: str, spec: FeatureSpec) -> int:
    """Rows of a split: from the spec's counts, else counted from the shards; an empty split is an error."""
    stats = spec.splits.get(split)
    rows = stats.rows if stats else 0
    if rows <= 0:
        rows = int(make_dataset(examples_dir, split, spec, 8192).reduce(0, lambda n, b: n + tf.shape(b[MODULE])[0]))
    if rows <= 0:
        raise ValueError(f"split {split!r} of {examples_dir} has no examples")
    return rows


def _callbacks(
    config: TrainerConfig,
    selection: Selection,
    evaluation: tf.data.Dataset,
    spec: FeatureSpec,
    checkpoint_dir: str | None,
    tensorboard_dir: str | None,
) -> list:
    """The fit callbacks. Weight averaging first, so every other callback reads the weights it swapped in (the
    average, from validation on); then the eval NDCG (when selecting by it), so early stopping and the logs see it."""
    callbacks: list[tf.keras.callbacks.Callback] = (
        [WeightAveraging(config.weight_averaging)] if config.weight_averaging > 0 else []
    )
    if selection.by_ranking:
        callbacks.append(RankingMetric(evaluation, spec, selection))
    callbacks += [
        tf.keras.callbacks.EarlyStopping(
            monitor=selection.monitor,
            mode=selection.mode,
            patience=config.early_stopping_patience,
            restore_best_weights=True,
        ),
        tf.keras.callbacks.TerminateOnNaN(),
        EpochLogger(config.epochs),
    ]
    if config.embedding_schedule != "train":
        callbacks.append(EmbeddingSchedule(config.embedding_schedule, config.seed))
    if config.learning_rate_decay < 1.0:
        rate, decay = config.learning_rate, config.learning_rate_decay
        callbacks.append(tf.keras.callbacks.LearningRateScheduler(lambda epoch: rate * decay**epoch))
    if checkpoint_dir:
        callbacks.append(
            tf.keras.callbacks.ModelCheckpoint(
                f"{checkpoint_dir.rstrip('/')}/epoch-{{epoch:03d}}",
                monitor=selection.monitor,
                save_weights_only=True,
                save_best_only=False,
            )
        )
    if tensorboard_dir:
        callbacks.append(tf.keras.callbacks.TensorBoard(tensorboard_dir, update_freq="epoch"))
    return callbacks


class WeightAveraging(tf.keras.callbacks.Callback):
    """An exponential moving average of the trainable weights (Polyak averaging), validated and kept.

    After every call of the train function (``steps_per_execution`` steps) the average moves toward
    the weights, ``average = m * average + (1 - m) * weights`` with ``m = min(momentum, (1 + t) / (10 + t))
    ** steps`` at optimizer step ``t`` (so a short first epoch is not an average of the initial weights).
    Validation swaps the average in: the eval metrics, early stopping and the weights it restores are
    the average's, and the next epoch trains on from the raw weights. After ``fit`` the model holds the
    chosen epoch's average.

    Example::

        model.fit(..., callbacks=[WeightAveraging(0.99), EarlyStopping(restore_best_weights=True)])
    """

    def __init__(self, momentum: float) -> None:
        super().__init__()
        self.momentum = momentum
        self.averaged = False  # whether the model holds the average (from validation until the next epoch)

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.trained = list(self.model.trainable_variables)
        with self.model.distribute_strategy.scope():
            self.average = [tf.Variable(weight, trainable=False) for weight in self.trained]
            self.step = tf.Variable(self.model.optimizer.iterations, trainable=False)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._update()

    def on_test_begin(self, logs: dict | None = None) -> None:
        if not self.averaged:
            self._swap()
            self.averaged = True

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if self.averaged:
            self._swap()
            self.averaged = False

    @tf.function
    def _update(self) -> None:
        now = tf.cast(self.model.optimizer.iterations, tf.float32)
        steps = now - tf.cast(self.step, tf.float32)
        momentum = tf.minimum(self.momentum, (1.0 + now) / (10.0 + now)) ** steps
        for average, weight in zip(self.average, self.trained, strict=True):
            average.assign(momentum * average + (1.0 - momentum) * weight)
        self.step.assign(self.model.optimizer.iterations)

    @tf.function
    def _swap(self) -> None:
        for average, weight in zip(self.average, self.trained, strict=True):
            raw = tf.identity(weight)
            weight.assign(average)
            average.assign(raw)


class EmbeddingSchedule(tf.keras.callbacks.Callback):
    """After the first epoch, freezes the model's id embeddings, or redraws them before every later epoch.

    ``"reset"`` draws new rows (seeded by ``seed`` and the epoch) and zeroes the optimizer's slots of the
    tables (an optimizer's slot of variable ``v`` is named ``<slot>/<v.name>``), so a reset table starts like
    a new one.

    Example::

        model.fit(..., epochs=10, callbacks=[EmbeddingSchedule("freeze")])   # epochs 2-10 keep epoch 1's rows
    """

    def __init__(self, schedule: str, seed: int = 0) -> None:
        super().__init__()
        self.schedule, self.seed = schedule, seed

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.schedule == "freeze" and epoch == 0:
            self.model.feature_encoder.freeze_embeddings()
            # fit() calls model.train_function every step: the retraced one leaves the tables out of the gradients.
            self.model.train_function = self.model.make_train_function(force=True)
            logger.info("id embeddings frozen after epoch 1; the other layers train on")

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if self.schedule != "reset" or epoch == 0:
            return
        encoder = self.model.feature_encoder
        encoder.reset_embeddings(seed=self.seed + 1_000 * epoch)  # a new draw per epoch and table
        tables = {table.name for table in encoder.embedding_tables}
        for slot in self.model.optimizer.variables:
            if slot.name.partition("/")[2] in tables:
                slot.assign(tf.zeros_like(slot))
        logger.info("id embeddings reset for epoch %d", epoch + 1)


class EpochLogger(tf.keras.callbacks.Callback):
    """Logs one :class:`~trainer.progress.EpochReport` line per epoch (``ranker run`` shows it live).

    Example::

        model.fit(..., epochs=10, callbacks=[EpochLogger(10)], verbose=0)
        # INFO trainer.train: epoch 1/10 in 14.2s: ranking_loss=1.0412 ... val_click_auc=0.7801
        # inside trainer.progress.labelled("model 2/3"), an ensemble's second model: "model 2/3 epoch 1/10 in ..."
    """

    def __init__(self, epochs: int) -> None:
        super().__init__()
        self.epochs = epochs
        self._started = time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        last_batch = {*LAST_BATCH_METRICS, *(f"val_{name}" for name in LAST_BATCH_METRICS)}
        metrics = {name: float(value) for name, value in (logs or {}).items() if name not in last_batch}
        report = EpochReport(epoch + 1, self.epochs, time.perf_counter() - self._started, metrics, current_label())
        logger.info("%s", report.line())


def gate_usage(model: RankerModel, batches: tf.data.Dataset) -> dict[str, Any]:
    """Mean gate weight per module, task and expert on ``batches``, and the entropy of those means.

    ``entropy[module][task]`` is the entropy (nats) of the mean gate weights; it
    is near 0 when a gate collapsed onto one expert and near ``max_entropy``
    (``log(experts)``) when it spreads evenly. ``example_entropy`` is the mean
    per-example entropy (low: each example routes to few experts). Architectures
    without gates report empty ``experts`` and ``weights``.

    Example::

        usage = gate_usage(model, eval_batches)
        usage["weights"]["search"]["click"]   # [w_expert_0, w_expert_1, ...], sums to 1
    """
    experts, tasks = model.expert_names, list(model.task_names)
    sums: dict[str, np.ndarray] = {}
    entropy_sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    if experts:
        gate_fn = tf.function(
            lambda features: model.logits_and_gates(features, training=False)[1], reduce_retracing=True
        )  # one trace for batches of any size
        for batch in batches:
            gates = gate_fn(batch)
            weights = np.stack([gates[task].numpy() for task in tasks], axis=1)  # (batch, tasks, experts)
            per_example_entropy = -np.sum(weights * np.log(np.clip(weights, 1e-12, 1.0)), axis=2)
            modules = batch[MODULE].numpy()
            for module in np.unique(modules):
                rows = modules == module
                name = module.decode()
                sums[name] = sums.get(name, 0.0) + weights[rows].sum(axis=0)
                entropy_sums[name] = entropy_sums.get(name, 0.0) + per_example_entropy[rows].sum(axis=0)
                counts[name] = counts.get(name, 0) + int(rows.sum())
    weights_out, entropy_out, example_entropy_out = {}, {}, {}
    for module in sorted(sums):
        mean = sums[module] / counts[module]
        weights_out[module] = {task: [round(float(w), 6) for w in mean[i]] for i, task in enumerate(tasks)}
        entropy_out[module] = {task: round(_entropy(mean[i]), 6) for i, task in enumerate(tasks)}
        example_entropy_out[module] = {
            task: round(float(entropy_sums[module][i] / counts[module]), 6) for i, task in enumerate(tasks)
        }
    return {
        "architecture": model.config.architecture,
        "experts": experts,
        "tasks": tasks,
        "modules": sorted(sums),
        "rows": {module: counts[module] for module in sorted(counts)},
        "weights": weights_out,
        "entropy": entropy_out,
        "example_entropy": example_entropy_out,
        "max_entropy": round(math.log(len(experts)), 6) if experts else 0.0,
    }


def _entropy(distribution: np.ndarray) -> float:
    p = np.clip(distribution, 1e-12, 1.0)
    return float(-np.sum(p * np.log(p)))


def train_from_component(
    examples_dir: str,
    model_artifact: Any,
    metrics_artifact: Any,
    gate_usage_artifact: Any,
    config_json: str = "{}",
    tensorboard_dir: str | None = None,
) -> TrainingResult:
    """The ``train_mmoe`` component's body: train into ``model_artifact.path`` and log to the kfp artifacts.

    ``tensorboard_dir`` (the step's ``tensorboard`` artifact) receives the TensorBoard logs.

    The artifacts are kfp ``Model`` / ``Metrics`` objects (anything with ``path``,
    ``metadata`` and, for metrics, ``log_metric``), so this runs and is tested without kfp.
    """
    from trainer.distribute import choose_strategy

    config = TrainerConfig.from_sources(config_json)
    result = train_and_export(
        examples_dir, model_artifact.path, config, tensorboard_dir=tensorboard_dir, strategy=choose_strategy()
    )
    model_artifact.metadata.update(
        {
            "framework": "tensorflow",
            "format": "saved_model",
            "architecture": config.architecture,
            "tasks": list(result.gate_usage["tasks"]),
            "best_epoch": result.best_epoch,
            "ensemble_size": config.ensemble_size,
        }
    )
    for name, value in sorted(result.eval_metrics.items()):
        metrics_artifact.log_metric(name, value)
    metrics_artifact.log_metric("best_epoch", result.best_epoch)
    usage = result.gate_usage
    for module, per_task in usage["weights"].items():
        for task, weights in per_task.items():
            gate_usage_artifact.log_metric(f"entropy.{module}.{task}", usage["entropy"][module][task])
            for expert, weight in zip(usage["experts"], weights, strict=True):
                gate_usage_artifact.log_metric(f"weight.{module}.{task}.{expert}", weight)
    gate_usage_artifact.metadata["gate_usage"] = usage
    return result
