"""Training/serving skew check (``ranker skew-check``): test rows served through the online path.

Takes the test split of an extraction, keeps the rows whose entities are
unchanged since the snapshot's cutoff (no event of any of the row's entity keys
between the cutoff and the row, and the same smoothing prior, i.e. the cutoff's
time bucket), sends each request with ids only through
:class:`~serving.feature_store.OnlineFeatures` and the request parser, and
compares the assembled features with the extraction's and the model's scores
with the offline ones::

    report = skew_check("work_dir/examples", "work_dir/model", "work_dir/feature_repo")
    report.ok, report.rows, report.mismatches, report.max_prediction_delta

Inputs that cannot be checked are refused first, each as one
:class:`~ranker_core.cli_support.UserError` line (see :func:`skew_check`): the model must read exactly the
examples' features and the repo must fit the model, as ``ranker serve`` requires.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ranker_core.cli_support import InvalidValueError, MissingInputError, first_few, require_folder
from ranker_core.feature_store import SNAPSHOT_DIR, SNAPSHOT_FILE
from ranker_core.schema import FEATURE_SPEC_FILE, MODULE, REQUEST_ID, TIMESTAMP, FeatureSpec
from serving.feature_store import OnlineFeatures, open_online_features
from serving.model_source import SAVED_MODEL_FILE
from serving.request import RequestParser

logger = logging.getLogger(__name__)

TOLERANCE = 1e-5


@dataclasses.dataclass
class SkewReport:
    """Rows compared (of the test split's ``test_rows``; only rows in the cutoff's time bucket qualify, so
    few may), their ``modules``, features that differ (feature -> rows), the largest prediction difference."""

    rows: int
    requests: int
    mismatches: dict[str, int]
    max_prediction_delta: float
    test_rows: int = 0
    modules: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.rows > 0 and not self.mismatches and self.max_prediction_delta < TOLERANCE

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"ok": self.ok}


def unchanged_rows(rows: dict[str, np.ndarray], snapshot: dict[str, Any]) -> np.ndarray:
    """Rows in the cutoff's time bucket whose every entity key has no earlier event since the cutoff."""
    times = rows[TIMESTAMP].astype(np.int64)
    keep = (times >= snapshot["cutoff"]) & (times < snapshot["prior_until"])
    for entity in snapshot["entities"].values():
        keys = ["\x1f".join(str(rows[key][i]) for key in entity["keys"]) for i in range(len(times))]
        first: dict[str, int] = {}
        for key, time in zip(keys, times.tolist(), strict=True):
            first[key] = min(first.get(key, time), time)
        keep &= np.array([time == first[key] for key, time in zip(keys, times.tolist(), strict=True)])
    return keep


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


def skew_check(examples: str, model_dir: str, repo: str) -> SkewReport:
    """Serve the test split's unchanged rows through the online store and compare (see the module doc).

    Refused, as one :class:`~ranker_core.cli_support.UserError` line before the model loads: examples without a
    feature spec, an entity snapshot or a test split; a ``model_dir`` without a SavedModel or a feature spec; a
    model whose features (name and kind) are not the examples' (:func:`require_same_features`); a repo that is not
    one ``ranker materialize`` wrote or that does not fit the model (as ``ranker serve`` refuses it).
    """
    from trainer.examples import read_split
    from trainer.predict import load_ranker

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
    keep = unchanged_rows(test, snapshot)
    rows = {name: values[keep] for name, values in test.items()}
    instances = ids_only_requests(rows, features, spec)
    body = features.fill({"instances": instances})
    served = RequestParser(spec, max_candidates=10**6, max_instances=10**6).parse(body).columns
    offline = {name: rows[name] for name in (MODULE, *spec.feature_names)}
    ranker = load_ranker(model_dir)
    online_scores, offline_scores = ranker.predict(served), ranker.predict(offline)
    deltas = [np.max(np.abs(online_scores[k] - offline_scores[k]), initial=0.0) for k in offline_scores]
    return SkewReport(
        rows=int(keep.sum()),
        requests=len(instances),
        mismatches=feature_mismatches(offline, served),
        max_prediction_delta=float(max(deltas, default=0.0)),
        test_rows=len(keep),
        modules=sorted({_json(module) for module in rows[MODULE]}),
    )


def read_snapshot(examples: str) -> dict[str, Any]:
    """The examples' entity snapshot; a :class:`MissingInputError` worded as ``ranker materialize``'s when there is
    none or it holds no entity (a dataset spec without ``history``: no feature store to check)."""
    path = Path(examples) / SNAPSHOT_DIR / SNAPSHOT_FILE
    advice = "extract features with a spec that has `history`"
    if not path.is_file():
        raise MissingInputError(f"no entity snapshot at {path}: {advice}")
    snapshot = json.loads(path.read_text())
    if not snapshot.get("entities"):
        raise MissingInputError(f"no entity snapshot at {path} (it has no history entities): {advice}")
    return snapshot


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


def feature_mismatches(offline: dict[str, np.ndarray], served: dict[str, np.ndarray]) -> dict[str, int]:
    """Feature -> rows whose served value differs from the extraction's (numbers as float32, NaN == NaN)."""
    found = {}
    for name, expected in offline.items():
        actual = served[name]
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
