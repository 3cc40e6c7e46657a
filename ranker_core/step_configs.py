"""The settings of the pipeline's training steps, without TensorFlow or LightGBM.

:class:`TrainerConfig` (the MMoE ranker's model and training loop) and
:class:`BaselineConfig` (the GBDT baselines) are checked by ``ranker run``,
``compile`` and ``submit`` before any step runs, so an unknown or mistyped key
fails in a fraction of a second instead of after extraction. Both are
:class:`~ranker_core.settings.Settings`: flags > environment
(``RANKER_TRAIN_<FIELD>``, ``RANKER_BASELINE_<FIELD>``) > file > defaults::

    config = TrainerConfig.from_sources('{"architecture": "ple", "epochs": 3}')
    TrainerConfig.from_sources('{"gate_temprature": 2}')
    # InvalidValueError: TrainerConfig: unknown key 'gate_temprature' (did you mean 'gate_temperature'?)
"""

from __future__ import annotations

import math
import typing
from collections.abc import Iterable
from typing import Any, Literal, Self

from pydantic import Field, model_validator

from ranker_core.cli_support import InvalidValueError
from ranker_core.ranking_metrics import parse_metric
from ranker_core.runtime import usable_cores
from ranker_core.settings import Settings, SettingsConfigDict
from ranker_core.targets import engagement_gains

Architecture = Literal["single_task", "shared_bottom", "dcn", "mmoe_no_module", "mmoe", "ple"]
ARCHITECTURES: tuple[str, ...] = typing.get_args(Architecture)
EXPERT_TYPES = ("mlp", "cross")
NUMERIC_ENCODINGS = ("normalize", "quantile", "pwl")
# early_stopping_metric's value for the mean eval loss (anything else is an NDCG name).
LOSS_METRIC = "loss"
# The AUC of the primary binary task: an early_stopping_metric and a tuning metric that data without request
# groups supports (NDCG needs them).
AUC_METRIC = "auc"
# How the baseline treats hashed (high-cardinality id) features: left out, or hashed into a categorical.
HashedPolicy = Literal["drop", "hash"]
TaskObjective = Literal["binary", "lambdarank"]
# Explicit feature crosses next to the concatenated features: none, or DLRM's pairwise dot products.
FeatureInteraction = Literal["none", "dot"]
FEATURE_INTERACTIONS: tuple[str, ...] = typing.get_args(FeatureInteraction)
# How a behaviour sequence (a list feature with a target) is pooled: attention to the candidate, or a mean.
SequencePooling = Literal["attention", "mean"]
SEQUENCE_POOLINGS: tuple[str, ...] = typing.get_args(SequencePooling)
# What a gate reads: the example's features and the module, or the module alone.
GateInputs = Literal["features", "module"]
# What the id embeddings do after the first epoch: train on, stay frozen, or restart from fresh rows.
EmbeddingSchedule = Literal["train", "freeze", "reset"]
# What embedding_l2 penalizes: every lookup of a row, or every row once per epoch whatever its frequency.
EmbeddingL2Scaling = Literal["lookup", "frequency"]

TaskWeighting = Literal["fixed", "uncertainty"]


