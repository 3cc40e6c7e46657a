"""Mergeable statistics of the train split (vocabularies, numeric moments and quantiles) and split counts.

Both accumulators are filled one DataFrame batch at a time and merged, so Beam
can compute them in parallel (``CombineGlobally``)::

    stats = FeatureStatistics.of(train_frame, columns)
    stats.merge(other)
    features = stats.features(columns)   # list[ranker_core.schema.Feature]
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter

import numpy as np
import pandas as pd

from ranker_core.schema import LIST_SEPARATOR, MODULE, REQUEST_ID, Feature, SplitStats, label_key

logger = logging.getLogger(__name__)

QUANTILES = 20
SAMPLE_SIZE = 50_000  # values kept per numeric feature for its quantile boundaries


@dataclasses.dataclass(frozen=True)
class FeatureColumn:
    """A feature to describe: its kind and what the spec says about it."""

    name: str
    kind: str  # categorical | hashed | numeric | list
    transform: str = "none"
    encoding: str = "normalize"
    hash_buckets: int | None = None
    max_vocabulary: int = 10_000
    min_count: int = 1
    target: str | None = None  # a behaviour sequence: the candidate feature its tokens are values of


@dataclasses.dataclass
class NumericSketch:
    """Moments, range, missing count and a uniform bottom-k sample of a transformed numeric column."""

    count: int = 0
    missing: int = 0
    total: float = 0.0
    total_squares: float = 0.0
    low: float = np.inf
    high: float = -np.inf
    sample: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    priorities: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, dtype=np.uint64))

    def add(self, values: np.ndarray, priorities: np.ndarray) -> None:
        present = np.isfinite(values)
        self.missing += int((~present).sum())
        values, priorities = values[present], priorities[present]
        if not len(values):
            return
        self.count += len(values)
        self.total += float(values.sum())
        self.total_squares += float(np.square(values).sum())
        self.low, self.high = min(self.low, float(values.min())), max(self.high, float(values.max()))
        self._keep(np.concatenate([self.sample, values]), np.concatenate([self.priorities, priorities]))

    def merge(self, other: NumericSketch) -> None:
        self.count += other.count
        self.missing += other.missing
        self.total += other.total
        self.total_squares += other.total_squares
        self.low, self.high = min(self.low, other.low), max(self.high, other.high)
        self._keep(np.concatenate([self.sample, other.sample]), np.concatenate([self.priorities, other.priorities]))

    def _keep(self, sample: np.ndarray, priorities: np.ndarray) -> None:
        if len(sample) > SAMPLE_SIZE:
            keep = np.argpartition(priorities, SAMPLE_SIZE)[:SAMPLE_SIZE]
            sample, priorities = sample[keep], priorities[keep]
        self.sample, self.priorities = sample, priorities

    def describe(self, column: FeatureColumn) -> Feature:
        mean = self.total / self.count if self.count else 0.0
        variance = max(self.total_squares / self.count - mean**2, 0.0) if self.count else 0.0
        std = float(np.sqrt(variance))
        quantiles = None
        if len(self.sample):  # for every encoding: the trainer's numeric_encoding may override the spec's
            levels = np.linspace(0, 1, QUANTILES + 2)[1:-1]
            quantiles = [float(q) for q in np.unique(np.quantile(self.sample, levels))]
        rows = self.count + self.missing
        return Feature(
            name=column.name,
            kind="numeric",
            transform=column.transform,  # type: ignore[arg-type]
            encoding=column.encoding,  # type: ignore[arg-type]
            mean=float(mean),
            std=std if std > 0 else 1.0,  # a constant column: normalizing must not divide by zero
            min=float(self.low) if self.count else 0.0,
            max=float(self.high) if self.count else 0.0,
            quantiles=quantiles,
            missing_fraction=self.missing / rows if rows else 0.0,
        )


def row_priorities(uids: np.ndarray) -> np.ndarray:
    """A deterministic pseudo-random priority per row (splitmix64 of its uid), for bottom-k sampling."""
    z = uids.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def transformed(values: np.ndarray, transform: str) -> np.ndarray:
    values = values.astype(np.float64)
    if transform == "log1p":
        with np.errstate(invalid="ignore"):
            return np.log1p(np.maximum(values, 0.0)) * np.where(np.isnan(values), np.nan, 1.0)
    return values


@dataclasses.dataclass
class FeatureStatistics:
    """Everything the feature spec needs to know about the train split, mergeable across batches."""

    counters: dict[str, Counter] = dataclasses.field(default_factory=dict)
    missing: Counter = dataclasses.field(default_factory=Counter)
    rows: int = 0
    numeric: dict[str, NumericSketch] = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, frame: pd.DataFrame, columns: list[FeatureColumn], uid_column: str) -> FeatureStatistics:
        stats = cls(rows=len(frame))
        priorities = row_priorities(frame[uid_column].to_numpy())
        for column in columns:
            values = frame[column.name]
            if column.kind == "numeric":
                sketch = NumericSketch()
                sketch.add(transformed(values.to_numpy(), column.transform), priorities)
                stats.numeric[column.name] = sketch
                continue
            stats.missing[column.name] = int((values == "").sum())
            if column.kind == "categorical":
                stats.counters[column.name] = Counter(values[values != ""].value_counts().to_dict())
            elif column.kind == "list":
                tokens = values[values != ""].str.split(LIST_SEPARATOR).explode()
                stats.counters[column.name] = Counter(tokens.value_counts().to_dict())
        return stats

    def valueless(self, columns: list[FeatureColumn]) -> list[FeatureColumn]:
        """The ``columns`` that are null (or empty) in every row counted; none when no row was counted."""
        if not self.rows:
            return []
        return [column for column in columns if not self._has_values(column)]

    def _has_values(self, column: FeatureColumn) -> bool:
        if column.kind == "numeric":
            return self.numeric.get(column.name, NumericSketch()).count > 0
        return self.missing.get(column.name, 0) < self.rows

    def merge(self, other: FeatureStatistics) -> FeatureStatistics:
        self.rows += other.rows
        self.missing.update(other.missing)
        for name, counter in other.counters.items():
            self.counters.setdefault(name, Counter()).update(counter)
        for name, sketch in other.numeric.items():
            self.numeric.setdefault(name, NumericSketch()).merge(sketch)
        return self

    def features(self, columns: list[FeatureColumn]) -> list[Feature]:
        """One :class:`~ranker_core.schema.Feature` per column, in the given order; a warning names each column
        that is null in every row (a categorical or list one gets an empty vocabulary)."""
        for column in self.valueless(columns):
            logger.warning(
                "feature %r (%s) is null in all %d rows of the train split: the model can learn nothing from it",
                column.name,
                column.kind,
                self.rows,
            )
        described = []
        for column in columns:
            if column.kind == "numeric":
                described.append(self.numeric.get(column.name, NumericSketch()).describe(column))
                continue
            missing = self.missing.get(column.name, 0) / self.rows if self.rows else 0.0
            feature = Feature(name=column.name, kind=column.kind, missing_fraction=missing)  # type: ignore[arg-type]
            feature.target = column.target
            if column.kind == "hashed":
                feature.hash_buckets = column.hash_buckets
            else:
                counts = self.counters.get(column.name, Counter())
                ranked = sorted((item for item in counts.items() if item[1] >= column.min_count), key=_by_count)
                feature.vocabulary = [str(value) for value, _ in ranked[: column.max_vocabulary]]
            described.append(feature)
        return described


def _by_count(item: tuple[str, int]) -> tuple[int, str]:
    return -item[1], str(item[0])


@dataclasses.dataclass
class SplitCounts:
    """Rows, requests, positives and rows per module of every split, mergeable across shards.

    Requests are counted per batch, which is exact because extraction batches
    whole requests together (rows are sharded by request).
    """

    splits: dict[str, SplitStats] = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, frame: pd.DataFrame, tasks: tuple[str, ...], split_column: str) -> SplitCounts:
        counts = cls()
        for split, rows in frame.groupby(split_column, sort=True):
            counts.splits[str(split)] = SplitStats(
                rows=len(rows),
                requests=int(rows[REQUEST_ID].nunique()),
                positives={task: int(rows[label_key(task)].sum()) for task in tasks},
                rows_per_module={str(k): int(v) for k, v in rows[MODULE].value_counts().sort_index().items()},
            )
        return counts

    def merge(self, other: SplitCounts) -> SplitCounts:
        for split, stats in other.splits.items():
            mine = self.splits.setdefault(split, SplitStats())
            mine.rows += stats.rows
            mine.requests += stats.requests
            for task, positives in stats.positives.items():
                mine.positives[task] = mine.positives.get(task, 0) + positives
            for module, rows in stats.rows_per_module.items():
                mine.rows_per_module[module] = mine.rows_per_module.get(module, 0) + rows
        return self
