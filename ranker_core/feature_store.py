"""Names and the derived features shared by extraction, the feature-store writer (``ranker materialize``)
and its reader (``ranker serve``)."""

import json
import os
from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np

from ranker_core.schema import LIST_SEPARATOR

FEATURE_SERVICE = "ranker"  # the Feast FeatureService holding every feature view the model reads
DEFAULT_TAG = "default"  # a field tag: the value training gives an entity with no history
MATCH_TAG = "match"  # a service tag: JSON list of [request column, stored column] equality flags
# a service tag: JSON list of [behaviour sequence, candidate column, feature]: the feature counts how often
# the candidate's value is in the sequence
SEQUENCE_MATCH_TAG = "sequence_match"
MODEL_VERSION_TAG = "model_version"  # a view and service tag: the registered model version
MATCH_PREFIX = "match_"
HISTORY_PREFIX = "hist_"  # extraction's history features (counts, rates, sequences): only the store has them
SNAPSHOT_DIR = "entities"  # <examples>/entities/: each entity's features as of the cutoff
SNAPSHOT_FILE = "snapshot.json"  # the cutoff, the entities and their defaults
EVENT_TIMESTAMP = "event_timestamp"  # each entity table's time column: the cutoff


def parse_snapshot(examples: str, text: str | None) -> dict[str, Any]:
    """The entity snapshot of an examples folder from its ``entities/snapshot.json`` text (``None``: no such file);
    a ``ValueError`` naming what is missing: a local examples folder, the snapshot, or its entities (an extraction
    whose dataset spec has no ``history``)."""
    path = f"{examples.rstrip('/')}/{SNAPSHOT_DIR}/{SNAPSHOT_FILE}"
    advice = "extract features with a spec that has `history`"
    if text is None:
        if "://" not in examples and not os.path.isdir(examples):
            raise ValueError(f"--examples {examples}: no such folder")
        raise ValueError(f"no entity snapshot at {path}: {advice}")
    snapshot = json.loads(text)
    if not snapshot.get("entities"):
        raise ValueError(f"no entity snapshot at {path} (it has no history entities): {advice}")
    return snapshot


def snapshot_features(columns: Iterable[str], keys: Iterable[str]) -> list[str]:
    """The feature columns of an entity's snapshot table: all but its keys and its time column."""
    skipped = {*keys, EVENT_TIMESTAMP}
    return [column for column in columns if column not in skipped]


def match_feature(left: str, right: str) -> str:
    """The feature that flags ``left == right`` (both non-empty)."""
    return f"{MATCH_PREFIX}{left}_{right}"


def sequence_hits(sequences: Iterable[Any], values: Iterable[Any]) -> np.ndarray:
    """How many tokens of each row's behaviour sequence equal the row's value (0 when either is empty).

    >>> sequence_hits(["l1|l2|l1", "", "l3", None], ["l1", "l1", "", "l3"]).tolist()
    [2.0, 0.0, 0.0, 0.0]
    """
    # A request's candidates share one user's sequence: count its tokens once, not once per candidate.
    counters: dict[Any, Counter[str]] = {}

    def tokens(sequence: Any) -> Counter[str]:
        if sequence not in counters:
            counters[sequence] = Counter(str(sequence).split(LIST_SEPARATOR))
        return counters[sequence]

    counts = [
        tokens(sequence)[str(value)] if sequence and value is not None and value != "" else 0
        for sequence, value in zip(sequences, values, strict=True)
    ]
    return np.asarray(counts, dtype=np.float64)
