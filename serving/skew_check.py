"""Training/serving skew check (``ranker skew-check``): test rows served through the online path.

Takes the first requests of an extraction's test split, sends each with ids only
(and the raw features the store does not keep) through
:class:`~serving.feature_store.OnlineFeatures` and the request parser, and
compares each assembled feature with the extraction's on the rows where the
store must reproduce it: rows whose entities behind the feature (its own, and
the one that stores its key, e.g. the listing for a category's) have had no
event since the snapshot's cutoff, and, for a rate smoothed with the prior, rows
in the cutoff's time bucket (the same prior). The model's scores are compared
on the rows where every feature qualifies::

    report = skew_check("work_dir/examples", "work_dir/model", "work_dir/feature_repo")
    report.ok, report.compared, report.mismatches, report.rows, report.max_prediction_delta

Inputs that cannot be checked are refused first, each as one
:class:`~ranker_core.cli_support.UserError` line (see :func:`skew_check`): the model must read exactly the
examples' features and the repo must fit the model, as ``ranker serve`` requires.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import operator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from ranker_core.cli_support import InvalidValueError, MissingInputError, first_few, require_folder
from ranker_core.feature_store import (
    SNAPSHOT_DIR,
    SNAPSHOT_FILE,
    match_feature,
    parse_snapshot,
    snapshot_features,
)
from ranker_core.schema import FEATURE_SPEC_FILE, HELDOUT_SPLIT, MODULE, REQUEST_ID, TIMESTAMP, FeatureSpec
from serving.feature_store import OnlineFeatures, open_online_features
from serving.model_source import SAVED_MODEL_FILE
from serving.request import RequestParser
from serving.skew_check_cli import MAX_REQUESTS

logger = logging.getLogger(__name__)

TOLERANCE = 1e-5


@dataclasses.dataclass
class SkewReport:
    """What was checked: ``served_rows`` rows of ``requests`` requests (of the test split's ``test_rows``),
    per store-kept feature the rows ``compared`` (where the store must reproduce it), features that differ
    (feature -> rows), and, on the ``rows`` where every feature qualifies, the largest prediction difference.
    ``unknown_keys``: per entity with stored columns, the rows served whose key the store does not hold (first
    seen after the cutoff: served empty, not compared; materializing more often narrows that gap)."""

    rows: int
    requests: int
    mismatches: dict[str, int]
    max_prediction_delta: float
    test_rows: int = 0
    modules: list[str] = dataclasses.field(default_factory=list)
    served_rows: int = 0
    compared: dict[str, int] = dataclasses.field(default_factory=dict)
    unknown_keys: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        checked = self.rows > 0 or any(self.compared.values())
        return checked and not self.mismatches and self.max_prediction_delta < TOLERANCE

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"ok": self.ok}


def unchanged_by_entity(
    rows: dict[str, np.ndarray], snapshot: dict[str, Any], events: dict[str, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """Per entity, the rows at or after the cutoff whose key has no event since the cutoff before the row's time,
    among ``events`` (every split's rows since the cutoff, ``rows`` among them; default ``rows``): the store holds
    the row's counts, sequences and stored columns of that entity."""
    events = rows if events is None else events
    times = rows[TIMESTAMP].astype(np.int64)
    event_times = pd.Series(events[TIMESTAMP].astype(np.int64))
    since_cutoff = (event_times >= snapshot["cutoff"]).to_numpy()
    unchanged = {}
    for name, entity in snapshot["entities"].items():
        first = event_times[since_cutoff].groupby(_keys(events, entity["keys"])[since_cutoff]).min()
        first_event = _keys(rows, entity["keys"]).map(first).to_numpy(dtype=np.float64)  # NaN: none
        unchanged[name] = (times >= snapshot["cutoff"]) & ~(first_event < times)
    return unchanged


def _keys(rows: dict[str, np.ndarray], columns: list[str]) -> pd.Series:
    """Each row's key (its columns' values as text, joined)."""
    texts = (pd.Series(rows[column]).astype(str) for column in columns)
    return functools.reduce(lambda left, right: left + "\x1f" + right, texts)


def in_prior_bucket(rows: dict[str, np.ndarray], snapshot: dict[str, Any]) -> np.ndarray:
    """Rows in the cutoff's time bucket: their rates are smoothed with the same prior as the store's."""
    times = rows[TIMESTAMP].astype(np.int64)
    return (times >= snapshot["cutoff"]) & (times < snapshot["prior_until"])


def unchanged_rows(rows: dict[str, np.ndarray], snapshot: dict[str, Any]) -> np.ndarray:
    """Rows in the cutoff's time bucket whose every entity key has no earlier event since the cutoff."""
    keep = in_prior_bucket(rows, snapshot)
    for unchanged in unchanged_by_entity(rows, snapshot).values():
        keep &= unchanged
    return keep


@dataclasses.dataclass(frozen=True)
class StoredFeature:
    """What the store's value of a feature depends on: the ``entities`` whose events since the cutoff change it,
    whether it is ``smoothed`` with the prior of the row's time bucket, and the ``catalog`` entities whose stored
    columns it reads (a key the store does not hold serves those empty, where the extraction read the row's own)."""

    entities: frozenset[str]
    smoothed: bool = False
    catalog: frozenset[str] = frozenset()

    def __or__(self, other: StoredFeature) -> StoredFeature:
        return StoredFeature(
            self.entities | other.entities, self.smoothed or other.smoothed, self.catalog | other.catalog
        )


def feature_dependencies(snapshot: dict[str, Any], examples: str) -> dict[str, StoredFeature]:
    """Each store-kept feature's :class:`StoredFeature`.

    An entity's own columns (its table's, the keys aside) depend on it and on the entity that stores its keys (a
    category's features on the listing, whose stored category names it); a ``match_*`` flag or a sequence's
    match on the entities of both its columns. A snapshot without ``rates`` (written before they were listed)
    has every default-valued feature taken as a rate.
    """
    tables = {name: table_features(examples, entity) for name, entity in snapshot["entities"].items()}
    owner: dict[str, str] = {}
    for name, columns in tables.items():
        for column in columns:
            owner.setdefault(column, name)
    dependencies: dict[str, StoredFeature] = {}
    for name, entity in snapshot["entities"].items():
        key_owners = frozenset(owner[key] for key in entity["keys"] if key in owner)
        rates = set(entity["rates"] if "rates" in entity else entity["defaults"])
        for column in tables[name]:
            if owner.get(column) == name:
                catalog = key_owners | ({name} if column in entity["stored"] else set())
                dependencies[column] = StoredFeature(key_owners | {name}, column in rates, catalog)

    def of(*columns: str) -> StoredFeature:
        found = [dependencies.get(column, StoredFeature(frozenset())) for column in columns]
        return functools.reduce(operator.or_, found)

    for left, right in snapshot.get("match", []):
        dependencies[match_feature(left, right)] = of(left, right)
    for sequence, column, name in snapshot.get("sequence_match", []):
        dependencies[name] = of(sequence, column)
    return dependencies


def table_features(examples: str, entity: dict[str, Any]) -> list[str]:
    """An entity table's feature columns (the store serves them)."""
    return snapshot_features(pq.read_schema(Path(examples) / SNAPSHOT_DIR / entity["table"]).names, entity["keys"])


def known_keys(rows: dict[str, np.ndarray], examples: str, entity: dict[str, Any]) -> np.ndarray:
    """The rows whose key the entity's table holds (the store serves its stored columns)."""
    table = pd.read_parquet(Path(examples) / SNAPSHOT_DIR / entity["table"], columns=entity["keys"])
    return _keys(rows, entity["keys"]).isin(_keys(table, entity["keys"])).to_numpy()


def comparable_rows(
    rows: dict[str, np.ndarray], snapshot: dict[str, Any], examples: str, events: dict[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Store-kept feature -> the rows where the store must reproduce the extraction's value (``events``: every
    row since the cutoff, :func:`unchanged_by_entity`); and per catalog entity, the rows whose key the store does
    not hold (not compared: a freshness gap, not a skew)."""
    dependencies = feature_dependencies(snapshot, examples)
    unchanged = unchanged_by_entity(rows, snapshot, events)
    bucket = in_prior_bucket(rows, snapshot)
    catalogs = set().union(*(feature.catalog for feature in dependencies.values()))
    known = {name: known_keys(rows, examples, snapshot["entities"][name]) for name in sorted(catalogs)}
    comparable = {}
    for name, feature in dependencies.items():
        keep = bucket.copy() if feature.smoothed else np.ones(len(bucket), dtype=bool)
        for entity in feature.entities:
            keep &= unchanged[entity]
        for entity in feature.catalog:
            keep &= known[entity]
        comparable[name] = keep
    return comparable, {name: int((~holds).sum()) for name, holds in known.items()}


def ids_only_requests(rows: dict[str, np.ndarray], features: OnlineFeatures, spec: FeatureSpec) -> list[dict]:
    """One instance per request: the candidate ids and the raw features the store does not keep, nothing
    stored. Such a feature goes in the context when the request's rows share its value, else per candidate
    (a time-varying item feature, e.g. an age, which the caller sends)."""
    sent = [name for name in features.sent_by_request([MODULE, *spec.feature_names]) if name in rows]
    instances = []
    for request in dict.fromkeys(rows[REQUEST_ID].tolist()):
        index = np.flatnonzero(rows[REQUEST_ID] == request)
        context, candidates = {}, {features.item_key: [_json(value) for value in rows[features.item_key][index]]}
        for name in sent:
            values = [_json(value) for value in rows[name][index]]
            if all(value == values[0] for value in values):
                context[name] = values[0]
            else:
                candidates[name] = values
        instances.append({"context": context, "candidates": candidates})
    return instances


def skew_check(examples: str, model_dir: str, repo: str, max_requests: int = MAX_REQUESTS) -> SkewReport:
    """Serve the test split's first ``max_requests`` requests through the online store and compare (see the
    module doc).

    Refused, as one :class:`~ranker_core.cli_support.UserError` line before the model loads: examples without a
    feature spec, an entity snapshot or a test split; a ``model_dir`` without a SavedModel or a feature spec; a
    model whose features (name and kind) are not the examples' (:func:`require_same_features`); a repo that is not
    one ``ranker materialize`` wrote or that does not fit the model (as ``ranker serve`` refuses it).
    """
    from trainer.examples import read_split
    from trainer.predict import load_ranker

    if max_requests < 1:
        raise InvalidValueError(f"--max-requests must be 1 or more, got {max_requests}")
    spec = FeatureSpec.load(require_folder(examples, "--examples"))
    snapshot = read_snapshot(examples)
    model_spec = model_feature_spec(model_dir)
    require_same_features(spec, model_spec, examples, model_dir)
    item_key = model_spec.roles.get("item_id", "")
    features = open_online_features(repo, item_key, model_spec.feature_names, cache_seconds=0)
    try:
        test = read_split(examples, "test", spec)
    except FileNotFoundError as error:  # no shards
        raise MissingInputError(f"--examples {examples}: {error}") from None
    if not test:
        return SkewReport(rows=0, requests=0, mismatches={}, max_prediction_delta=0.0)
    rows = first_requests(test, max_requests)
    instances = ids_only_requests(rows, features, spec)
    body = features.fill({"instances": instances})
    served = RequestParser(spec, max_candidates=10**6, max_instances=10**6).parse(body).columns
    offline = {name: rows[name] for name in (MODULE, *spec.feature_names)}
    comparable, unknown = comparable_rows(rows, snapshot, examples, events_since_cutoff(examples, spec, test))
    everywhere = np.ones(len(rows[REQUEST_ID]), dtype=bool)
    where = {name: comparable.get(name, everywhere) for name in offline}  # what the caller sends: every row
    every_feature = np.logical_and.reduce([everywhere, *(where[name] for name in offline)])
    return SkewReport(
        rows=int(every_feature.sum()),
        requests=len(instances),
        mismatches=feature_mismatches(offline, served, where),
        max_prediction_delta=prediction_delta(load_ranker(model_dir), offline, served, every_feature),
        test_rows=len(test[REQUEST_ID]),
        modules=sorted({_json(module) for module in rows[MODULE]}),
        served_rows=len(rows[REQUEST_ID]),
        compared={name: int(where[name].sum()) for name in offline if name in comparable},
        unknown_keys=unknown,
    )


def events_since_cutoff(examples: str, spec: FeatureSpec, test: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The test split's rows and the held-out module's (whose events count in every entity's history too): with a
    time split, the other splits end at the cutoff."""
    from trainer.examples import read_split

    try:
        heldout = read_split(examples, HELDOUT_SPLIT, spec)
    except FileNotFoundError:  # no module held out
        heldout = {}
    if not heldout:
        return test
    return {name: np.concatenate([values, heldout[name]]) for name, values in test.items() if name in heldout}


def first_requests(rows: dict[str, np.ndarray], count: int) -> dict[str, np.ndarray]:
    """The rows of the ``count`` requests that start first (the store's snapshot is of the cutoff, just before),
    each request's rows together, in their order (as :func:`ids_only_requests` serves them)."""
    requests = pd.Series(rows[REQUEST_ID])
    starts = pd.Series(rows[TIMESTAMP].astype(np.int64)).groupby(requests, sort=False).transform("min")
    order = pd.DataFrame({"start": starts, "request": requests}).sort_values(["start", "request"], kind="stable")
    first = order["request"].drop_duplicates().iloc[:count]
    index = order.index[order["request"].isin(first)].to_numpy()
    return {name: values[index] for name, values in rows.items()}


def prediction_delta(
    ranker: Any, offline: dict[str, np.ndarray], served: dict[str, np.ndarray], rows: np.ndarray
) -> float:
    """The largest difference between the model's scores of the served and the offline features on ``rows``."""
    if not rows.any():
        return 0.0
    online_scores = ranker.predict({name: values[rows] for name, values in served.items()})
    offline_scores = ranker.predict({name: values[rows] for name, values in offline.items()})
    deltas = [np.max(np.abs(online_scores[k] - offline_scores[k]), initial=0.0) for k in offline_scores]
    return float(max(deltas, default=0.0))


def read_snapshot(examples: str) -> dict[str, Any]:
    """The examples' entity snapshot; a :class:`MissingInputError` worded as ``ranker materialize``'s when there is
    none or it holds no entity (a dataset spec without ``history``: no feature store to check)."""
    path = Path(examples) / SNAPSHOT_DIR / SNAPSHOT_FILE
    try:
        return parse_snapshot(examples, path.read_text() if path.is_file() else None)
    except ValueError as error:
        raise MissingInputError(str(error)) from None


def model_feature_spec(model_dir: str) -> FeatureSpec:
    """The feature spec of the exported model in ``model_dir`` (local or gs://); a :class:`MissingInputError`
    naming ``--model-uri`` when there is no such folder or it holds no SavedModel or no ``feature_spec.json``."""
    from trainer.digest import is_folder, path_exists, read_json

    folder = model_dir.rstrip("/")
    if not is_folder(folder):
        raise MissingInputError(f"--model-uri {model_dir}: no such folder")
    for name in (SAVED_MODEL_FILE, FEATURE_SPEC_FILE):
        if not path_exists(f"{folder}/{name}"):
            raise MissingInputError(
                f"--model-uri {model_dir}: no {name} in it: give the folder `ranker train` exported the model to"
            )
    path = f"{folder}/{FEATURE_SPEC_FILE}"
    try:
        return FeatureSpec.from_dict(read_json(path))
    except (KeyError, TypeError) as error:
        raise InvalidValueError(f"--model-uri {model_dir}: {path} is not a valid feature spec ({error})") from None


def require_same_features(spec: FeatureSpec, model_spec: FeatureSpec, examples: str, model_dir: str) -> None:
    """An :class:`InvalidValueError` unless the model reads exactly the examples' features (name and kind).

    The check compares the examples' features as the store serves them and as extraction wrote them, scored by
    one model: a model of another schema would be fed columns it does not read (or lack ones it does), so its
    verdict would mean nothing. A model trained on other examples of the same schema (an older or newer
    extraction) is allowed, with a log line: both paths are scored by the same model, so a difference in its
    training data moves both scores alike, and the features compared are the examples' own. (The evaluation
    requires the same examples, ``check_lineage``, because it scores the model; this checks the feature path.)
    """
    from trainer.digest import json_sha256

    examples_features = {(feature.name, feature.kind) for feature in spec.features}
    model_features = {(feature.name, feature.kind) for feature in model_spec.features}
    differ = sorted({name for name, _ in examples_features ^ model_features})
    if differ:
        raise InvalidValueError(
            f"--model-uri {model_dir}: the model does not read the features of --examples {examples} "
            f"({len(differ)} differ, e.g. {first_few(differ, 3)}): check a model trained on these examples' "
            "features (same dataset spec)"
        )
    if json_sha256(model_spec.to_dict()) != json_sha256(spec.to_dict()):
        logger.info(
            "--model-uri %s was trained on other examples than --examples %s (same features): checking the feature "
            "path with it",
            model_dir,
            examples,
        )


def feature_mismatches(
    offline: dict[str, np.ndarray], served: dict[str, np.ndarray], where: dict[str, np.ndarray] | None = None
) -> dict[str, int]:
    """Feature -> rows (of its ``where`` rows, default all) whose served value differs from the extraction's
    (numbers as float32, NaN == NaN)."""
    found = {}
    for name, expected in offline.items():
        actual = served[name]
        if where is not None:
            expected, actual = expected[where[name]], actual[where[name]]
        if expected.dtype.kind in "fc":
            differ = ~np.isclose(expected.astype(np.float32), actual.astype(np.float32), rtol=0, atol=0, equal_nan=True)
        else:
            differ = expected.astype(str) != actual.astype(str)
        if differ.any():
            found[name] = int(differ.sum())
    return found


def _json(value: Any) -> Any:
    """A NumPy scalar as a JSON value (bytes as text, NaN as null)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.floating):
        return None if np.isnan(value) else float(value)
    return value.item() if isinstance(value, np.generic) else value
