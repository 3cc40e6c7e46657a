"""The canonical multi-task ranker, read top to bottom.

    raw features ──> FeatureEncoder ──> x ─┐
    module_name ──> ModuleEmbedding ──> m ─┤   (m joins EVERY expert, gate and tower layer)
                                           v
           body (one of six architectures, chosen by ``TrainerConfig.architecture``)
                                           v
           one logit per task (+ position tower's offset, training only; see trainer/position.py)
                              ──> tfrs.tasks.Ranking (weighted BCE, AUC) for training
                                  (+ optional softmax loss per request, trainer/listwise.py)
           (+ optional logged_order head: learns each request's logged order; trained, never served)
                              ──> calibrated probability per task ──> per-module score

Architectures (``docs/model.md`` compares them):

* ``mmoe`` (default): shared experts (MLP and/or DCN-v2 cross), one softmax gate
  per task mixing them, one tower per task (Ma et al., KDD 2018).
* ``mmoe_no_module``: the same without the module embedding anywhere (ablation).
* ``shared_bottom``: one shared MLP under the task towers.
* ``dcn``: a DCN-v2 cross network and an MLP side by side under the task towers
  (Wang et al., WWW 2021): explicit crosses, no experts or gates.
* ``single_task``: an independent bottom and tower per task (no sharing).
* ``ple``: Progressive Layered Extraction (Tang et al., RecSys 2020): stacked
  CGC levels of task-specific plus shared experts.

Usage::

    model = build_model(spec, TrainerConfig(architecture="mmoe"))
    outputs = model(raw_features)    # {"click": (batch,), ..., "score": (batch,)}
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from ranker_core.schema import MODULE, POSITION, REQUEST_ID, FeatureSpec, label_key
from ranker_core.step_configs import require_known_tasks
from trainer.config import TrainerConfig
from trainer.features import FeatureEncoder, ModuleEmbedding, trained_modules
from trainer.layers import Gate, ModuleAwareMLP, make_expert, mix_experts
from trainer.listwise import ListwiseSoftmaxLoss, LoggedOrderLoss, listwise_tasks, logged_order_on
from trainer.position import PositionBias, PositionBiasSettings, has_positions

logger = logging.getLogger(__name__)

SCORE = "score"
LOGGED_ORDER = "logged_order"
"""The head that learns each request's logged order (``logged_order_weight``): trained, never served."""
Logits = dict[str, tf.Tensor]
GateWeights = dict[str, tf.Tensor]


# -- architectures ------------------------------------------------------------
# Each body maps (x, m) to one logit per task and the gate weights per task
# (over ``expert_names``; empty for architectures without gates).


def _tower(config: TrainerConfig, task: str) -> ModuleAwareMLP:
    return ModuleAwareMLP([*config.tower_units, 1], output_activation=None, name=f"tower_{task}")


def _gate(config: TrainerConfig, num_experts: int, name: str) -> Gate:
    return Gate(num_experts, config.gate_temperature, config.gate_inputs == "module", name=name)


def _experts(config: TrainerConfig, prefix: str, types: Sequence[str]) -> list[tf.keras.layers.Layer]:
    return [
        make_expert(
            kind,
            config.expert_units,
            config.cross_layers,
            config.cross_projection_dim,
            config.dropout,
            name=f"{prefix}_{index}_{kind}",
        )
        for index, kind in enumerate(types)
    ]


class MMoE(tf.keras.layers.Layer):
    """Shared experts, one gate and one tower per task.

    Example::

        body = MMoE(TrainerConfig(), ["click", "purchase"])
        logits, gates = body(x, m)   # logits["click"]: (batch, 1); gates["click"]: (batch, experts)
    """

    def __init__(self, config: TrainerConfig, tasks: Sequence[str], **kwargs) -> None:
        super().__init__(name=kwargs.pop("name", "mmoe"), **kwargs)
        self.tasks = list(tasks)
        self.experts = _experts(config, "expert", config.expert_types)
        self.expert_names = [expert.name for expert in self.experts]
        self.gates = [_gate(config, len(self.experts), f"gate_{task}") for task in self.tasks]
        self.towers = [_tower(config, task) for task in self.tasks]

    def call(self, x: tf.Tensor, module: tf.Tensor | None, training: bool | None = None) -> tuple[Logits, GateWeights]:
        outputs = [expert(x, module, training=training) for expert in self.experts]
        logits, gates = {}, {}
        for task, gate, tower in zip(self.tasks, self.gates, self.towers, strict=True):
            gates[task] = gate(x, module)
            logits[task] = tower(mix_experts(outputs, gates[task]), module, training=training)
        return logits, gates