class TrainerConfig(Settings):
    """Model and training settings of the canonical ranker (``ranker train --config``, env ``RANKER_TRAIN_<FIELD>``).

    Example::

        config = TrainerConfig(architecture="mmoe", expert_types=["mlp", "mlp", "cross", "cross"])
        config.num_experts   # 4
    """

    # -- model ---------------------------------------------------------------
    # single_task | shared_bottom | dcn | mmoe_no_module | mmoe | ple (see docs/model.md).
    architecture: Architecture = "mmoe"
    # One entry per shared expert: "mlp" (ReLU MLP) or "cross" (DCN-v2 cross network).
    expert_types: list[str] = Field(default_factory=lambda: ["mlp", "mlp", "mlp", "cross"])
    # Hidden widths of an MLP expert (and of the shared bottom / single-task bottoms);
    # the last width is every expert's output width.
    expert_units: list[int] = Field(default_factory=lambda: [64, 32])
    # Cross layers in a "cross" expert and their low-rank projection (None: full rank).
    cross_layers: int = 2
    cross_projection_dim: int | None = None
    # Hidden widths of each task tower (a final 1-unit logit layer is added).
    tower_units: list[int] = Field(default_factory=lambda: [16])
    # Width of every embedding: categorical, hashed, list tokens, quantile buckets, PWL projections.
    embedding_dim: int = 8
    # "dot": every pairwise dot product of the string features' embeddings (user and item ids,
    # shop, categories, tags, ...) joins the features every expert, gate and tower reads, as in
    # DLRM (tfrs DotInteraction): an MLP learns a user x item dot product poorly (Rendle et al.,
    # 2020). "none": the concatenated features only (docs/model.md, "Feature interactions").
    feature_interaction: FeatureInteraction = "none"
    # Behaviour sequences (the dataset spec's history.sequences): "attention" looks their tokens up in
    # the candidate feature's own table (the listing's, the category's) and pools them with weights
    # from their match with the candidate (DIN's target attention), plus the pooled vector's dot
    # product with the candidate; "mean": an ordinary list feature (docs/model.md, "Behaviour sequences").
    sequence_pooling: SequencePooling = "attention"
    # Share of a behaviour sequence's tokens dropped in training before attention pooling (a
    # regularizer: the tokens carry no embedding_l2 penalty); 0 keeps them all.
    sequence_dropout: float = 0.0
    # Width of the module_name embedding concatenated into every expert, gate and tower layer.
    module_embedding_dim: int = 8
    # Share of training examples whose module is replaced by the OOV bucket, so an
    # unseen module gets a trained "average module" embedding instead of a random one.
    module_dropout: float = 0.1
    # Compose the module embedding from the dataset spec's module_traits (layout, channel, ...) when it
    # declares them: a module's own vector plus one per trait value, so an unseen module shares what its
    # traits share with trained ones (docs/model.md, "Module traits"). Off by default: measured, it helped one
    # world's held-out module and hurt the other's (docs/model.md, "Module traits: measured").
    module_traits: bool = False
    # OOV buckets of every vocabulary lookup (categorical, list and module).
    oov_buckets: int = 1
    # Softmax temperature of every gate: >1 flattens the expert mixture, <1 sharpens it.
    gate_temperature: float = 1.0
    # What every gate reads: "features" (the example's features and the module embedding) or "module" (the
    # module embedding only: one expert mixture per module and task, which id embeddings cannot sway).
    gate_inputs: GateInputs = "features"
    # PLE only: progressive levels and task-specific experts per task per level;
    # the shared experts of every level follow expert_types.
    ple_levels: int = 2
    ple_task_experts: int = 1
    # Force one numeric encoding for every numeric feature (None: the spec's per-feature choice).
    numeric_encoding: str | None = None
    dropout: float = 0.0
    # L2 penalty on the embedding rows a batch looks up (categorical, hashed and list features):
    # l2 * (summed squares of those rows) / batch size, each row's square weighted as embedding_l2_scaling says.
    # Curbs the hashed-id memorization that made the first epoch the best one;
    # 10 had the lowest eval loss of 0 / 0.03 / 0.3 / 1 / 3 / 10 / 30 (docs/model.md). 0 disables it.
    embedding_l2: float = 10.0
    # "frequency": each lookup's penalty is divided by how often the train split uses that row (counted in one
    # pass before training), so every row is penalized about once per epoch however frequent (DIN's mini-batch
    # aware regularization, Zhou et al., 2018): rare ids are held back as before, frequent values (a category,
    # a device) are not shrunk toward 0. "lookup": the penalty as above, growing with a row's frequency.
    # Measured on two simulated worlds x 3 seeds and UCI Adult (docs/model.md, "Training: the embedding penalty
    # per row, not per lookup").
    embedding_l2_scaling: EmbeddingL2Scaling = "frequency"
    # Cap on the buckets of every hashed feature (None: the spec's hash_buckets). Fewer buckets
    # share rows between rare ids: less capacity to memorize, at the price of collisions.
    max_hash_buckets: int | None = None
    # Hashed-id buckets seen fewer than this many times in the train split share one embedding row,
    # trained on all of them, which also stands for every id never seen in training (a learned
    # "cold id" instead of a row fitted to one or two examples); 0: off (docs/model.md).
    rare_id_min_count: int = 0
    # What the id embeddings (categorical, hashed and list features) do after the first epoch, where the
    # "one-epoch" overfitting of CTR models starts: "train" on with everything else; "freeze": keep the
    # first epoch's rows while the layers above train on; "reset": start every later epoch from freshly
    # initialized rows and optimizer state (MEDA, Fan et al., 2023), so the layers above never see an
    # example through the same embedding twice (docs/model.md, "Training: the id embeddings after the
    # first epoch").
    embedding_schedule: EmbeddingSchedule = "train"
    # -- position bias (training only; docs/model.md, "Position bias") -------
    # A shallow tower on the logged position (crossed with the module embedding) whose per-task
    # logit is added during training, so the main model learns relevance rather than exposure.
    # A no-op (logged) when the data has no position role or every training position is 0.
    position_bias: bool = False
    # Position buckets: exact below position_buckets // 2, log2-wide beyond, the last one open.
    position_buckets: int = 16
    position_embedding_dim: int = 4
    # Share of training rows whose position term is dropped, so the main model cannot lean on it.
    position_dropout: float = 0.1
    # Position the served probabilities assume (0: "as if shown in the top slot"); null drops the
    # term. Constant within a request, so it never changes the ranking of a request's candidates.
    position_reference: int | None = 0
    # -- objective -----------------------------------------------------------
    # task -> loss weight (tasks not listed weigh 1.0).
    task_loss_weights: dict[str, float] = Field(default_factory=dict)
    # "fixed": the summed task losses times task_loss_weights. "uncertainty": each task's weighted
    # loss is also scaled by a learned exp(-s_task), plus s_task / 2 (Kendall et al., 2018), so the
    # optimizer balances tasks whose losses differ in scale; early stopping still compares the fixed
    # sum (docs/model.md, "Training: uncertainty task weighting").
    task_weighting: TaskWeighting = "fixed"
    # Positive-class weight of a task = clip((negatives / positives) ** power, 1, max), from
    # the spec's train counts; 0 disables it. Probabilities are corrected back (logit - log w).
    positive_weight_power: float = 0.5
    max_positive_weight: float = 50.0
    # task -> explicit positive weight, overriding the derived one.
    positive_weights: dict[str, float] = Field(default_factory=dict)
    # Ranking score = sum_task weight[module][task] * p(task). module -> {task: weight};
    # modules not listed use default_score_weights; tasks not listed weigh 1.0, which
    # makes the score the expected number of funnel steps (the graded relevance).
    score_weights: dict[str, dict[str, float]] = Field(default_factory=dict)
    default_score_weights: dict[str, float] = Field(default_factory=dict)
    # Listwise loss (docs/model.md, "Training: a listwise loss per request"): softmax cross-entropy
    # of each task's logits within a request, labels normalized within the request (a request
    # without a positive for the task adds nothing), averaged over the requests with a positive,
    # weighted by task_loss_weights and added to the pointwise losses times listwise_weight. On
    # (> 0), training batches are whole requests, shuffled by request. 0: off. A no-op (logged)
    # on data without request groups.
    listwise_weight: float = 0.0
    # The tasks the listwise loss ranks (empty: every task).
    listwise_tasks: list[str] = Field(default_factory=list)
    # Logged-order loss (docs/model.md, "Training: learning the logged order"): one more head, with its own
    # gate and tower on the shared experts, learns each request's logged order (ListMLE of the positions,
    # per candidate), so the experts learn what the ranker that ordered the logs knew. It is not served and
    # not in the score. Its weight against the summed task losses; 0: off. Needs request groups and a
    # position role (else a logged no-op); training batches are whole requests, like the listwise loss.
    logged_order_weight: float = 0.0
    # -- training ------------------------------------------------------------
    learning_rate: float = 3e-3
    # Epoch e (0-based) trains at learning_rate * learning_rate_decay ** e: below 1, each pass after
    # the first moves the weights less (sparse id embeddings start to memorize after about one pass).
    # 1 (constant) by default: 0.3 was measured and did not help (docs/model.md).
    learning_rate_decay: float = 1.0
    # Momentum per step of an exponential moving average of the weights (Polyak averaging); 0: off. The
    # average is what validation, early stopping and the export see; training steps move the raw weights.
    # Early steps average over fewer: the momentum is at most (1 + step) / (10 + step). 0.999 (about the
    # last thousand steps) beat the raw weights on both simulated worlds' test splits and on UCI Adult
    # (docs/model.md, which also says where the raw weights win).
    weight_averaging: float = 0.999
    batch_size: int = 1024
    epochs: int = 10
    # What picks the best epoch (its weights are restored) and stops training: "loss" (the mean eval
    # loss) or "ndcg@<k>" / "ndcg" (full list) of the primary target, the evaluation's default one
    # (favorite when the data has it, else graded engagement), over the eval split's requests after
    # every epoch; logged as the epoch metric val_<target>_ndcg_at_<k>. Without request groups, NDCG
    # falls back to the loss. "auc": the eval AUC of the primary binary task (favorite when the data has
    # it, else the first task), the epoch metric val_<task>_auc, with or without groups.
    early_stopping_metric: str = "loss"
    # Stop after this many epochs without a better early_stopping_metric and restore the best weights.
    early_stopping_patience: int = 2
    # Train steps run inside one tf.function call (fewer Python round trips per step).
    steps_per_execution: int = 8
    shuffle_buffer: int = 100_000
    # Cache the parsed training split in memory when it has at most this many rows. With a loss over requests
    # (listwise_weight, logged_order_weight), a split this large or smaller is held in memory as whole requests;
    # a larger one streams, a group of shards of at most this many rows at a time.
    cache_max_rows: int = 2_000_000
    seed: int = 42
    # Members of a seed ensemble: this many models trained alike at seeds seed, seed + 1, ...; the export
    # serves the mean of their probabilities (and so of their scores). 1: one model. Each member costs its
    # training time and its share of every prediction (docs/model.md, "Training: seed ensembles").
    ensemble_size: int = 1
    # tf.config.experimental.enable_op_determinism(): same seed, same weights.
    deterministic: bool = True

    model_config = SettingsConfigDict(env_prefix="RANKER_TRAIN_")

    @model_validator(mode="after")
    def _check(self) -> Self:
        self.validate()
        return self

    @property
    def num_experts(self) -> int:
        return len(self.expert_types)

    @property
    def uses_module(self) -> bool:
        return self.architecture != "mmoe_no_module"

    def validate(self) -> None:
        """Raise ValueError naming the first field with an impossible value."""
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture {self.architecture!r} is not one of {', '.join(ARCHITECTURES)}")
        unknown = sorted(set(self.expert_types) - set(EXPERT_TYPES))
        if unknown or not self.expert_types:
            raise ValueError(f"expert_types must be a non-empty list of {EXPERT_TYPES}, got {self.expert_types}")
        if self.numeric_encoding is not None and self.numeric_encoding not in NUMERIC_ENCODINGS:
            raise ValueError(f"numeric_encoding {self.numeric_encoding!r} is not one of {NUMERIC_ENCODINGS} or null")
        positive = {
            "expert_units": min(self.expert_units, default=0),
            "tower_units": min(self.tower_units, default=1),  # none: the tower is its logit layer alone
            "cross_layers": self.cross_layers,
            "embedding_dim": self.embedding_dim,
            "module_embedding_dim": self.module_embedding_dim,
            "oov_buckets": self.oov_buckets,
            "ple_levels": self.ple_levels,
            "batch_size": self.batch_size,
            "epochs": self.epochs,
            "ensemble_size": self.ensemble_size,
            "steps_per_execution": self.steps_per_execution,
            "position_buckets": self.position_buckets,
            "position_embedding_dim": self.position_embedding_dim,
            "shuffle_buffer": self.shuffle_buffer,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        # 0: no early-stopping patience, no task-specific PLE experts, the split never cached, rare ids off.
        self.require_at_least(
            dict.fromkeys(("early_stopping_patience", "ple_task_experts", "cache_max_rows", "rare_id_min_count"), 0)
        )
        _require_seed(self.seed)
        _require_finite("learning_rate", self.learning_rate, allow_zero=False)
        _require_finite("gate_temperature", self.gate_temperature, allow_zero=False)
        for name in ("embedding_l2", "listwise_weight", "logged_order_weight"):
            _require_finite(name, getattr(self, name), allow_zero=True)
        rates = (self.module_dropout, self.dropout, self.position_dropout, self.sequence_dropout)
        if not all(0.0 <= rate < 1.0 for rate in rates):
            raise ValueError("module_dropout, dropout, position_dropout and sequence_dropout must be in [0, 1)")
        for name in ("max_hash_buckets", "cross_projection_dim"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive or null, got {getattr(self, name)}")
        if not 0.0 < self.learning_rate_decay <= 1.0:
            raise ValueError(f"learning_rate_decay must be in (0, 1], got {self.learning_rate_decay}")
        if not 0.0 <= self.weight_averaging < 1.0:
            raise ValueError(f"weight_averaging must be in [0, 1), got {self.weight_averaging}")
        self._check_task_weights()
        self._check_score_weights()
        if len(set(self.listwise_tasks)) != len(self.listwise_tasks):
            raise ValueError(f"listwise_tasks names a task twice: {self.listwise_tasks}")
        if self.early_stopping_metric not in (LOSS_METRIC, AUC_METRIC):
            try:
                parse_metric(self.early_stopping_metric)
            except ValueError:
                raise ValueError(
                    f"early_stopping_metric {self.early_stopping_metric!r} is not 'loss', 'auc', 'ndcg' or 'ndcg@<k>'"
                ) from None
        if self.position_reference is not None and self.position_reference < 0:
            raise ValueError(f"position_reference must be a 0-based position or null, got {self.position_reference}")

    def require_known_tasks(self, tasks: Iterable[str]) -> None:
        """Raise :class:`InvalidValueError` naming the first setting that names a task not among ``tasks``, the data's.

        Checked by the model before it builds a layer, and by ``ranker run`` against the dataset spec before
        any step runs::

            TrainerConfig(task_loss_weights={"clik": 2.0}).require_known_tasks(["click", "purchase"])
            # InvalidValueError: task_loss_weights names unknown task(s) ['clik']; the data's tasks: [...]
        """
        named = {
            "task_loss_weights": self.task_loss_weights,
            "positive_weights": self.positive_weights,
            "listwise_tasks": self.listwise_tasks,
            "default_score_weights": self.default_score_weights,
        } | {f"score_weights[{module!r}]": weights for module, weights in self.score_weights.items()}
        for setting, names in named.items():
            require_known_tasks(setting, names, tasks)

    def _check_task_weights(self) -> None:
        """Raise ValueError naming the first class or loss weight that would break training.

        A positive weight enters the loss as a factor and the served probability as ``log(weight)``, so it must be
        finite and > 0; a negative task loss weight rewards the loss for growing (it falls without bound).
        """
        _require_finite("positive_weight_power", self.positive_weight_power, allow_zero=True)
        _require_finite("max_positive_weight", self.max_positive_weight, allow_zero=False)
        for task, weight in self.positive_weights.items():
            _require_finite(f"positive_weights[{task!r}]", weight, allow_zero=False)
        for task, weight in self.task_loss_weights.items():
            _require_finite(f"task_loss_weights[{task!r}]", weight, allow_zero=True)

    def _check_score_weights(self) -> None:
        """Raise ValueError naming the first score weight that is NaN or infinite (any finite weight, a negative one
        included, is a valid term of the ranking score)."""
        named = {f"default_score_weights[{task!r}]": weight for task, weight in self.default_score_weights.items()}
        for module, weights in self.score_weights.items():
            named |= {f"score_weights[{module!r}][{task!r}]": weight for task, weight in weights.items()}
        for name, weight in named.items():
            if not math.isfinite(weight):
                raise ValueError(f"{name} must be a finite number, got {weight}")


def require_known_tasks(setting: str, named: Iterable[str], tasks: Iterable[str]) -> None:
    """Raise :class:`InvalidValueError` (a ValueError; one line, exit status 2 from a CLI) if ``setting`` names a
    task that is not one of ``tasks``, the data's.

    >>> require_known_tasks("listwise_tasks", ["click"], ["click", "purchase"])
    """
    tasks = list(tasks)  # a plain list in the message, whatever holds the names (Keras wraps a layer's lists)
    unknown = sorted(set(named) - set(tasks))
    if unknown:
        raise InvalidValueError(f"{setting} names unknown task(s) {unknown}; the data's tasks: {tasks}")


def _require_finite(name: str, value: float, allow_zero: bool) -> None:
    """Raise ValueError naming ``name`` unless ``value`` is a finite number > 0 (>= 0 with ``allow_zero``).

    >>> _require_finite("positive_weights['click']", 0.0, allow_zero=False)
    Traceback (most recent call last):
    ValueError: positive_weights['click'] must be a finite number > 0, got 0.0
    """
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value}")


def _require_seed(seed: int) -> None:
    """Raise ValueError unless ``seed`` is one NumPy and TensorFlow take: in [0, 2**32)."""
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")


# The smallest value of each integer field of BaselineConfig (LightGBM's own bounds where it has them).
_BASELINE_MINIMUMS: dict[str, int] = {
    "num_leaves": 2,
    "n_estimators": 1,
    "min_data_in_leaf": 0,
    "lambdarank_truncation_level": 1,
    "min_data_per_group": 1,
    "max_cat_threshold": 1,
    "early_stopping_rounds": 0,  # 0: no early stopping (every round kept)
    "eval_at": 1,
    "min_module_requests": 0,
    "min_module_positives": 0,
    "max_list_tokens": 0,
    "num_threads": 0,
    "tuning_trials": 0,
    "tuning_sample_rows": 0,
    "tuning_eval_rows": 0,
}


class BaselineConfig(Settings):
    """How the LightGBM baselines are trained (``ranker train-baseline --config``, env ``RANKER_BASELINE_<FIELD>``).

    >>> BaselineConfig.from_sources('{"num_leaves": 15}').num_leaves
    15
    """

    num_leaves: int = 31
    learning_rate: float = 0.1
    n_estimators: int = 500
    min_data_in_leaf: int = 20
    feature_fraction: float = 0.9
    lambda_l2: float = 1.0
    # LambdaRank: pairs whose higher-ranked row is below this rank get no gradient (LightGBM's default).
    lambdarank_truncation_level: int = 30
    # Categorical splits (LightGBM's defaults): smoothing of a category's statistics, the rows a
    # category needs to be split on, and the most categories one split may send one way.
    cat_smooth: float = 10.0
    min_data_per_group: int = 100
    max_cat_threshold: int = 32
    early_stopping_rounds: int = 20
    # With request groups, the objective of each task's (0/1) models: LambdaRank, or binary log-loss
    # on the rows of the requests with a positive; both early-stop on NDCG@eval_at. Graded
    # engagement always uses LambdaRank. (Binary scored higher untuned but lost the per-module
    # models their tuned choice at 1M impressions: docs/evaluation.md, "Baseline speed".)
    task_objective: TaskObjective = "lambdarank"
    # LambdaRank optimises and early-stops on NDCG at this cutoff.
    eval_at: int = 10
    # A module trains its own model for a target only with at least this many training
    # requests, and this many requests with a positive (rows, when there are no groups).
    min_module_requests: int = 50
    min_module_positives: int = 20
    hashed: HashedPolicy = "drop"
    max_list_tokens: int = 64
    # Seeds LightGBM, the shuffle of rows within each request, the tuning draws and samples.
    seed: int = 0
    # Models trained side by side, each on one thread; 0: every core this process may run on.
    num_threads: int = 0
    # Parameter sets tried per target for the global models (the first is this config as given,
    # the rest seeded draws from components.baseline.tuning.SEARCH_SPACE); 0 turns tuning off.
    # A per-module model keeps this config or its target's global choice, by its own eval rows.
    tuning_trials: int = 10
    # CPU seconds for all global searches together, shared equally by the targets; each search
    # counts the CPU time of the thread it trains on, so the trials run (and the models chosen) do
    # not depend on the machine's load or cores. A trial starts only while its search has some left.
    tuning_budget_seconds: float = 60.0
    # Trials train on a seeded sample of whole requests of at most this many rows; the winner and the
    # config are refit on every row and the better kept; 0: every row.
    tuning_sample_rows: int = 50_000
    # Trials early-stop on a seeded sample of whole eval requests of at most this many rows, so that a
    # trial costs the same whatever the data's size (the refits watch every eval row); 0: every row.
    tuning_eval_rows: int = 200_000

    model_config = SettingsConfigDict(env_prefix="RANKER_BASELINE_")

    @model_validator(mode="after")
    def _check(self) -> Self:
        """Refuse, naming the field, a value LightGBM or the baseline's code cannot take."""
        self.require_at_least(_BASELINE_MINIMUMS)
        _require_seed(self.seed)
        _require_finite("learning_rate", self.learning_rate, allow_zero=False)
        for name in ("lambda_l2", "cat_smooth", "tuning_budget_seconds"):
            _require_finite(name, getattr(self, name), allow_zero=True)
        if not 0.0 < self.feature_fraction <= 1.0:
            raise ValueError(f"feature_fraction must be in (0, 1], got {self.feature_fraction}")
        return self

    def dataset_params(self) -> dict[str, Any]:
        """The parameters a binned LightGBM Dataset is built with (binning uses every core).

        No feature pre-filter: it bakes ``min_data_in_leaf`` into the bins, which tuning varies.
        """
        return {"seed": self.seed, "num_threads": self.threads(), "feature_pre_filter": False, "verbosity": -1}

    def threads(self) -> int:
        """``num_threads``, or with 0 every core this process may run on."""
        if self.num_threads:
            return self.num_threads
        return usable_cores()

    def objective(self, ranking: bool, graded: bool) -> str:
        """A model's LightGBM objective: with request groups LambdaRank for graded targets, else ``task_objective``
        (default ``lambdarank``); binary without request groups.

        >>> config = BaselineConfig()
        >>> config.objective(ranking=True, graded=True), config.objective(True, False), config.objective(False, True)
        ('lambdarank', 'lambdarank', 'binary')
        """
        if not ranking:
            return "binary"
        return "lambdarank" if graded else self.task_objective

    def lightgbm_params(self, ranking: bool, task_count: int, graded: bool = True) -> dict[str, Any]:
        """Every LightGBM parameter one model is trained with (the manifest records them as ``params``)."""
        params: dict[str, Any] = {
            **self.dataset_params(),
            "num_leaves": self.num_leaves,
            "learning_rate": self.learning_rate,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "lambda_l2": self.lambda_l2,
            "cat_smooth": self.cat_smooth,
            "min_data_per_group": self.min_data_per_group,
            "max_cat_threshold": self.max_cat_threshold,
            "deterministic": True,
            # One thread per model, models side by side (components.baseline.gbdt._in_parallel).
            "num_threads": 1,
        }
        if not ranking:
            return {**params, "objective": "binary", "metric": "binary_logloss"}
        # Every ranking model gets the same gains, the engagement grades' (a binary target's labels
        # 0 and 1 have gains 0 and 1 in it, as in [0, 1]): LightGBM keeps the NDCG gain table in one
        # process-wide static that each model overwrites when it starts, so models training side
        # by side with different tables score each other's eval NDCG with the wrong gains.
        return {
            **params,
            "objective": self.objective(ranking, graded),
            "metric": "ndcg",
            "eval_at": [self.eval_at],
            "label_gain": engagement_gains([""] * task_count),
            "lambdarank_truncation_level": self.lambdarank_truncation_level,
        }

    def eval_metric(self, ranking: bool) -> str:
        """The name of the early-stopping (and tuning) eval score."""
        return f"ndcg@{self.eval_at}" if ranking else "binary_logloss"


# How a tuned field is drawn: from a list, log-uniformly or uniformly in a [low, high] range.
DrawKind = Literal["choice", "log", "uniform"]
DEFAULT_TUNING_SPACE: dict[str, dict[str, list]] = {
    "learning_rate": {"log": [1e-3, 1e-2]},
    "embedding_l2": {"log": [0.1, 30.0]},
    "embedding_dim": {"choice": [8, 16, 32]},
    "dropout": {"uniform": [0.0, 0.3]},
    "module_dropout": {"uniform": [0.0, 0.3]},
}


# The tune step's record of its trials and choice, in its ``trials`` artifact (read back by ``ranker run``'s summary).
TUNING_FILE = "tuning.json"


class TuningConfig(Settings):
    """The optional ``tune_mmoe`` step: a seeded search of TrainerConfig fields on the eval split's ranking metric.

    ``space`` maps a TrainerConfig field to ``{"choice": [values]}``, ``{"log": [low, high]}`` or
    ``{"uniform": [low, high]}``. The first trial is the model configuration as given, so tuning
    never keeps a worse eval score than not tuning (env ``RANKER_TUNE_<FIELD>``).

    >>> TuningConfig.from_sources('{"trials": 8}').trials
    8
    """

    # Trials, the configuration as given included; 0 leaves the tune step out of the pipeline.
    trials: int = 0
    # Wall-clock seconds for all trials (0: no limit); a trial starts only while time is left (the
    # first, the configuration as given, always runs).
    budget_seconds: float = 0.0
    # The eval metric trials are judged by: NDCG ("ndcg@<k>" or "ndcg") of the evaluation's primary target, or
    # "auc", the AUC of its primary binary task (what data without request groups is always judged by).
    metric: str = "ndcg@10"
    # Seeds the sampler (Optuna's TPE); the trials' models keep the model configuration's seed.
    seed: int = 0
    # The best-scoring trial replaces the configuration as given only when the paired bootstrap interval (at this
    # level, over the eval requests) of its NDCG lift over it lies above 0; 0 keeps the best score however small
    # its lead. AUC-judged searches keep the best score.
    confidence: float = 0.95
    space: dict[str, dict[DrawKind, list]] = Field(default_factory=lambda: dict(DEFAULT_TUNING_SPACE))

    model_config = SettingsConfigDict(env_prefix="RANKER_TUNE_")

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.trials < 0 or self.budget_seconds < 0:
            raise ValueError(f"trials and budget_seconds must be >= 0, got {self.trials} and {self.budget_seconds}")
        if not 0 <= self.confidence < 1:
            raise ValueError(f"confidence must be in [0, 1), got {self.confidence}")
        if self.metric != AUC_METRIC:
            try:
                parse_metric(self.metric)
            except ValueError:
                raise ValueError(f"metric {self.metric!r} is not 'auc', 'ndcg' or 'ndcg@<k>'") from None
        if self.trials > 1 and not self.space:
            raise ValueError(f"space is empty: each of the {self.trials} trials would train the configuration as given")
        unknown = sorted(set(self.space) - set(TrainerConfig.model_fields))
        if unknown:
            raise ValueError(f"space names {unknown}, which are not TrainerConfig fields")
        for field, draw in self.space.items():
            _check_draw(field, draw)
        return self


def _check_draw(field: str, draw: dict[str, list]) -> None:
    """One way to draw ``field``: a non-empty choice, or a [low, high] range (log: 0 < low)."""
    if len(draw) != 1:
        raise ValueError(f"space[{field!r}] must have one of choice, log, uniform; got {sorted(draw)}")
    kind, values = next(iter(draw.items()))
    if kind == "choice":
        if not values:
            raise ValueError(f"space[{field!r}].choice is empty")
        return
    low_bound = 0 if kind == "log" else -math.inf
    if len(values) != 2 or not low_bound < values[0] < values[1]:
        positive = " > 0" if kind == "log" else ""
        raise ValueError(f"space[{field!r}].{kind} must be [low, high] with high > low{positive}, got {values}")


def check_space(base: TrainerConfig, space: dict[str, dict[str, list]]) -> None:
    """Fail in one line, before any trial trains, on a value of ``space`` that TrainerConfig refuses.

    Each choice and both bounds of each range are tried in ``base`` (its other fields as given), so a bad
    value cannot surface only after earlier trials have spent their training time; a range over a whole-number
    field must have whole-number ends (it draws integers).

    >>> check_space(TrainerConfig(), {"batch_size": {"choice": [256, "big"]}})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ranker_core.cli_support.InvalidValueError: tuning space['batch_size'] value 'big': ...
    """
    for field, draw in space.items():
        kind, values = next(iter(draw.items()))
        for value in values if kind == "choice" else range_bounds(field, kind, values):
            try:
                base.replace(**{field: value})
            except ValueError as error:  # InvalidValueError is one
                raise InvalidValueError(f"tuning space[{field!r}] value {value!r}: {error}") from None


def whole_field(field: str) -> bool:
    """Whether TrainerConfig's ``field`` holds a whole number (``int`` or ``int | None``; a ``bool`` does not).

    >>> whole_field("epochs"), whole_field("max_hash_buckets"), whole_field("dropout"), whole_field("deterministic")
    (True, True, False, False)
    """
    annotation = TrainerConfig.model_fields[field].annotation
    return annotation is int or set(typing.get_args(annotation)) == {int, type(None)}


def range_bounds(field: str, kind: str, values: list) -> list[int] | list[float]:
    """A range's [low, high] as ``field`` draws them: integers for a whole-number field, else floats.

    >>> range_bounds("epochs", "uniform", [1, 3.0]), range_bounds("dropout", "uniform", [0, 0.3])
    ([1, 3], [0.0, 0.3])
    >>> range_bounds("epochs", "uniform", [1.5, 3])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ranker_core.cli_support.InvalidValueError: tuning space['epochs'] uniform [1.5, 3]: epochs is a whole number, ...
    """
    if not whole_field(field):
        return [float(bound) for bound in values]
    if not all(float(bound).is_integer() for bound in values):
        raise InvalidValueError(
            f"tuning space[{field!r}] {kind} {values}: {field} is a whole number, so the range's ends must be too"
        )
    return [int(bound) for bound in values]
