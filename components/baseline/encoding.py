"""Turn extracted-example columns into a LightGBM feature matrix, driven by the feature spec.

* numeric features go in as they are (NaN is LightGBM's native missing value;
  trees are invariant to the spec's monotone transforms, so none is applied);
* categorical features become LightGBM categorical codes, the index in the
  spec's vocabulary (unknown and empty values become missing);
* list features become one 0/1 column per vocabulary token (the first
  ``max_list_tokens`` of the vocabulary), since one categorical code cannot
  hold a set;
* hashed features (user and item ids) are dropped by default: with millions of
  ids a categorical split on them memorises the training period and LightGBM's
  categorical handling slows down with cardinality, while the examples already
  carry their history as point-in-time numeric aggregates. ``hashed="hash"``
  keeps them as categorical codes of FarmHash buckets (the spec's count);
* ``module_name`` is a categorical code over ``spec.modules``, used by the
  global model only (a per-module model sees one module);
* each module trait the spec declares (``module_traits``: layout, channel, ...)
  is one more categorical column of the global model, the module's value of the
  trait: the same information the MMoE composes an unseen module's embedding
  from, so the global model can rank the held-out module by what it shares with
  the others (a value no trained module has is missing, like an unknown module);
* the reserved keys ``position``, ``request_id`` and ``timestamp`` are never
  features, even when a hand-written spec lists them: the logged position is
  the production ranker's verdict, and a ranker that reads it is judged on it.

::

    encoder = FeatureEncoder.from_spec(spec)
    matrix = encoder.encode(read_split(examples_dir, "train", spec))
    matrix.shape            # (rows, len(encoder.columns))
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from ranker_core.schema import (
    LIST_SEPARATOR,
    MODULE,
    POSITION,
    REQUEST_ID,
    TIMESTAMP,
    Feature,
    FeatureSpec,
    trait_names,
    trait_values,
)
from ranker_core.step_configs import HashedPolicy

NEVER_FEATURES = (POSITION, REQUEST_ID, TIMESTAMP)
"""Reserved example keys no LightGBM column is made from."""
ColumnKind = Literal["numeric", "categorical", "token"]


@dataclasses.dataclass(frozen=True)
class EncodedColumn:
    """One column of the LightGBM matrix and the spec feature it comes from."""

    name: str
    source: str
    kind: ColumnKind
    categories: tuple[str, ...] = ()
    hash_buckets: int = 0
    token: str = ""
    # (source value, category) pairs the source values go through first: a module trait's value per module
    lookup: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass
class FeatureEncoder:
    """The spec-driven mapping from example columns to LightGBM's matrix (see the module docstring)."""

    columns: list[EncodedColumn]
    dropped: dict[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_spec(cls, spec: FeatureSpec, hashed: HashedPolicy = "drop", max_list_tokens: int = 64) -> FeatureEncoder:
        if hashed not in ("drop", "hash"):
            raise ValueError(f"hashed feature policy must be 'drop' or 'hash', got {hashed!r}")
        columns = [EncodedColumn(_safe_name(MODULE), MODULE, "categorical", categories=tuple(spec.modules))]
        columns += _trait_columns(spec)
        dropped: dict[str, str] = {}
        for feature in spec.features:
            if feature.name in NEVER_FEATURES:
                dropped[feature.name] = "reserved example key: never a feature"
                continue
            if feature.kind == "hashed" and hashed == "drop":
                dropped[feature.name] = "hashed id: high-cardinality ids overfit trees (hashed='hash' keeps them)"
                continue
            columns.extend(_columns_of(feature, max_list_tokens))
        return cls(columns, dropped)

    @property
    def names(self) -> list[str]:
        return [column.name for column in self.columns]

    @property
    def categorical_names(self) -> list[str]:
        return [column.name for column in self.columns if column.kind == "categorical"]

    def without_module(self) -> list[int]:
        """Indices of the columns a per-module model uses (all but the module code)."""
        return [i for i, column in enumerate(self.columns) if column.source != MODULE]

    def encode(self, examples: Mapping[str, np.ndarray]) -> np.ndarray:
        """A float64 matrix, one column per :attr:`columns` entry; a missing source column is an error."""
        missing = sorted({column.source for column in self.columns} - set(examples))
        if missing:
            raise KeyError(f"example columns lack {', '.join(missing)} that the baseline was trained on")
        rows = len(examples[MODULE])
        matrix = np.empty((rows, len(self.columns)), dtype=np.float64, order="F")  # filled column by column
        tokens = self._token_columns()
        for i, column in enumerate(self.columns):
            if column.kind == "token":
                continue
            matrix[:, i] = _encode_column(column, examples[column.source])
        for source, indices in tokens.items():
            vocabulary = [self.columns[i].token for i in indices]
            matrix[:, indices] = _multi_hot(examples[source], vocabulary)
        return matrix

    def _token_columns(self) -> dict[str, list[int]]:
        tokens: dict[str, list[int]] = {}
        for i, column in enumerate(self.columns):
            if column.kind == "token":
                tokens.setdefault(column.source, []).append(i)
        return tokens

    def to_dict(self) -> dict[str, Any]:
        return {"columns": [dataclasses.asdict(column) for column in self.columns], "dropped": self.dropped}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureEncoder:
        columns = [
            EncodedColumn(
                **{
                    **column,
                    "categories": tuple(column.get("categories", ())),
                    "lookup": tuple(tuple(pair) for pair in column.get("lookup", ())),
                }
            )
            for column in data["columns"]
        ]
        return cls(columns, dict(data.get("dropped", {})))


def _trait_columns(spec: FeatureSpec) -> list[EncodedColumn]:
    """One categorical column per declared module trait; its categories are the trained modules' values."""
    traits = spec.module_traits
    columns = []
    for trait in trait_names(traits):
        trained = trait_values(traits, trait, spec.modules)
        lookup = tuple((module, values[trait]) for module, values in sorted(traits.items()) if trait in values)
        name = _safe_name(f"{MODULE}_{trait}")
        columns.append(EncodedColumn(name, MODULE, "categorical", categories=tuple(trained), lookup=lookup))
    return columns


def _columns_of(feature: Feature, max_list_tokens: int) -> list[EncodedColumn]:
    name = _safe_name(feature.name)
    if feature.kind == "numeric":
        return [EncodedColumn(name, feature.name, "numeric")]
    if feature.kind == "categorical":
        return [EncodedColumn(name, feature.name, "categorical", categories=tuple(feature.vocabulary or ()))]
    if feature.kind == "hashed":
        if not feature.hash_buckets:
            raise ValueError(f"hashed feature {feature.name!r} has no hash_buckets in the feature spec")
        return [EncodedColumn(name, feature.name, "categorical", hash_buckets=int(feature.hash_buckets))]
    tokens = (feature.vocabulary or [])[:max_list_tokens]
    return [EncodedColumn(f"{name}__{i}", feature.name, "token", token=token) for i, token in enumerate(tokens)]


def _safe_name(name: str) -> str:
    """LightGBM refuses JSON special characters in feature names."""
    return re.sub(r"[^0-9A-Za-z_]", "_", name)


def _encode_column(column: EncodedColumn, values: np.ndarray) -> np.ndarray:
    if column.kind == "numeric":
        try:
            return np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(f"numeric feature {column.source!r} holds non-numeric values: {error}") from error
    if column.hash_buckets:
        codes = _hash_codes(values, column.hash_buckets)
    else:
        values = np.asarray(values, dtype=object)
        if column.lookup:
            values = pd.Series(values).map(dict(column.lookup)).to_numpy(dtype=object)
        codes = pd.Categorical(values, categories=list(column.categories)).codes
    codes = codes.astype(np.float64)
    codes[codes < 0] = np.nan  # out of vocabulary or empty: missing
    return codes


def _hash_codes(values: np.ndarray, buckets: int) -> np.ndarray:
    import tensorflow as tf

    strings = np.asarray(values, dtype=object).astype(str)
    codes = tf.strings.to_hash_bucket_fast(strings, buckets).numpy()
    codes[strings == ""] = -1
    return codes


def _multi_hot(values: np.ndarray, vocabulary: Sequence[str]) -> np.ndarray:
    """0/1 per vocabulary token; each distinct list is split once (lists repeat a lot)."""
    codes, lists = pd.factorize(np.asarray(values, dtype=object))
    index = {token: j for j, token in enumerate(vocabulary)}
    rows = np.zeros((len(lists) + 1, len(vocabulary)), dtype=np.float64)  # the last row: missing (code -1)
    for row, text in enumerate(lists):
        for token in str(text).split(LIST_SEPARATOR) if text else ():
            column = index.get(token)
            if column is not None:
                rows[row, column] = 1.0
    return rows[codes]
