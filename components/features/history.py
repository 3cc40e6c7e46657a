"""Point-in-time engagement aggregates, vectorized with NumPy.

For every impression, an entity's history is what happened to that entity
(a listing, a shop, a category, a user, a user in a category) in impressions
STRICTLY BEFORE the impression's timestamp: events at the same timestamp are
not visible, so a request never sees its own labels or anything later::

    counts, positives = prior_events(keys, timestamps, labels)
    rates = smoothed_rates(counts, positives, prior_rates, prior_strength=10.0)

Rates are Bayesian-smoothed toward a prior that is itself point-in-time: the
global rate of every event before the impression (:class:`Timeline`), with a
Laplace start so the first impressions get 0.5 instead of a division by zero.

The user's behaviour sequences (``history.sequences``) follow the same rule: the
values of the user's last positives strictly before the impression, most recent
first, joined as a list feature::

    recent_positives(keys, timestamps, positive, values, length=20)   # ["l7|l3", "", ...]
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

from components.data.spec import DatasetSpec, SequenceSpec
from ranker_core.feature_store import HISTORY_PREFIX, MATCH_PREFIX, sequence_hits
from ranker_core.schema import LIST_SEPARATOR, MODULE, TIMESTAMP, label_key


@dataclasses.dataclass(frozen=True)
class Entity:
    """A history key: one or more raw columns, the name its features carry, and (the user) its sequences."""

    name: str
    columns: tuple[str, ...]
    sequences: tuple[SequenceSpec, ...] = ()

    def feature_names(self, tasks: tuple[str, ...]) -> list[str]:
        rates = [self.count_feature, *(self.rate_feature(task) for task in tasks)]
        return rates + [sequence.feature for sequence in self.sequences]

    @property
    def count_feature(self) -> str:
        return f"{HISTORY_PREFIX}{self.name}_impressions"

    def rate_feature(self, task: str) -> str:
        return f"{HISTORY_PREFIX}{self.name}_{task}_rate"


def history_entities(spec: DatasetSpec) -> list[Entity]:
    """The entities a spec asks history for: item-side columns, the user overall and per column."""
    if not spec.history_enabled:
        return []
    sequences = {"user": spec.history.sequences}
    return [
        Entity(name, columns, sequences.get(name, ()))
        for name, columns in spec.history.entity_keys(spec.columns.user_id)
    ]


def match_features(spec: DatasetSpec) -> dict[str, tuple[str, str]]:
    """Feature name -> the two columns whose equality it flags (empty values never match)."""
    return {f"{MATCH_PREFIX}{left}_{right}": (left, right) for left, right in spec.history.match}


def add_match_features(frame: pd.DataFrame, spec: DatasetSpec) -> None:
    """The ``match_*`` flags, and per behaviour sequence how often the candidate's value is in it."""
    for name, (left, right) in match_features(spec).items():
        left_values, right_values = frame[left].to_numpy(), frame[right].to_numpy()
        frame[name] = ((left_values == right_values) & (left_values != "")).astype(np.float64)
    for sequence in spec.history.sequences:
        frame[sequence.match_feature] = sequence_hits(frame[sequence.feature], frame[sequence.column])


def entity_codes(frame: pd.DataFrame, columns: tuple[str, ...]) -> np.ndarray:
    """One int64 code per distinct value (tuple) of the key columns."""
    if len(columns) == 1:
        return pd.factorize(frame[columns[0]])[0].astype(np.int64)
    return frame.groupby(list(columns), sort=False).ngroup().to_numpy(dtype=np.int64)


