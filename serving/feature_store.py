"""Features from the Feast online store for requests that carry ids only (``ranker serve --feature-store``).

A request names the context (``module_name``, ``user_id``, a query or anchor
listing) and the candidate listing ids; :class:`OnlineFeatures` adds every
stored feature from the ``ranker`` feature service that ``ranker materialize``
wrote, then the request is parsed as if the client had sent them::

    features = OnlineFeatures("work_dir/feature_repo", item_key="listing_id", cache_seconds=60)
    body = features.fill(body)          # RequestError (400) for a stored feature that was also sent

Views are joined in dependency order: the listing's view first (it stores the
listing's ``category`` and ``shop_id``), then the views keyed by those and the
user. An id the store does not know gets exactly what training gives an entity
with no history (the field's ``default`` tag: count 0, the prior rate at the
cutoff) and missing raw features, and is counted in
``ranker_feature_store_unknown_ids_total``. Looked-up rows are cached in memory
for ``cache_seconds`` (0: no cache), which keeps a 1,000-candidate request off
the store once its listings are warm.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from prometheus_client import Counter, Histogram

from ranker_core.feature_store import DEFAULT_TAG, FEATURE_SERVICE, MATCH_TAG, match_feature
from serving.request import RequestError

UNKNOWN_IDS = Counter(
    "ranker_feature_store_unknown_ids", "Ids the online store does not know (served training defaults)", ["view"]
)
LOOKUPS = Counter("ranker_feature_store_lookups", "Ids looked up in the online store (cache misses)", ["view"])
SERVED = Histogram(
    "ranker_served_feature",
    "Served values of each stored numeric feature (the first candidates of each request)",
    ["feature"],
    buckets=(0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 2.0, 5.0, 10.0, 100.0, 1000.0, 10000.0),
)
SAMPLED_CANDIDATES = 8  # values per feature and request that go into the histograms


class StoreUnavailableError(RuntimeError):
    """The online store failed or timed out (the server answers 503)."""


class ViewReader:
    """One feature view: its keys, features and defaults, and a time-bounded cache of looked-up rows."""

    def __init__(self, store: Any, view: Any, cache_seconds: float) -> None:
        self.store, self.name, self.cache_seconds = store, view.name, cache_seconds
        self.keys: list[str] = list(view.join_keys)
        self.features = [field.name for field in view.features]
        self.numeric = [field.name for field in view.features if DEFAULT_TAG in field.tags]
        self.missing = {field.name: _default(field.tags.get(DEFAULT_TAG)) for field in view.features}
        self._cache: dict[tuple, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def rows(self, keys: list[tuple]) -> dict[tuple, dict[str, Any]]:
        """Feature values per distinct key: cached ones, the rest from the online store."""
        now = time.monotonic()
        with self._lock:
            found = {key: hit[1] for key in keys if (hit := self._cache.get(key)) and now - hit[0] < self.cache_seconds}
        misses = [key for key in dict.fromkeys(keys) if key not in found]
        if misses:
            fetched = self._fetch(misses)
            found.update(fetched)
            if self.cache_seconds > 0:
                with self._lock:
                    self._cache.update({key: (now, row) for key, row in fetched.items()})
        return found

    def _fetch(self, keys: list[tuple]) -> dict[tuple, dict[str, Any]]:
        LOOKUPS.labels(self.name).inc(len(keys))
        refs = [f"{self.name}:{feature}" for feature in self.features]
        entity_rows = [dict(zip(self.keys, key, strict=True)) for key in keys]
        try:
            result = self.store.get_online_features(features=refs, entity_rows=entity_rows).to_dict()
        except Exception as error:  # any store failure: the request gets a 503 with the reason
            raise StoreUnavailableError(f"feature store lookup of {self.name!r} failed: {error}") from error
        rows = {}
        for index, key in enumerate(keys):
            values = {feature: result[feature][index] for feature in self.features}
            if all(value is None for value in values.values()):
                UNKNOWN_IDS.labels(self.name).inc()
                values = dict(self.missing)
            rows[key] = {feature: _clean(value, self.missing[feature]) for feature, value in values.items()}
        return rows


class OnlineFeatures:
    """The stored features of the ``ranker`` feature service, joined into ids-only requests."""

    def __init__(self, repo_path: str, item_key: str, cache_seconds: float = 60.0) -> None:
        from feast import FeatureStore

        store = FeatureStore(repo_path=repo_path)
        service = store.get_feature_service(FEATURE_SERVICE)
        self.item_key = item_key
        views = [store.get_feature_view(projection.name) for projection in service.feature_view_projections]
        self.views = [ViewReader(store, view, cache_seconds) for view in views]
        self.match = [tuple(pair) for pair in json.loads(service.tags.get(MATCH_TAG, "[]"))]
        self.stored = {feature for view in self.views for feature in view.features}
        self.stored |= {match_feature(left, right) for left, right in self.match}
        self.model_version = service.tags.get("model_version", "")

    def fill(self, body: Any) -> Any:
        """The request body with every stored feature added to each instance's candidates (columns)."""
        if not isinstance(body, dict) or not isinstance(body.get("instances"), list):
            return body  # the request parser refuses it with its own message
        for index, instance in enumerate(body["instances"]):
            if isinstance(instance, dict) and isinstance(instance.get("context", {}), dict):
                instance["candidates"] = self.assemble(instance.get("context") or {}, instance.get("candidates"), index)
        return body

    def assemble(self, context: Mapping[str, Any], candidates: Any, index: int = 0) -> dict[str, list]:
        """Candidate columns: the ids sent, plus every stored feature (context-level ones broadcast)."""
        columns = _as_columns(candidates, f"instances[{index}].candidates")
        self._refuse_sent(context, columns, index)
        if self.item_key not in columns:
            raise RequestError(f"instances[{index}].candidates: with a feature store, send {self.item_key!r} ids")
        size = len(columns[self.item_key])
        pending = list(self.views)
        while pending:
            ready = [view for view in pending if all(key in context or key in columns for key in view.keys)]
            for view in ready or pending:  # a key nobody can give: every row is an unknown id
                self._join(view, context, columns, size)
            pending = [view for view in pending if view not in (ready or pending)]
        for left, right in self.match:
            columns[match_feature(left, right)] = _match(context, columns, left, right, size)
        _observe(columns, [feature for view in self.views for feature in view.numeric])
        return columns

    def _refuse_sent(self, context: Mapping[str, Any], columns: Mapping[str, list], index: int) -> None:
        for where, keys in (("context", context), ("candidates", columns)):
            sent = sorted(self.stored.intersection(keys))
            if sent:
                raise RequestError(
                    f"instances[{index}].{where}: {', '.join(sent)} come from the feature store; send ids only"
                )

    def _join(self, view: ViewReader, context: Mapping[str, Any], columns: dict[str, list], size: int) -> None:
        """Add the view's features: one lookup per distinct key, then spread to the rows with NumPy."""
        keys = _keys(view.keys, context, columns, size)
        unique = list(dict.fromkeys(keys))
        rows = view.rows(unique)
        position = {key: index for index, key in enumerate(unique)}
        codes = np.fromiter((position[key] for key in keys), dtype=np.int64, count=size)
        for feature in view.features:
            values = np.array([rows.get(key, view.missing)[feature] for key in unique], dtype=object)
            columns[feature] = values[codes].tolist()


