"""The Feast feature repository of the entity snapshot, and ``ranker materialize``.

Extraction writes each entity's features as of the cutoff (``snapshot.py``);
:func:`materialize` turns them into Feast objects and pushes them to the online
store, tagged with the model version, so the served model and its features are
one snapshot::

    materialize(MaterializeConfig(examples="work_dir/examples", repo="work_dir/feature_repo", model_version="3"))

Objects: one Feast ``Entity`` per key column (``user_id``, ``listing_id``,
``shop_id``, ``category``), one ``FeatureView`` per history entity (its
``hist_*`` features, whose ``default`` tag is what training gives an entity
with no history, and the item's or user's stored raw features) over a
``FileSource`` copied into the repo, and the ``ranker`` ``FeatureService``
(tags: model version, cutoff, the ``match`` and ``sequence_match`` pairs the server computes).

A repo without ``feature_store.yaml`` gets the embedded default: file offline
store and SQLite online store under ``<repo>/data``. For GCP, write your own
``feature_store.yaml`` (BigQuery offline; Bigtable, Datastore or Vertex AI
online) before the first run; this module never overwrites it.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from apache_beam.io.filesystems import FileSystems
from pydantic import field_validator

from components.features.snapshot import EVENT_TIMESTAMP, SNAPSHOT_DIR, SNAPSHOT_FILE
from ranker_core.cli_support import InvalidValueError, MissingInputError
from ranker_core.feature_store import (
    DEFAULT_TAG,
    FEATURE_SERVICE,
    MATCH_TAG,
    MODEL_VERSION_TAG,
    SEQUENCE_MATCH_TAG,
    parse_snapshot,
    snapshot_features,
)
from ranker_core.settings import Settings, SettingsConfigDict, env_field

logger = logging.getLogger(__name__)

EMBEDDED_CONFIG = """\
# The embedded default written by `ranker materialize`: no server, files and SQLite under data/.
# On GCP use offline_store {type: bigquery} and online_store {type: bigtable | datastore | ...}.
project: ranker
provider: local
registry: data/registry.db
online_store: {type: sqlite, path: data/online_store.db}
offline_store: {type: file}
entity_key_serialization_version: 3
"""


class NoSnapshotError(MissingInputError):
    """The extraction has no entity snapshot (its dataset spec has no ``history``): nothing to materialize."""


class MaterializeConfig(Settings):
    """Where the snapshot is (an examples folder), the Feast repo, and the model version it belongs to.

    ``MaterializeConfig.load({"examples": ...})``: flags > environment (``RANKER_FEATURE_STORE``,
    ``RANKER_MODEL_VERSION``) > defaults.
    """

    model_config = SettingsConfigDict(frozen=True)

    examples: str = ""
    repo: str = env_field("feature_repo", "RANKER_FEATURE_STORE")
    model_version: str = env_field("", "RANKER_MODEL_VERSION")

    @field_validator("repo")
    @classmethod
    def _local(cls, repo: str) -> str:
        if "://" in repo:  # pathlib would make a local folder named "gs:" of it
            raise ValueError(
                f"{repo}: the Feast repo is a local folder (on Vertex AI, a /gcs/ path); its feature_store.yaml "
                "may name a remote online store"
            )
        return repo


def ensure_repo(repo: Path) -> Path:
    """The repo folder, with the embedded ``feature_store.yaml`` unless one is already there (a path that is not a
    folder, or cannot become one, is an :class:`InvalidValueError`)."""
    if repo.exists() and not repo.is_dir():
        raise InvalidValueError(f"--feature-store {repo}: a file, not a folder (the Feast repo is a folder)")
    try:
        (repo / "data" / "offline").mkdir(parents=True, exist_ok=True)
    except OSError as error:  # a parent that is a file, no permission, ...
        raise InvalidValueError(f"--feature-store {repo}: cannot create the repo folder ({error.strerror})") from None
    config = repo / "feature_store.yaml"
    if not config.exists():
        config.write_text(EMBEDDED_CONFIG)
    return repo


def read_snapshot(examples: str) -> dict[str, Any]:
    """The extraction's ``entities/snapshot.json``; a :class:`NoSnapshotError` when there is none or it holds no
    entity (:func:`ranker_core.feature_store.parse_snapshot`)."""
    path = f"{examples.rstrip('/')}/{SNAPSHOT_DIR}/{SNAPSHOT_FILE}"
    text = None
    if FileSystems.exists(path):
        with FileSystems.open(path) as handle:
            text = handle.read().decode()
    try:
        return parse_snapshot(examples, text)
    except ValueError as error:
        raise NoSnapshotError(str(error)) from None


def copy_table(examples: str, table: str, repo: Path) -> Path:
    """The entity's Parquet snapshot copied into the repo (the FileSource must outlive the run's artifacts)."""
    target = repo / "data" / "offline" / table
    with FileSystems.open(f"{examples.rstrip('/')}/{SNAPSHOT_DIR}/{table}") as source:
        target.write_bytes(source.read())
    return target


def _field(name: str, dtype: Any, default: float | None) -> Any:
    from feast import Field
    from feast.types import Float64, String

    tags = {DEFAULT_TAG: repr(default)} if default is not None else {}
    return Field(name=name, dtype=Float64 if pd.api.types.is_numeric_dtype(dtype) else String, tags=tags)


def feature_view(name: str, info: dict[str, Any], table: Path, entities: dict[str, Any], tags: dict[str, str]) -> Any:
    """One entity's ``FeatureView`` over its snapshot table (no TTL: the snapshot stays valid until replaced)."""
    from feast import FeatureView, FileSource

    frame = pd.read_parquet(table)
    keys = list(info["keys"])
    schema = [
        _field(column, frame[column].dtype, info["defaults"].get(column))
        for column in snapshot_features(frame.columns, keys)
    ]
    return FeatureView(
        name=name,
        entities=[entities[key] for key in keys],
        schema=schema,
        source=FileSource(name=f"{name}_snapshot", path=str(table.resolve()), timestamp_field=EVENT_TIMESTAMP),
        ttl=timedelta(0),
        online=True,
        tags=tags,
    )


