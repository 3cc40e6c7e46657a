"""An online store to serve from: extracted examples, a tiny model trained on them, and their Feast repo.

Shared by the serving tests (``ranker serve --feature-store`` in a process) and
the container tests (the serving image with the repo mounted)::

    store = materialized_store(tmp_path)       # {"examples", "model", "repo", "summary"}
    ids_only, explicit = extraction_requests(store["examples"], OnlineFeatures(...), count=5)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from components.features.feature_store import MaterializeConfig, materialize
from components.features.options import BeamOptions
from components.features.pipeline import ExtractionConfig, extract_features
from ranker_core.schema import REQUEST_ID, FeatureSpec
from serving.feature_store import OnlineFeatures
from serving.skew_check import _json, ids_only_requests, unchanged_rows
from tests.data.impressions import SEQUENCES, impressions_frame, simulator_spec_with, write_parquet

LOCAL = BeamOptions(runner="DirectRunner", direct_num_workers=1, direct_running_mode="in_memory")
# The stored raw features of a listing; its age (listing_age_days) is not stored: it differs between impressions.
ITEM_FEATURES = ["category", "subcategory", "shop_id", "price", "rating", "num_reviews", "tags"]


def static_entities(frame: pd.DataFrame) -> pd.DataFrame:
    """The same stored raw features for a listing (and a user's country) in every row, as a catalog would
    have, and one device per request (a request's context)."""
    frame = frame.copy()
    frame["tags"] = frame["tags"].map("|".join)
    for column in ITEM_FEATURES:
        frame[column] = frame.groupby("listing_id")[column].transform("first")
    frame["user_country"] = frame.groupby("user_id")["user_country"].transform("first")
    frame["device"] = frame.groupby("request_id")["device"].transform("first")
    return frame


def materialized_store(root: Path) -> dict:
    """Examples extracted from static-entity impressions, a tiny model trained on them, their materialized repo."""
    from trainer.config import TrainerConfig
    from trainer.train import train_and_export

    raw = static_entities(impressions_frame(n_requests=120, candidates=6, seed=3))
    examples = root / "examples"
    spec = simulator_spec_with(root, sequences=SEQUENCES)  # the user's sequences are served from the store too
    extract_features(ExtractionConfig(str(write_parquet(raw, root / "raw")), spec, str(examples), beam=LOCAL))
    config = TrainerConfig(epochs=1, batch_size=256, expert_units=[16, 8], tower_units=[8], embedding_dim=4)
    train_and_export(examples, root / "model", config)
    summary = materialize(MaterializeConfig(examples=str(examples), repo=str(root / "repo"), model_version="7"))
    return {"examples": examples, "model": root / "model", "repo": root / "repo", "summary": summary}


def unchanged_test_rows(examples: Path, requests: int | None = None) -> dict[str, np.ndarray]:
    """The test split's rows whose entities are unchanged since the cutoff (the store holds their features),
    of the first ``requests`` requests (all when None)."""
    from trainer.examples import read_split

    snapshot = json.loads((examples / "entities" / "snapshot.json").read_text())
    test = read_split(examples, "test", FeatureSpec.load(examples))
    keep = unchanged_rows(test, snapshot)
    kept = list(dict.fromkeys(test[REQUEST_ID][keep].tolist()))[:requests]
    keep &= np.isin(test[REQUEST_ID], kept)
    return {name: values[keep] for name, values in test.items()}


def extraction_requests(examples: Path, features: OnlineFeatures, count: int) -> tuple[list[dict], list[dict]]:
    """Test requests with entities unchanged since the cutoff: with ids only, and with the extraction's features."""
    spec = FeatureSpec.load(examples)
    rows = unchanged_test_rows(examples, count)
    requests = list(dict.fromkeys(rows[REQUEST_ID].tolist()))
    ids_only = ids_only_requests(rows, features, spec)
    explicit = []
    for request, instance in zip(requests, ids_only, strict=True):
        index = np.flatnonzero(rows[REQUEST_ID] == request)
        names = [name for name in spec.feature_names if name not in instance["context"]]
        candidates = {name: [_json(value) for value in rows[name][index]] for name in names}
        assert candidates[features.item_key] == instance["candidates"][features.item_key]
        explicit.append({"context": instance["context"], "candidates": candidates})
    return ids_only, explicit