class SharedBottom(tf.keras.layers.Layer):
    """One shared MLP (``expert_units``) under one tower per task."""

    def __init__(self, config: TrainerConfig, tasks: Sequence[str], **kwargs) -> None:
        super().__init__(name=kwargs.pop("name", "shared_bottom"), **kwargs)
        self.tasks = list(tasks)
        self.experts = self._bottoms(config)
        self.expert_names: list[str] = []
        self.gates: list[Gate] = []
        self.towers = [_tower(config, task) for task in self.tasks]

    def _bottoms(self, config: TrainerConfig) -> list[tf.keras.layers.Layer]:
        return [ModuleAwareMLP(config.expert_units, dropout=config.dropout, name="bottom")]

    def call(self, x: tf.Tensor, module: tf.Tensor | None, training: bool | None = None) -> tuple[Logits, GateWeights]:
        outputs = [bottom(x, module, training=training) for bottom in self.experts]
        shared = outputs[0] if len(outputs) == 1 else tf.concat(outputs, axis=-1)
        return {
            task: tower(shared, module, training=training) for task, tower in zip(self.tasks, self.towers, strict=True)
        }, {}


class DCN(SharedBottom):
    """DCN-v2 in its parallel form (Wang et al., WWW 2021) under one tower per task: no experts, no gates.

    A cross network (``cross_layers`` explicit feature crosses) and an MLP
    (``expert_units``) read the same input; their outputs, concatenated, feed
    every task tower. The network peer the MMoE is compared with
    (``benchmarks/bench_quality.py --peers dcn``).

    Example::

        body = DCN(TrainerConfig(architecture="dcn"), ["click", "purchase"])
        logits, gates = body(x, m)   # gates == {}
    """

    def __init__(self, config: TrainerConfig, tasks: Sequence[str], **kwargs) -> None:
        super().__init__(config, tasks, name=kwargs.pop("name", "dcn"), **kwargs)

    def _bottoms(self, config: TrainerConfig) -> list[tf.keras.layers.Layer]:
        return _experts(config, "bottom", ["cross", "mlp"])


class SingleTask(tf.keras.layers.Layer):
    """An independent bottom MLP and tower per task: no parameter is shared between tasks."""

    def __init__(self, config: TrainerConfig, tasks: Sequence[str], **kwargs) -> None:
        super().__init__(name=kwargs.pop("name", "single_task"), **kwargs)
        self.tasks = list(tasks)
        self.experts = [ModuleAwareMLP(config.expert_units, dropout=config.dropout, name=f"bottom_{t}") for t in tasks]
        self.expert_names: list[str] = []
        self.gates: list[Gate] = []
        self.towers = [_tower(config, task) for task in self.tasks]

    def call(self, x: tf.Tensor, module: tf.Tensor | None, training: bool | None = None) -> tuple[Logits, GateWeights]:
        logits = {}
        for task, bottom, tower in zip(self.tasks, self.experts, self.towers, strict=True):
            logits[task] = tower(bottom(x, module, training=training), module, training=training)
        return logits, {}