def _as_columns(candidates: Any, where: str) -> dict[str, list]:
    """Candidates as columns (a list of objects is turned into one list per key)."""
    if isinstance(candidates, dict) and all(isinstance(values, list) for values in candidates.values()):
        return dict(candidates)
    if isinstance(candidates, list) and all(isinstance(row, dict) for row in candidates):
        keys = dict.fromkeys(key for row in candidates for key in row)
        return {key: [row.get(key) for row in candidates] for key in keys}
    raise RequestError(f"{where}: expected a list of objects or an object of equal-length lists")


def _keys(names: list[str], context: Mapping[str, Any], columns: Mapping[str, list], size: int) -> list[tuple]:
    """The view's key of every row: context values broadcast, candidate columns per row (missing: "")."""
    parts = [[context[name]] * size if name in context else columns.get(name, [None] * size) for name in names]
    return [tuple("" if value is None else str(value) for value in key) for key in zip(*parts, strict=True)]


def _match(context: Mapping[str, Any], columns: Mapping[str, list], left: str, right: str, size: int) -> list[float]:
    """1.0 where the two values are equal and non-empty (as extraction computes ``match_*``)."""
    lefts = columns.get(left) or [context.get(left)] * size
    rights = columns.get(right) or [context.get(right)] * size
    return [float(a not in (None, "") and a == b) for a, b in zip(lefts, rights, strict=True)]


def _observe(columns: Mapping[str, list], features: list[str]) -> None:
    for feature in features:
        child = SERVED.labels(feature)
        for value in columns[feature][:SAMPLED_CANDIDATES]:
            if value is not None:
                child.observe(value)


def _default(tag: str | None) -> float | None:
    return float(tag) if tag is not None else None


def _clean(value: Any, default: Any) -> Any:
    """A stored NaN is a missing value (null); a missing history value gets the training default."""
    if isinstance(value, float) and math.isnan(value):
        return default
    return default if value is None else value
