"""`TrainerConfig`: every knob of the ranker's model and training loop, in one place.

Defaults are documented beside each field and in ``docs/model.md``. A config
round-trips through JSON (it is written next to every exported model as
``trainer_config.json``) and is overridden, in this order, by environment
variables ``RANKER_TRAIN_<FIELD>`` and by explicit overrides (CLI flags or a
pipeline's ``config_json``)::

    config = TrainerConfig.from_sources('{"architecture": "ple", "epochs": 3}')
    config.architecture          # "ple"
    TrainerConfig.from_json(config.to_json()) == config   # True
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from trainer.overrides import env_values, read_json_object

Architecture = Literal["single_task", "shared_bottom", "mmoe_no_module", "mmoe", "ple"]
ARCHITECTURES: tuple[str, ...] = typing.get_args(Architecture)
EXPERT_TYPES = ("mlp", "cross")
NUMERIC_ENCODINGS = ("normalize", "quantile", "pwl")
CONFIG_FILE = "trainer_config.json"
ENV_PREFIX = "RANKER_TRAIN_"


@dataclasses.dataclass
class TrainerConfig:
    """Model and training settings of the canonical ranker.

    Example::

        config = TrainerConfig(architecture="mmoe", expert_types=["mlp", "mlp", "cross", "cross"])
        config.num_experts   # 4
    """

    # -- model ---------------------------------------------------------------
    # single_task | shared_bottom | mmoe_no_module | mmoe | ple (see docs/model.md).
    architecture: Architecture = "mmoe"
    # One entry per shared expert: "mlp" (ReLU MLP) or "cross" (DCN-v2 cross network).
    expert_types: list[str] = dataclasses.field(default_factory=lambda: ["mlp", "mlp", "mlp", "cross"])
    # Hidden widths of an MLP expert (and of the shared bottom / single-task bottoms);
    # the last width is every expert's output width.
    expert_units: list[int] = dataclasses.field(default_factory=lambda: [64, 32])
    # Cross layers in a "cross" expert and their low-rank projection (None: full rank).
    cross_layers: int = 2
    cross_projection_dim: int | None = None
    # Hidden widths of each task tower (a final 1-unit logit layer is added).
    tower_units: list[int] = dataclasses.field(default_factory=lambda: [16])
    # Width of every embedding: categorical, hashed, list tokens, quantile buckets, PWL projections.
    embedding_dim: int = 8
    # Width of the module_name embedding concatenated into every expert, gate and tower layer.
    module_embedding_dim: int = 8
    # Share of training examples whose module is replaced by the OOV bucket, so an
    # unseen module gets a trained "average module" embedding instead of a random one.
    module_dropout: float = 0.1
    # OOV buckets of every vocabulary lookup (categorical, list and module).
    oov_buckets: int = 1
    # Softmax temperature of every gate: >1 flattens the expert mixture, <1 sharpens it.
    gate_temperature: float = 1.0
    # PLE only: progressive levels and task-specific experts per task per level;
    # the shared experts of every level follow expert_types.
    ple_levels: int = 2
    ple_task_experts: int = 1
    # Force one numeric encoding for every numeric feature (None: the spec's per-feature choice).
    numeric_encoding: str | None = None
    dropout: float = 0.0
    # L2 penalty on the embedding rows a batch looks up (categorical, hashed and list features):
    # l2 * (summed squares of those rows) / batch size, so a row is pulled toward 0 in proportion to
    # how often it is used. Curbs the hashed-id memorization that made the first epoch the best one;
    # 10 had the lowest eval loss of 0 / 0.03 / 0.3 / 1 / 3 / 10 / 30 (docs/model.md). 0 disables it.
    embedding_l2: float = 10.0
    # Cap on the buckets of every hashed feature (None: the spec's hash_buckets). Fewer buckets
    # share rows between rare ids: less capacity to memorize, at the price of collisions.
    max_hash_buckets: int | None = None
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
    task_loss_weights: dict[str, float] = dataclasses.field(default_factory=dict)
    # Positive-class weight of a task = clip((negatives / positives) ** power, 1, max), from
    # the spec's train counts; 0 disables it. Probabilities are corrected back (logit - log w).
    positive_weight_power: float = 0.5
    max_positive_weight: float = 50.0
    # task -> explicit positive weight, overriding the derived one.
    positive_weights: dict[str, float] = dataclasses.field(default_factory=dict)
    # Ranking score = sum_task weight[module][task] * p(task). module -> {task: weight};
    # modules not listed use default_score_weights; tasks not listed weigh 1.0, which
    # makes the score the expected number of funnel steps (the graded relevance).
    score_weights: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    default_score_weights: dict[str, float] = dataclasses.field(default_factory=dict)
    # -- training ------------------------------------------------------------
    learning_rate: float = 3e-3
    batch_size: int = 1024
    epochs: int = 10
    # Stop after this many epochs without a lower eval loss and restore the best weights.
    early_stopping_patience: int = 2
    # Train steps run inside one tf.function call (fewer Python round trips per step).
    steps_per_execution: int = 8
    shuffle_buffer: int = 100_000
    # Cache the parsed training split in memory when it has at most this many rows.
    cache_max_rows: int = 2_000_000
    seed: int = 42
    # tf.config.experimental.enable_op_determinism(): same seed, same weights.
    deterministic: bool = True

    def __post_init__(self) -> None:
        self.validate()

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
            "embedding_dim": self.embedding_dim,
            "module_embedding_dim": self.module_embedding_dim,
            "oov_buckets": self.oov_buckets,
            "gate_temperature": self.gate_temperature,
            "ple_levels": self.ple_levels,
            "learning_rate": self.learning_rate,
            "batch_size": self.batch_size,
            "epochs": self.epochs,
            "steps_per_execution": self.steps_per_execution,
            "position_buckets": self.position_buckets,
            "position_embedding_dim": self.position_embedding_dim,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not all(0.0 <= rate < 1.0 for rate in (self.module_dropout, self.dropout, self.position_dropout)):
            raise ValueError("module_dropout, dropout and position_dropout must be in [0, 1)")
        if self.max_hash_buckets is not None and self.max_hash_buckets < 1:
            raise ValueError(f"max_hash_buckets must be positive or null, got {self.max_hash_buckets}")
        if self.embedding_l2 < 0:
            raise ValueError(f"embedding_l2 must be >= 0, got {self.embedding_l2}")
        if self.position_reference is not None and self.position_reference < 0:
            raise ValueError(f"position_reference must be a 0-based position or null, got {self.position_reference}")

    # -- serialization -------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def save(self, path: str | Path) -> None:
        import tensorflow as tf  # gs:// paths

        with tf.io.gfile.GFile(str(path), "w") as file:
            file.write(self.to_json())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainerConfig:
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown trainer config field(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> TrainerConfig:
        return cls.from_dict(json.loads(text))

    @classmethod
    def load(cls, path: str | Path) -> TrainerConfig:
        import tensorflow as tf

        path = str(path)
        if tf.io.gfile.isdir(path):
            path = f"{path.rstrip('/')}/{CONFIG_FILE}"
        with tf.io.gfile.GFile(path) as file:
            return cls.from_json(file.read())

    def replace(self, **overrides: Any) -> TrainerConfig:
        """A copy with some fields changed (validated)."""
        return self.from_dict({**self.to_dict(), **overrides})

    @classmethod
    def from_sources(
        cls,
        json_or_file: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> TrainerConfig:
        """Defaults <- ``RANKER_TRAIN_*`` environment <- a JSON string or file <- explicit overrides.

        Example::

            TrainerConfig.from_sources("config.json", {"epochs": 2}, environ={"RANKER_TRAIN_SEED": "7"})
        """
        values = env_overrides(os.environ if environ is None else environ)
        values.update(parse_json_or_file(json_or_file))
        values.update({key: value for key, value in (overrides or {}).items() if value is not None})
        return cls.from_dict(values)


def parse_json_or_file(json_or_file: str | None) -> dict[str, Any]:
    """A JSON object given inline (``'{"epochs": 2}'``) or as the path of a JSON file."""
    return read_json_object(json_or_file, "trainer config")


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Fields set as ``RANKER_TRAIN_<FIELD>`` (lists, dicts and null as JSON, the rest by field type)."""
    return env_values(TrainerConfig, ENV_PREFIX, environ)
