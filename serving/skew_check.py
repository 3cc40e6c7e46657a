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
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from ranker_core.feature_store import SNAPSHOT_DIR, SNAPSHOT_FILE
from ranker_core.schema import MODULE, REQUEST_ID, TIMESTAMP, FeatureSpec
from serving.feature_store import OnlineFeatures, open_online_features
from serving.request import RequestParser

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
    """Serve the test split's unchanged rows through the online store and compare (see the module doc)."""
    from trainer.examples import read_split
    from trainer.predict import load_ranker

    spec = FeatureSpec.load(examples)
    snapshot = json.loads((Path(examples) / SNAPSHOT_DIR / SNAPSHOT_FILE).read_text())
    features = open_online_features(repo, spec.roles.get("item_id", ""), spec.feature_names, cache_seconds=0)
    test = read_split(examples, "test", spec)
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