def drop_views(store: Any) -> None:
    """Delete the repo's feature views and services, and their online tables, before a snapshot is materialized.

    Materializing writes the rows of the snapshot's entities only: an entity that only an earlier snapshot
    had would keep that snapshot's row (with an older snapshot: features from after its cutoff). Applied
    afresh, each view starts from an empty table, so the store holds exactly one snapshot. A server reading
    the repo meanwhile sees no service (503s, or refused at start-up) until the new one is applied.
    """
    stale = [*store.list_feature_services(), *store.list_feature_views()]
    if stale:
        store.apply([], objects_to_delete=stale, partial=False)


def materialize(config: MaterializeConfig) -> dict[str, Any]:
    """Register the snapshot's feature views in the Feast repo and push them to its online store."""
    from feast import Entity, FeatureService, FeatureStore, ValueType

    snapshot = read_snapshot(config.examples)
    repo = ensure_repo(Path(config.repo))
    cutoff = datetime.fromtimestamp(snapshot["cutoff"], tz=UTC)
    tags = {MODEL_VERSION_TAG: config.model_version, "cutoff": cutoff.isoformat()}
    keys = {key for info in snapshot["entities"].values() for key in info["keys"]}
    entities = {key: Entity(name=key, join_keys=[key], value_type=ValueType.STRING) for key in sorted(keys)}
    views = [
        feature_view(name, info, copy_table(config.examples, info["table"], repo), entities, tags)
        for name, info in snapshot["entities"].items()
    ]
    service = FeatureService(
        name=FEATURE_SERVICE,
        features=views,
        tags=tags
        | {
            MATCH_TAG: json.dumps(snapshot["match"]),
            SEQUENCE_MATCH_TAG: json.dumps(snapshot.get("sequence_match", [])),
        },
    )
    store = FeatureStore(repo_path=str(repo))
    drop_views(store)
    store.apply([*entities.values(), *views, service])
    store.materialize(start_date=cutoff - timedelta(seconds=1), end_date=cutoff + timedelta(seconds=1))
    summary = {"repo": str(repo), "views": [view.name for view in views], "cutoff": cutoff.isoformat(), **tags}
    logger.info("materialized %s", summary)
    return summary
