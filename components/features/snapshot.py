"""Each entity's features as of the training cutoff: the tables the feature store serves.

Extraction writes, beside the examples, one Parquet table per history entity
(``<examples>/entities/<entity>.parquet``: the key columns, the entity's
``hist_*`` features computed from every event strictly before the cutoff, its
stored raw features (``history.item_features`` / ``user_features``, the latest
value before the cutoff), the user's behaviour sequences as of the cutoff and
``event_timestamp`` = the cutoff) and
``entities/snapshot.json``: the cutoff, the tables, their keys and, per feature,
the value training gives an entity with no history (count 0, the prior rate at
the cutoff) that the server uses for an unknown id::

    frame = entity_snapshot(rows, entity, spec, timeline)
    meta = snapshot_metadata(spec, timeline)

The cutoff is the start of the test split for a time split (the model never
saw anything from then on), else just after the last event.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pandas as pd
from apache_beam.io.filesystems import FileSystems

from components.data.spec import DatasetSpec
from components.features.history import Entity, Timeline, history_entities, sequence_at, smoothed_rates
from ranker_core.feature_store import EVENT_TIMESTAMP, SNAPSHOT_DIR, SNAPSHOT_FILE
from ranker_core.schema import TIMESTAMP, label_key

__all__ = ["EVENT_TIMESTAMP", "SNAPSHOT_DIR", "SNAPSHOT_FILE", "entity_snapshot", "snapshot_metadata"]


def snapshot_cutoff(spec: DatasetSpec, timeline: Timeline) -> int:
    """The test split's start for a time split, else one second after the last event."""
    if not len(timeline.timestamps):
        return 0
    if spec.split.by == "time":
        return timeline.split_boundaries(spec.split.eval_fraction, spec.split.test_fraction)[1]
    return int(timeline.timestamps[-1]) + timeline.resolution


def stored_columns(entity: Entity, spec: DatasetSpec) -> tuple[str, ...]:
    """The raw feature columns kept with the entity: the item's or the user's own features."""
    if entity.columns == (spec.columns.item_id,):
        return spec.history.item_features
    if entity.name == "user":
        return spec.history.user_features
    return ()


def entity_snapshot(frame: pd.DataFrame, entity: Entity, spec: DatasetSpec, timeline: Timeline) -> pd.DataFrame:
    """One row per key seen before the cutoff: its history features and stored columns as of the cutoff."""
    cutoff = snapshot_cutoff(spec, timeline)
    tasks = spec.task_names
    before = frame[frame[TIMESTAMP].to_numpy(dtype=np.int64) < cutoff].sort_values(TIMESTAMP, kind="stable")
    grouped = before.groupby(list(entity.columns), sort=True)
    counts = grouped.size()
    positives = grouped[[label_key(task) for task in tasks]].sum().to_numpy(dtype=np.int64)
    prior = timeline.prior_rates(np.array([cutoff], dtype=np.int64))
    rates = smoothed_rates(counts.to_numpy(dtype=np.int64), positives, prior, spec.history.prior_strength)
    table = pd.DataFrame(index=counts.index)
    table[entity.count_feature] = counts.to_numpy(dtype=np.float64)
    for index, task in enumerate(tasks):
        table[entity.rate_feature(task)] = rates[:, index]
    for column in stored_columns(entity, spec):
        table[column] = grouped[column].last()
    for sequence in entity.sequences:
        table[sequence.feature] = sequence_at(before, entity.columns, sequence, cutoff).reindex(table.index)
    table[EVENT_TIMESTAMP] = pd.Timestamp(cutoff, unit="s", tz="UTC")
    return table.reset_index()


def snapshot_metadata(spec: DatasetSpec, timeline: Timeline) -> dict[str, Any]:
    """The cutoff and, per entity, its keys, stored columns, rate features and the value of an entity with no
    history."""
    cutoff = snapshot_cutoff(spec, timeline)
    prior = timeline.prior_rates(np.array([cutoff], dtype=np.int64))[0] if len(timeline.timestamps) else None
    entities = {}
    for entity in history_entities(spec):
        defaults = {entity.count_feature: 0.0}
        for index, task in enumerate(spec.task_names):
            defaults[entity.rate_feature(task)] = float(prior[index]) if prior is not None else 0.5
        entities[entity.name] = {
            "keys": list(entity.columns),
            "table": f"{entity.name}.parquet",
            "defaults": defaults,
            "stored": list(stored_columns(entity, spec)),
            # smoothed with the prior of the cutoff's time bucket: a later row's differ (ranker skew-check)
            "rates": [entity.rate_feature(task) for task in spec.task_names],
        }
    match = [list(pair) for pair in spec.history.match]
    sequence_match = [[seq.feature, seq.column, seq.match_feature] for seq in spec.history.sequences]
    # rows before this time see the same smoothing prior as the cutoff (same time bucket)
    prior_until = cutoff + timeline.resolution
    return {
        "cutoff": cutoff,
        "prior_until": prior_until,
        "entities": entities,
        "match": match,
        "sequence_match": sequence_match,
        "dataset": spec.name,
    }


def write_table(name: str, frames: list[pd.DataFrame], output_dir: str) -> str:
    """One entity's snapshot parts as one Parquet file; returns its path."""
    path = f"{output_dir.rstrip('/')}/{SNAPSHOT_DIR}/{name}.parquet"
    buffer = io.BytesIO()
    pd.concat(frames, ignore_index=True).to_parquet(buffer, index=False)
    with FileSystems.create(path) as handle:
        handle.write(buffer.getvalue())
    return path


def write_metadata(metadata: dict[str, Any], output_dir: str) -> None:
    """Write ``entities/snapshot.json``; nothing when there is no history entity (no snapshot to store)."""
    if not metadata["entities"]:
        return
    with FileSystems.create(f"{output_dir.rstrip('/')}/{SNAPSHOT_DIR}/{SNAPSHOT_FILE}") as handle:
        handle.write((json.dumps(metadata, indent=2, sort_keys=True) + "\n").encode())