class PLE(tf.keras.layers.Layer):
    """Progressive Layered Extraction: ``ple_levels`` CGC levels, then one tower per task.

    Each level has ``ple_task_experts`` experts per task and shared experts of
    ``expert_types``. A task's gate mixes its own and the shared experts; the
    shared gate (every level but the last) mixes all of them for the next level.
    The reported gate weights are the last level's, over all of its experts
    (zero for other tasks' experts, which a task's gate cannot see).
    """

    def __init__(self, config: TrainerConfig, tasks: Sequence[str], **kwargs) -> None:
        super().__init__(name=kwargs.pop("name", "ple"), **kwargs)
        self.tasks = list(tasks)
        self.levels = config.ple_levels
        self.task_experts, self.shared_experts, self.task_gates, self.shared_gates = [], [], [], []
        n_task, n_shared = config.ple_task_experts, config.num_experts
        for level in range(self.levels):
            self.task_experts.append([_experts(config, f"l{level}_{task}", ["mlp"] * n_task) for task in self.tasks])
            self.shared_experts.append(_experts(config, f"l{level}_shared", config.expert_types))
            self.task_gates.append([_gate(config, n_task + n_shared, f"l{level}_gate_{t}") for t in self.tasks])
            if level < self.levels - 1:
                n_all = n_task * len(self.tasks) + n_shared
                self.shared_gates.append(_gate(config, n_all, f"l{level}_gate_shared"))
        last = self.levels - 1
        self.expert_names = [e.name for group in self.task_experts[last] for e in group] + [
            e.name for e in self.shared_experts[last]
        ]
        self.towers = [_tower(config, task) for task in self.tasks]

    @property
    def experts(self) -> list[tf.keras.layers.Layer]:
        nested = [e for level in self.task_experts for group in level for e in group]
        return nested + [e for level in self.shared_experts for e in level]

    @property
    def gates(self) -> list[Gate]:
        return [g for level in self.task_gates for g in level] + list(self.shared_gates)

    def call(self, x: tf.Tensor, module: tf.Tensor | None, training: bool | None = None) -> tuple[Logits, GateWeights]:
        task_inputs, shared_input = [x] * len(self.tasks), x
        n_task = len(self.task_experts[0][0])
        for level in range(self.levels):
            task_outputs = [
                [expert(inputs, module, training=training) for expert in group]
                for inputs, group in zip(task_inputs, self.task_experts[level], strict=True)
            ]
            shared_outputs = [expert(shared_input, module, training=training) for expert in self.shared_experts[level]]
            weights = [gate(inputs, module) for inputs, gate in zip(task_inputs, self.task_gates[level], strict=True)]
            next_inputs = [mix_experts(own + shared_outputs, w) for own, w in zip(task_outputs, weights, strict=True)]
            if level < self.levels - 1:
                everything = [e for own in task_outputs for e in own] + shared_outputs
                shared_input = mix_experts(everything, self.shared_gates[level](shared_input, module))
            task_inputs = next_inputs
        logits = {
            task: tower(inputs, module, training=training)
            for task, tower, inputs in zip(self.tasks, self.towers, task_inputs, strict=True)
        }
        return logits, self._full_gate_weights(weights, n_task)

    def _full_gate_weights(self, weights: list[tf.Tensor], n_task: int) -> GateWeights:
        """Last-level task gates spread over all last-level experts (zeros where a gate cannot reach)."""
        full = {}
        for index, (task, w) in enumerate(zip(self.tasks, weights, strict=True)):
            own, shared = w[:, :n_task], w[:, n_task:]
            blocks = [own if other == index else tf.zeros_like(own) for other in range(len(self.tasks))]
            full[task] = tf.concat([*blocks, shared], axis=1)
        return full


BODIES = {
    "mmoe": MMoE,
    "mmoe_no_module": MMoE,
    "shared_bottom": SharedBottom,
    "dcn": DCN,
    "single_task": SingleTask,
    "ple": PLE,
}


# -- class imbalance and the ranking score -------------------------------------


def positive_weights(spec: FeatureSpec, config: TrainerConfig) -> dict[str, float]:
    """Per-task positive-class weight: explicit, else ``clip((neg/pos) ** power, 1, max)`` from train counts.

    Example::

        positive_weights(spec, TrainerConfig(positive_weight_power=0.5))   # {"click": 1.6, ..., "purchase": 6.1}
    """
    train = spec.splits.get("train")
    weights = {}
    for task in spec.task_names:
        if task in config.positive_weights:
            weights[task] = float(config.positive_weights[task])
            continue
        positives = train.positives.get(task, 0) if train else 0
        if not train or train.rows <= 0 or positives <= 0 or config.positive_weight_power == 0:
            if train and train.rows > 0 and positives <= 0:
                logger.warning("task %r has no positive training examples in the spec", task)
            weights[task] = 1.0
            continue
        ratio = (train.rows - positives) / positives
        weights[task] = float(np.clip(ratio**config.positive_weight_power, 1.0, config.max_positive_weight))
    require_known_tasks("positive_weights", config.positive_weights, spec.task_names)
    return weights


