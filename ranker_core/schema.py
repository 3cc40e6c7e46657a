"""The one place that defines the tasks, the reserved columns and the feature spec.

Everything downstream of feature extraction (the trainer, the GBDT baseline,
the evaluation and the server) reads a ``feature_spec.json`` written by
extraction and turns it into a :class:`FeatureSpec`::

    spec = FeatureSpec.load("work/examples/feature_spec.json")
    spec.task_names            # ("click", "favorite", "add_to_cart", "purchase")
    spec.feature("price").encoding   # "pwl"

Extracted examples are ``tf.train.Example`` records, GZIP-compressed TFRecord
shards under ``<examples>/<split>/part-*.tfrecord.gz``, with these keys:

==================  =========  ===============================================
key                 type       what it holds
==================  =========  ===============================================
``request_id``      bytes      the group a candidate was ranked in
``module_name``     bytes      the surface (also a model feature)
``position``        int64      the logged slot, 0-based (a training-time bias)
``timestamp``       int64      seconds since the epoch
``label_<task>``    int64      0/1 label of each task
each feature        bytes or   one value: categorical/hashed/list features as
                    float      bytes (a list joined by ``LIST_SEPARATOR``),
                               numeric features as float
==================  =========  ===============================================
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from ranker_core.cli_support import MissingInputError

# Reserved example keys (see the table above).
REQUEST_ID = "request_id"
MODULE = "module_name"
POSITION = "position"
TIMESTAMP = "timestamp"
LIST_SEPARATOR = "|"
SPLITS = ("train", "eval", "test")
HELDOUT_SPLIT = "heldout"
FEATURE_SPEC_FILE = "feature_spec.json"
DEFAULT_MODULE = "default"


@dataclasses.dataclass(frozen=True)
class Task:
    """A prediction task and the raw 0/1 column it is learned from."""

    name: str
    label_column: str


# The default tasks in ascending order of value: graded relevance for the
# engagement NDCG is the index of the deepest positive task + 1.
DEFAULT_TASKS: tuple[Task, ...] = (
    Task("click", "clicked"),
    Task("favorite", "favorited"),
    Task("add_to_cart", "added_to_cart"),
    Task("purchase", "purchased"),
)


ModuleTraitMap = Mapping[str, Mapping[str, str]]  # module -> {trait: value}, FeatureSpec.module_traits


def trait_names(traits: ModuleTraitMap) -> list[str]:
    """Every trait some module declares, sorted: ``{"feed": {"layout": "grid"}}`` -> ``["layout"]``."""
    return sorted({name for values in traits.values() for name in values})


def trait_values(traits: ModuleTraitMap, trait: str, modules: Iterable[str]) -> list[str]:
    """The distinct values of ``trait`` that ``modules`` declare, sorted (what a model can learn one vector for)."""
    return sorted({traits[module][trait] for module in modules if trait in traits.get(module, {})})


def label_key(task: str) -> str:
    """The example key holding a task's label."""
    return f"label_{task}"


def serving_input_name(name: str) -> str:
    """The serving signature's argument name for a raw input (TensorFlow takes ASCII names only).

    Characters other than ASCII letters and digits become ``_`` and a name that does not start
    with a letter gets an ``arg_`` prefix: ``"item-price.usd"`` -> ``"item_price_usd"``,
    ``"měna"`` -> ``"m_na"``. :class:`trainer.predict.Ranker` maps feature names to these, so its
    callers always use the feature spec's names.
    """
    swapped = "".join(char if char.isascii() and char.isalnum() else "_" for char in name)
    return swapped if swapped[:1].isalpha() else f"arg_{swapped}"


def serving_name_clashes(names: Iterable[str]) -> list[str]:
    """Each pair of input names that become one serving input name, as a message; empty when none clash.

    >>> serving_name_clashes(["cat name", "cat_name", "price"])
    ["'cat name' and 'cat_name' both become serving input 'cat_name': rename one"]
    """
    seen: dict[str, str] = {}
    clashes = []
    for name in names:
        argument = serving_input_name(name)
        if argument in seen:
            clashes.append(f"{seen[argument]!r} and {name!r} both become serving input {argument!r}: rename one")
        seen.setdefault(argument, name)
    return clashes