def prior_events(keys: np.ndarray, timestamps: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Impressions and positives per task of the same key strictly before each row's timestamp.

    ``keys`` (n,) int codes, ``timestamps`` (n,) ints, ``labels`` (n, tasks) 0/1.
    Returns counts (n,) and positives (n, tasks) in the rows' original order.

    Example::

        prior_events(np.array([0, 0, 0]), np.array([1, 1, 2]), np.array([[1], [0], [1]]))
        # (array([0, 0, 2]), array([[0], [0], [1]]))
    """
    size = len(keys)
    order = np.lexsort((timestamps, keys))
    key_start, block_start = _run_starts(keys[order], timestamps[order])
    cumulative = np.zeros((size + 1, labels.shape[1]), dtype=np.int64)
    np.cumsum(labels[order], axis=0, out=cumulative[1:])
    counts, positives = np.empty(size, dtype=np.int64), np.empty_like(cumulative[1:])
    counts[order] = block_start - key_start
    positives[order] = cumulative[block_start] - cumulative[key_start]
    return counts, positives


def _run_starts(sorted_keys: np.ndarray, sorted_times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows sorted by (key, time): the position where each row's key starts, and where its
    (key, time) block starts; the rows in between are the key's events strictly before the row."""
    index = np.arange(len(sorted_keys))
    new_key = np.ones(len(sorted_keys), dtype=bool)
    new_key[1:] = sorted_keys[1:] != sorted_keys[:-1]
    new_block = new_key.copy()
    new_block[1:] |= sorted_times[1:] != sorted_times[:-1]
    return np.maximum.accumulate(np.where(new_key, index, 0)), np.maximum.accumulate(np.where(new_block, index, 0))


def recent_positives(
    keys: np.ndarray, timestamps: np.ndarray, positive: np.ndarray, values: np.ndarray, length: int
) -> list[str]:
    """Per row, the ``values`` of the last ``length`` positive rows of its key STRICTLY before its
    timestamp, most recent first, joined by ``LIST_SEPARATOR`` ("" when there are none).

    Positives at one timestamp are ordered by value, so the result does not depend on row order.

    Example::

        recent_positives(np.array([0, 0, 0, 0]), np.array([1, 2, 2, 3]), np.array([1, 1, 0, 0]),
                         np.array(["a", "b", "c", "d"]), length=5)
        # ["", "a", "a", "b|a"]
    """
    values = np.asarray(values).astype(str)
    positive = positive.astype(bool) & (values != "")  # an empty value is no token
    order = np.lexsort((values, timestamps, keys))
    key_start, block_start = _run_starts(keys[order], timestamps[order])
    positives_before = np.r_[0, np.cumsum(positive[order])]  # positives at sorted positions < i
    positive_values = values[order][positive[order]]
    first, stop = positives_before[key_start], positives_before[block_start]
    joined: dict[tuple[int, int], str] = {}  # one string per (key, timestamp) block
    result = [""] * len(keys)
    for row, low, high in zip(order.tolist(), np.maximum(first, stop - length).tolist(), stop.tolist(), strict=True):
        if high > low:
            if (low, high) not in joined:
                joined[(low, high)] = LIST_SEPARATOR.join(positive_values[low:high][::-1])
            result[row] = joined[(low, high)]
    return result


def sequence_at(frame: pd.DataFrame, columns: tuple[str, ...], sequence: SequenceSpec, cutoff: int) -> pd.Series:
    """Each key's sequence as of ``cutoff`` (later than every row of ``frame``), indexed by the key:
    what :func:`recent_positives` gives an impression of that key at ``cutoff``."""
    label = label_key(sequence.task)
    keys = frame[list(columns)].drop_duplicates()
    probes = keys.assign(**{TIMESTAMP: cutoff, label: 0, sequence.column: ""})
    rows = pd.concat([frame[[*columns, TIMESTAMP, label, sequence.column]], probes], ignore_index=True)
    values = recent_positives(
        entity_codes(rows, columns),
        rows[TIMESTAMP].to_numpy(dtype=np.int64),
        rows[label].to_numpy(dtype=np.int64),
        rows[sequence.column].to_numpy(),
        sequence.length,
    )
    index = pd.MultiIndex.from_frame(keys) if len(columns) > 1 else pd.Index(keys[columns[0]])
    return pd.Series(values[len(frame) :], index=index, dtype=object)


def smoothed_rates(
    counts: np.ndarray, positives: np.ndarray, prior_rates: np.ndarray, prior_strength: float
) -> np.ndarray:
    """(positives + strength * prior) / (counts + strength), per row and task."""
    return (positives + prior_strength * prior_rates) / (counts[:, None] + prior_strength)


@dataclasses.dataclass
class Timeline:
    """Per time bucket: impressions, positives per task and rows that take part in the split.

    Mergeable (one per batch, combined globally), so global point-in-time
    priors and time-quantile split boundaries need no single-machine pass.
    It is a side input of every worker, so its size is bounded by bucketing
    time (``resolution`` seconds): a year of 60-second buckets is ~0.5M entries.
    Priors then use the buckets strictly before an impression's bucket, which
    is still strictly before the impression.
    """

    timestamps: np.ndarray  # sorted unique int64 bucket starts
    rows: np.ndarray  # int64 per bucket
    positives: np.ndarray  # int64 (buckets, tasks)
    split_rows: np.ndarray  # int64 per bucket: rows outside the held-out module
    resolution: int = 1  # seconds per bucket

    @classmethod
    def of(cls, frame: pd.DataFrame, tasks: tuple[str, ...], held_out_module: str | None, resolution: int = 1):
        labels = frame[[label_key(task) for task in tasks]].to_numpy(dtype=np.int64)
        in_split = (frame[MODULE] != held_out_module).to_numpy() if held_out_module else np.ones(len(frame), bool)
        buckets = _bucket(frame[TIMESTAMP].to_numpy(dtype=np.int64), resolution)
        ones = np.ones(len(frame), np.int64)
        return cls._aggregate(buckets, ones, labels, in_split.astype(np.int64), resolution)

    @classmethod
    def merge(cls, timelines: list[Timeline], tasks: int, resolution: int = 1) -> Timeline:
        if not timelines:
            empty = np.zeros(0, np.int64)
            return cls(empty, empty, np.zeros((0, tasks), np.int64), empty, resolution)
        if any(timeline.resolution != timelines[0].resolution for timeline in timelines):
            raise ValueError("cannot merge timelines of different resolutions")
        return cls._aggregate(
            np.concatenate([t.timestamps for t in timelines]),
            np.concatenate([t.rows for t in timelines]),
            np.concatenate([t.positives for t in timelines]),
            np.concatenate([t.split_rows for t in timelines]),
            timelines[0].resolution,
        )

    @classmethod
    def _aggregate(
        cls, buckets: np.ndarray, rows: np.ndarray, positives: np.ndarray, split_rows: np.ndarray, resolution: int
    ) -> Timeline:
        unique, inverse = np.unique(buckets, return_inverse=True)
        summed_rows = np.bincount(inverse, weights=rows, minlength=len(unique)).astype(np.int64)
        summed_split = np.bincount(inverse, weights=split_rows, minlength=len(unique)).astype(np.int64)
        summed_positives = np.zeros((len(unique), positives.shape[1]), dtype=np.int64)
        np.add.at(summed_positives, inverse, positives)
        return cls(unique, summed_rows, summed_positives, summed_split, resolution)

    def prior_rates(self, timestamps: np.ndarray) -> np.ndarray:
        """The global rate of each task over the buckets before each timestamp's bucket (Laplace-smoothed)."""
        before = np.searchsorted(self.timestamps, _bucket(timestamps, self.resolution), side="left")
        rows = np.concatenate([[0], np.cumsum(self.rows)])[before]
        positives = np.vstack([np.zeros((1, self.positives.shape[1]), np.int64), np.cumsum(self.positives, axis=0)])
        return (positives[before] + 1.0) / (rows[:, None] + 2.0)

    def split_boundaries(self, eval_fraction: float, test_fraction: float) -> tuple[int, int]:
        """Timestamps (eval_start, test_start): train is before eval_start, test from test_start on.

        Boundaries fall between distinct timestamps, so rows (and requests) that
        share a timestamp always land in the same split.
        """
        cumulative = np.cumsum(self.split_rows)
        total = cumulative[-1] if len(cumulative) else 0
        return (
            self._first_after(cumulative, (1 - eval_fraction - test_fraction) * total),
            self._first_after(cumulative, (1 - test_fraction) * total),
        )

    def _first_after(self, cumulative: np.ndarray, rows_before: float) -> int:
        """The first timestamp such that at most ``rows_before`` rows come before it."""
        if not len(self.timestamps):
            return 0
        index = int(np.searchsorted(cumulative, rows_before + 1e-9, side="right"))
        return int(self.timestamps[index]) if index < len(self.timestamps) else int(self.timestamps[-1]) + 1


def _bucket(timestamps: np.ndarray, resolution: int) -> np.ndarray:
    return timestamps - np.mod(timestamps, resolution) if resolution > 1 else timestamps


def entity_history(
    frame: pd.DataFrame, entity: Entity, tasks: tuple[str, ...], timeline: Timeline, prior_strength: float
) -> pd.DataFrame:
    """The entity's point-in-time features for every row of ``frame`` (all rows of any key in it)."""
    timestamps = frame[TIMESTAMP].to_numpy(dtype=np.int64)
    labels = frame[[label_key(task) for task in tasks]].to_numpy(dtype=np.int64)
    keys = entity_codes(frame, entity.columns)
    counts, positives = prior_events(keys, timestamps, labels)
    rates = smoothed_rates(counts, positives, timeline.prior_rates(timestamps), prior_strength)
    features: dict[str, Any] = {entity.count_feature: counts.astype(np.float64)}
    features.update({entity.rate_feature(task): rates[:, i] for i, task in enumerate(tasks)})
    for sequence in entity.sequences:
        positive = frame[label_key(sequence.task)].to_numpy(dtype=np.int64)
        values = frame[sequence.column].to_numpy()
        features[sequence.feature] = recent_positives(keys, timestamps, positive, values, sequence.length)
    return pd.DataFrame(features, index=frame.index)