class RankingScore(tf.keras.layers.Layer):
    """``score = sum_t weights[module][t] * p_t``; the per-module weights are a lookup saved in the model.

    Example::

        score = RankingScore(["click", "purchase"], {"search": {"purchase": 4.0}}, default={"click": 1.0})
        score(probabilities, tf.constant(["search", "unknown_module"]))   # (batch,)
    """

    def __init__(
        self,
        tasks: Sequence[str],
        per_module: Mapping[str, Mapping[str, float]],
        default: Mapping[str, float] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(name=kwargs.pop("name", "ranking_score"), **kwargs)
        tasks = list(tasks)
        for where, weights in [("default_score_weights", default or {})] + [
            (f"score_weights[{module!r}]", weights) for module, weights in per_module.items()
        ]:
            require_known_tasks(where, weights, tasks)
        self.modules = list(per_module)
        default_row = [float((default or {}).get(task, 1.0)) for task in tasks]
        rows = [default_row] + [
            [float(per_module[module].get(task, default_row[i])) for i, task in enumerate(tasks)]
            for module in self.modules
        ]
        self.weights_table = tf.constant(rows, dtype=tf.float32)  # row 0: modules without their own weights
        self.lookup = (
            tf.keras.layers.StringLookup(vocabulary=self.modules, num_oov_indices=1, mask_token=None)
            if self.modules
            else None
        )

    def call(self, probabilities: tf.Tensor, module_names: tf.Tensor) -> tf.Tensor:
        ids = self.lookup(module_names) if self.lookup is not None else tf.zeros_like(module_names, tf.int64)
        return tf.reduce_sum(probabilities * tf.gather(self.weights_table, ids), axis=1)


# -- the model -----------------------------------------------------------------


class RankerModel(tfrs.Model):
    """Multi-task ranker: preprocessing, a body, one ``tfrs.tasks.Ranking`` per task and the score.

    ``call`` returns calibrated probabilities per task and ``score`` (what the
    exported signature serves); ``compute_loss`` trains on logits with the
    per-task loss weights and positive-class weights, plus ``listwise_weight`` times
    the softmax loss per request of the ``listwise_tasks`` and ``logged_order_weight``
    times the logged-order loss of the :data:`LOGGED_ORDER` head when those are on.

    Example::

        model = RankerModel(spec, TrainerConfig())
        model.compile(tf.keras.optimizers.Adam(3e-3))
        model.fit(train_batches, validation_data=eval_batches)
    """

    def __init__(self, spec: FeatureSpec, config: TrainerConfig) -> None:
        super().__init__()
        self.spec, self.config = spec, config
        if not spec.task_names:
            raise ValueError("the feature spec has no tasks")
        config.require_known_tasks(spec.task_names)  # before any layer is built, and so before training starts
        self.task_names = list(spec.task_names)
        self.feature_encoder = FeatureEncoder(
            spec,
            config.embedding_dim,
            config.numeric_encoding,
            config.oov_buckets,
            config.embedding_l2,
            config.max_hash_buckets,
            config.feature_interaction,
            config.sequence_pooling,
            config.sequence_dropout,
            rare_id_rows=config.rare_id_min_count > 0,
            l2_by_frequency=config.embedding_l2 > 0 and config.embedding_l2_scaling == "frequency",
        )
        self.module_embedding = (
            ModuleEmbedding(
                trained_modules(spec),
                config.module_embedding_dim,
                config.module_dropout,
                config.oov_buckets,
                traits=spec.module_traits if config.module_traits else None,
            )
            if config.uses_module
            else None
        )
        # With logged_order_weight, the body has one more head (gate and tower) that learns the logged order.
        self.logged_order = LoggedOrderLoss() if logged_order_on(spec, config) else None
        heads = [*self.task_names, *([LOGGED_ORDER] if self.logged_order else [])]
        self.body = BODIES[config.architecture](config, heads)
        self.position_bias = _position_tower(spec, config, self.task_names)
        self.loss_weights = [float(config.task_loss_weights.get(task, 1.0)) for task in self.task_names]
        # task_weighting "uncertainty": one learned log-variance s per task (Kendall et al., 2018).
        self.task_log_variances = (
            self.add_weight(name="task_log_variance", shape=(len(self.task_names),), initializer="zeros")
            if config.task_weighting == "uncertainty"
            else None
        )
        self.positive_weights = positive_weights(spec, config)
        # Weighted BCE moves the optimal logit by log(w); subtracting it restores calibrated probabilities.
        self.logit_offsets = tf.constant([math.log(self.positive_weights[t]) for t in self.task_names], tf.float32)
        # Keras's AUC is 0.0, not undefined, on labels of one class: such a task logs no AUC at all.
        unmeasured = spec.one_class_tasks("eval")
        self.ranking_tasks = [
            tfrs.tasks.Ranking(
                # per-example losses, averaged over the GLOBAL batch in compute_loss (tf.distribute-safe)
                loss=tf.keras.losses.BinaryCrossentropy(from_logits=True, reduction=tf.keras.losses.Reduction.NONE),
                metrics=[] if task in unmeasured else [tf.keras.metrics.AUC(from_logits=True, name=f"{task}_auc")],
            )
            for task in self.task_names
        ]
        self.scorer = RankingScore(self.task_names, config.score_weights, config.default_score_weights)
        # Keras reports the last batch's tfrs "loss" on eval; this mean over the epoch is what early stopping watches.
        self.loss_tracker = tf.keras.metrics.Mean(name="ranking_loss")
        # Softmax cross-entropy per request for these tasks, weighted by listwise_weight (none: off).
        self.listwise_tasks = listwise_tasks(spec, config)
        if self.listwise_tasks:
            self.listwise = ListwiseSoftmaxLoss()
            self.listwise_tracker = tf.keras.metrics.Mean(name="listwise_loss")
        if self.logged_order:
            self.logged_order_tracker = tf.keras.metrics.Mean(name="logged_order_loss")

    # -- forward passes --------------------------------------------------------
    def encode(self, features: Mapping[str, tf.Tensor], training: bool | None = None):
        x = self.feature_encoder(features, training=training)
        module = None
        if self.module_embedding is not None:
            module = self.module_embedding(features[MODULE], training=training)
        return x, module

    def logits_and_gates(
        self, features: Mapping[str, tf.Tensor], training: bool | None = None, positions: tf.Tensor | None = None
    ):
        """Uncalibrated logits per task, shape (batch,), and gate weights per task (batch, experts).

        With a position tower, its offsets at ``positions`` (the logged ones in
        the loss) or else at ``position_reference`` are added to the logits.
        """
        x, module = self.encode(features, training=training)
        logits, gates = self.body(x, module, training=training)
        logits = {task: tf.squeeze(value, axis=1) for task, value in logits.items()}
        if self.position_bias is not None:
            if positions is None and self.config.position_reference is not None:
                positions = tf.fill(tf.shape(features[MODULE]), tf.constant(self.config.position_reference, tf.int64))
            if positions is not None:
                offsets = self.position_bias(positions, module, training=training)
                logits |= {task: logits[task] + offsets[:, index] for index, task in enumerate(self.task_names)}
        return logits, gates

    def call(self, features: Mapping[str, tf.Tensor], training: bool | None = None) -> dict[str, tf.Tensor]:
        # Serving has no logged position: the position tower (if any) runs at the reference position.
        logits, _ = self.logits_and_gates(features, training=training)
        stacked = tf.stack([logits[task] for task in self.task_names], axis=1) - self.logit_offsets
        probabilities = tf.sigmoid(stacked)
        outputs = {task: probabilities[:, index] for index, task in enumerate(self.task_names)}
        outputs[SCORE] = self.scorer(probabilities, features[MODULE])
        return outputs

    def compute_loss(self, inputs: Mapping[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        logits, _ = self.logits_and_gates(inputs, training=training, positions=inputs.get(POSITION))
        task_losses = []
        for task, ranking, loss_weight in zip(self.task_names, self.ranking_tasks, self.loss_weights, strict=True):
            labels = tf.cast(inputs[label_key(task)], tf.float32)[:, None]
            sample_weight = 1.0 + (self.positive_weights[task] - 1.0) * labels
            per_example = ranking(labels=labels, predictions=logits[task][:, None], sample_weight=sample_weight)
            task_losses.append(loss_weight * tf.nn.compute_average_loss(per_example))
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        per_request = tf.constant(0.0)  # the losses over whole requests
        if self.listwise_tasks:
            per_request += self.config.listwise_weight * self._listwise_loss(inputs, logits) / replicas
        if self.logged_order:
            per_request += self.config.logged_order_weight * self._logged_order_loss(inputs, logits) / replicas
        fixed = tf.add_n(task_losses) + per_request
        # Under a multi-replica strategy each replica's loss is 1/replicas of the batch mean; report the mean.
        # Early stopping compares this fixed-weight sum: the learned weights would move its scale between epochs.
        self.loss_tracker.update_state(fixed * replicas)
        if self.task_log_variances is None:
            return fixed
        return self._uncertainty_weighted(tf.stack(task_losses), replicas) + per_request

    def _uncertainty_weighted(self, task_losses: tf.Tensor, replicas: int) -> tf.Tensor:
        """sum_t exp(-s_t) * loss_t + s_t / 2: a task's weight falls as its learned log-variance s_t rises."""
        s = self.task_log_variances
        return tf.reduce_sum(tf.exp(-s) * task_losses) + tf.reduce_sum(s) / (2.0 * replicas)

    def _listwise_loss(self, inputs: Mapping[str, tf.Tensor], logits: Logits) -> tf.Tensor:
        """Sum over the listwise tasks of task loss weight x mean softmax cross-entropy per request."""
        total = tf.constant(0.0)
        for task in self.listwise_tasks:
            loss_weight = self.loss_weights[self.task_names.index(task)]
            total += loss_weight * self.listwise(inputs[label_key(task)], logits[task], inputs[REQUEST_ID])
        self.listwise_tracker.update_state(total)
        return total

    def _logged_order_loss(self, inputs: Mapping[str, tf.Tensor], logits: Logits) -> tf.Tensor:
        loss = self.logged_order(inputs[POSITION], logits[LOGGED_ORDER], inputs[REQUEST_ID])
        self.logged_order_tracker.update_state(loss)
        return loss

    # -- introspection -----------------------------------------------------------
    @property
    def expert_names(self) -> list[str]:
        return list(self.body.expert_names)

    def module_aware_blocks(self) -> list[tf.keras.layers.Layer]:
        """Every expert, gate and tower (the layers that must see the module embedding)."""
        return [*self.body.experts, *self.body.gates, *self.body.towers]


class RankerEnsemble(tf.keras.Model):
    """Rankers trained alike from different seeds, served as one: the mean of their outputs.

    Averaging probabilities averages the scores too (the score is linear in them), and
    it cancels part of what one training's seed decides (the order of batches, the initial
    weights) without changing what each member learns.

    Example::

        ensemble = RankerEnsemble([model_seed_42, model_seed_43])
        ensemble(features)["score"]     # (batch,): the mean of the members' scores
    """

    def __init__(self, members: Sequence[RankerModel]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = list(members)
        self.spec, self.config = members[0].spec, members[0].config.replace(ensemble_size=len(members))

    def call(self, features: Mapping[str, tf.Tensor], training: bool | None = None) -> dict[str, tf.Tensor]:
        outputs = [member(features, training=False) for member in self.members]
        return {name: tf.add_n([output[name] for output in outputs]) / len(outputs) for name in outputs[0]}


def _position_tower(spec: FeatureSpec, config: TrainerConfig, tasks: Sequence[str]) -> PositionBias | None:
    if not config.position_bias or not has_positions(spec):
        return None
    settings = PositionBiasSettings(
        config.position_buckets, config.position_embedding_dim, config.position_dropout, config.position_reference
    )
    return PositionBias(tasks, settings, with_module=config.uses_module)


def build_model(spec: FeatureSpec, config: TrainerConfig) -> RankerModel:
    """A built (weights created) ranker for ``spec`` and ``config``.

    Example::

        model = build_model(FeatureSpec.load("work/examples"), TrainerConfig(architecture="ple"))
    """
    model = RankerModel(spec, config)
    model(example_batch(spec))
    return model


def example_batch(spec: FeatureSpec, size: int = 2) -> dict[str, tf.Tensor]:
    """A batch of empty/missing raw values for every model input (builds the model's weights)."""
    batch = {MODULE: tf.constant([""] * size)}
    for feature in spec.features:
        batch[feature.name] = tf.constant([""] * size) if feature.is_string else tf.fill([size], float("nan"))
    return batch