FeatureKind = Literal["categorical", "hashed", "numeric", "list"]
NumericEncoding = Literal["normalize", "quantile", "pwl"]
NumericTransform = Literal["none", "log1p"]


@dataclasses.dataclass
class Feature:
    """One model input and the statistics extraction measured for it.

    Categorical features carry a vocabulary (lookup with an OOV bucket); hashed
    features carry a bucket count; numeric features carry moments of the
    transformed value and quantile boundaries (for bucketized and
    piecewise-linear encodings); list features are categorical tokens joined
    by ``LIST_SEPARATOR`` in one string.
    """

    name: str
    kind: FeatureKind
    vocabulary: list[str] | None = None
    hash_buckets: int | None = None
    transform: NumericTransform = "none"
    encoding: NumericEncoding = "normalize"
    mean: float = 0.0
    std: float = 1.0
    min: float = 0.0
    max: float = 0.0
    quantiles: list[float] | None = None
    missing_fraction: float = 0.0
    # A behaviour sequence (a list feature): the candidate feature whose values its tokens are. The model
    # can look them up in that feature's table and pool them with attention to the candidate's value.
    target: str | None = None

    @property
    def is_string(self) -> bool:
        return self.kind != "numeric"


@dataclasses.dataclass
class SplitStats:
    """Row, request and positive counts of one split, overall and per module."""

    rows: int = 0
    requests: int = 0
    positives: dict[str, int] = dataclasses.field(default_factory=dict)
    rows_per_module: dict[str, int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class FeatureSpec:
    """What extraction produced and every consumer needs to read it."""

    tasks: list[Task]
    features: list[Feature]
    modules: list[str]
    splits: dict[str, SplitStats] = dataclasses.field(default_factory=dict)
    held_out_module: str | None = None
    has_groups: bool = True
    # role -> raw column name, for the roles consumers need to find again:
    # "user_id", "item_id" (joins the simulator's oracle), "timestamp", ...
    roles: dict[str, str] = dataclasses.field(default_factory=dict)
    dataset: str = ""
    source: dict[str, Any] = dataclasses.field(default_factory=dict)
    # module -> {trait: value}, as the dataset spec declares them (layout, channel, ...): how the model
    # composes the embedding of a module it did not train on (trainer.features.ModuleEmbedding)
    module_traits: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(task.name for task in self.tasks)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(feature.name for feature in self.features)

    def one_class_tasks(self, split: str) -> tuple[str, ...]:
        """The tasks whose labels in ``split`` are all negative or all positive: AUC and NDCG say nothing there.

        None when the spec has no counts for the split.
        """
        stats = self.splits.get(split)
        if stats is None or stats.rows <= 0:
            return ()
        return tuple(task for task in self.task_names if not 0 < stats.positives.get(task, 0) < stats.rows)

    def feature(self, name: str) -> Feature:
        for feature in self.features:
            if feature.name == name:
                return feature
        raise KeyError(f"feature {name!r} is not in the feature spec ({', '.join(self.feature_names)})")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpec:
        fields = dict(data)
        fields["tasks"] = [Task(**task) for task in data["tasks"]]
        fields["features"] = [Feature(**feature) for feature in data["features"]]
        fields["splits"] = {name: SplitStats(**stats) for name, stats in data.get("splits", {}).items()}
        return cls(**fields)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> FeatureSpec:
        path = Path(path)
        if path.is_dir():
            path = path / FEATURE_SPEC_FILE
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except FileNotFoundError:
            raise MissingInputError(f"no feature spec at {path}: run `ranker extract-features` first") from None
        except (KeyError, TypeError, json.JSONDecodeError) as error:
            raise ValueError(f"{path} is not a valid feature spec: {error}") from error
