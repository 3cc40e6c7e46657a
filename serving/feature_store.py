"""Features from the Feast online store for requests that carry ids only (``ranker serve --feature-store``).

A request names the context (``module_name``, ``user_id``, a query or anchor
listing) and the candidate listing ids; :class:`OnlineFeatures` adds every
stored feature from the ``ranker`` feature service that ``ranker materialize``
wrote, then the request is parsed as if the client had sent them::

    features = OnlineFeatures("work_dir/feature_repo", item_key="listing_id", cache_seconds=60)
    body = features.fill(body)          # RequestError (400) for a stored feature that was also sent
    body["instances"][0]["candidates"]["price"]     # array([12.5, nan, ...]): NumPy columns

Views are joined in dependency order: the listing's view first (it stores the
listing's ``category`` and ``shop_id``), then the views keyed by those and the
user. An id the store does not know gets exactly what training gives an entity
with no history (the field's ``default`` tag: count 0, the prior rate at the
cutoff) and missing raw features, and is counted in
``ranker_feature_store_unknown_ids_total``. Stored features arrive as NumPy
columns (float64 with NaN for a missing number, object arrays of strings with
``""`` for a missing string), which the request parser takes as they are.

Looked-up rows are cached in memory, column by column (:class:`ColumnCache`):
at most ``cache_entries`` keys per view, each for ``cache_seconds`` (0: no
cache); when full, the key fetched longest ago makes room. A warm
1,000-candidate request then costs a few dictionary lookups per distinct id and
one NumPy gather per feature, and never reaches the store.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from itertools import repeat
from typing import Any

import numpy as np
from prometheus_client import Counter, Histogram

from ranker_core.feature_store import (
    DEFAULT_TAG,
    FEATURE_SERVICE,
    MATCH_TAG,
    SEQUENCE_MATCH_TAG,
    match_feature,
    sequence_hits,
)
from serving.request import RequestError

UNKNOWN_IDS = Counter(
    "ranker_feature_store_unknown_ids", "Ids the online store does not know (served training defaults)", ["view"]
)
LOOKUPS = Counter("ranker_feature_store_lookups", "Ids looked up in the online store (cache misses)", ["view"])
SERVED = Histogram(
    "ranker_served_feature",
    "Served values of each stored history feature (a few candidates of each request)",
    ["feature"],
    buckets=(0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 2.0, 5.0, 10.0, 100.0, 1000.0, 10000.0),
)
SAMPLED_CANDIDATES = 4  # values per feature and request that go into the histograms, spread over the candidates


class StoreUnavailableError(RuntimeError):
    """The online store failed or timed out (the server answers 503)."""


class ColumnCache:
    """A bounded, time-limited cache of feature rows, stored column by column.

    Each feature is one NumPy array (float64 for numbers, objects for strings)
    and an ordered ``key -> row`` index says where a key's values are. Rows
    older than ``ttl_s`` are misses; when ``capacity`` keys are held, the key
    fetched longest ago gives its row to the new one (a refetched key counts as
    new). Thread-safe: lookups copy the values out under a lock.

    Example::

        cache = ColumnCache({"price": np.float64, "category": object}, capacity=2, ttl_s=60)
        cache.put(["l1", "l2"], {"price": np.array([3.0, 9.5]), "category": np.array(["toys", ""], dtype=object)})
        found, values = cache.get(["l2", "l9"])   # found: [True, False]; values["price"]: [9.5]
    """

    def __init__(
        self,
        dtypes: Mapping[str, Any],
        capacity: int,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = max(int(capacity), 0) if ttl_s > 0 else 0
        self.ttl_s, self.clock = ttl_s, clock
        size = min(self.capacity, 1024)
        self._columns = {name: np.empty(size, dtype=dtype) for name, dtype in dtypes.items()}
        self._stamps = np.empty(size, dtype=np.float64)
        self._rows: OrderedDict[Hashable, int] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, keys: list[Hashable]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Which ``keys`` are cached and fresh, and their values (for those keys only, in order)."""
        if not self.capacity:
            return np.zeros(len(keys), dtype=bool), {name: column[:0] for name, column in self._columns.items()}
        now = self.clock()
        with self._lock:
            rows = np.fromiter(map(self._rows.get, keys, repeat(-1)), dtype=np.intp, count=len(keys))
            found = rows >= 0
            found[found] = now - self._stamps[rows[found]] < self.ttl_s
            hits = rows[found]
            return found, {name: column[hits] for name, column in self._columns.items()}

    def put(self, keys: list[Hashable], values: Mapping[str, np.ndarray]) -> None:
        """Store the rows of ``keys`` (distinct); only the last ``capacity`` fit."""
        if not self.capacity or not keys:
            return
        keep = slice(max(len(keys) - self.capacity, 0), None)
        keys = keys[keep]
        now = self.clock()
        with self._lock:
            rows = np.fromiter(map(self._row_for, keys), dtype=np.intp, count=len(keys))
            for name, column in self._columns.items():
                column[rows] = values[name][keep]
            self._stamps[rows] = now

    def _row_for(self, key: Hashable) -> int:
        """The row ``key`` is written to: its own, a new one, or the oldest key's (evicted)."""
        row = self._rows.pop(key, None)
        if row is None:
            if len(self._rows) < self.capacity:
                row = len(self._rows)
                self._grow(row + 1)
            else:
                _, row = self._rows.popitem(last=False)
        self._rows[key] = row
        return row

    def _grow(self, size: int) -> None:
        if size <= len(self._stamps):
            return
        size = min(max(size, 2 * len(self._stamps)), self.capacity)
        for name, column in self._columns.items():
            self._columns[name] = np.resize(column, size)
        self._stamps = np.resize(self._stamps, size)


class StorePerThread:
    """One Feast ``FeatureStore`` per thread that looks features up (each is cheap once the registry is cached).

    Feast's SQLite online store keeps one connection per ``FeatureStore``. Shared by the lookup
    threads, a read that waits on a locked database holds SQLite's connection mutex for the busy
    timeout (5 s), and the next thread binds its query's parameters, which needs that mutex, with
    the GIL held: the whole server, event loop included, stopped until the first read gave up, so
    no feature timeout could answer. With a store (a connection) per thread a waiting read holds
    only its own thread; SQLite serves concurrent readers, and other online stores' clients are
    per thread too.

    Example::

        stores = StorePerThread("work_dir/feature_repo")
        stores.get().get_online_features(features=[...], entity_rows=[...])   # this thread's store
    """

    def __init__(self, repo_path: str) -> None:
        self.repo_path = repo_path
        self._local = threading.local()

    def get(self) -> Any:
        """This thread's store, opened on its first use."""
        store = getattr(self._local, "store", None)
        if store is None:
            from feast import FeatureStore

            store = self._local.store = FeatureStore(repo_path=self.repo_path)
        return store


class ViewReader:
    """One feature view: its keys, features and defaults, read through a :class:`ColumnCache`.

    A key is the id itself for a one-key view (``"l7"``) and a tuple of ids
    otherwise (``("u3", "toys")``).
    """

    def __init__(self, stores: StorePerThread, view: Any, cache_seconds: float, cache_entries: int) -> None:
        self.stores, self.name = stores, view.name
        self.keys: list[str] = list(view.join_keys)
        self.features = [field.name for field in view.features]
        self.strings = {field.name for field in view.features if _is_string(field.dtype)}
        self.numeric = [field.name for field in view.features if DEFAULT_TAG in field.tags]
        self.defaults = {field.name: _default(field.tags.get(DEFAULT_TAG)) for field in view.features}
        dtypes = {feature: object if feature in self.strings else np.float64 for feature in self.features}
        self.cache = ColumnCache(dtypes, cache_entries, cache_seconds)

    def values(self, keys: list[Hashable]) -> dict[str, np.ndarray]:
        """Each feature's values for the distinct ``keys``: cached ones, the rest from the online store."""
        found, cached = self.cache.get(keys)
        if found.all():
            return cached
        missing = np.flatnonzero(~found)
        misses = [keys[index] for index in missing]
        fetched = self._fetch(misses)
        self.cache.put(misses, fetched)
        if not found.any():
            return fetched
        merged = {}
        for feature, values in fetched.items():
            merged[feature] = np.empty(len(keys), dtype=values.dtype)
            merged[feature][found], merged[feature][missing] = cached[feature], values
        return merged

    def _fetch(self, keys: list[Hashable]) -> dict[str, np.ndarray]:
        LOOKUPS.labels(self.name).inc(len(keys))
        refs = [f"{self.name}:{feature}" for feature in self.features]
        parts = [(key,) for key in keys] if len(self.keys) == 1 else keys
        entity_rows = [dict(zip(self.keys, part, strict=True)) for part in parts]
        try:
            result = self.stores.get().get_online_features(features=refs, entity_rows=entity_rows).to_dict()
        except Exception as error:  # any store failure: the request gets a 503 with the reason
            raise StoreUnavailableError(f"feature store lookup of {self.name!r} failed: {error}") from error
        stored = zip(*(result[feature] for feature in self.features), strict=True)
        unknown = sum(all(value is None for value in row) for row in stored)
        if unknown:
            UNKNOWN_IDS.labels(self.name).inc(unknown)
        return {feature: self._column(feature, result[feature]) for feature in self.features}

    def _column(self, feature: str, values: list[Any]) -> np.ndarray:
        """Stored values as a column: a missing (or NaN) number gets the training default, a missing string ``""``."""
        if feature in self.strings:
            return np.array(["" if value is None else value for value in values], dtype=object)
        column = np.array([np.nan if value is None else value for value in values], dtype=np.float64)
        default = self.defaults[feature]
        if default is not None:
            column[np.isnan(column)] = default
        return column


class OnlineFeatures:
    """The stored features of the ``ranker`` feature service, joined into ids-only requests.

    ``cache_seconds`` and ``cache_entries`` bound each view's in-memory cache
    (``--feature-cache-seconds``, ``--feature-cache-entries``).
    """

    def __init__(
        self, repo_path: str, item_key: str, cache_seconds: float = 60.0, cache_entries: int = 100_000
    ) -> None:
        stores = StorePerThread(repo_path)
        store = stores.get()
        service = store.get_feature_service(FEATURE_SERVICE)
        self.item_key = item_key
        views = [store.get_feature_view(projection.name) for projection in service.feature_view_projections]
        self.views = [ViewReader(stores, view, cache_seconds, cache_entries) for view in views]
        self.match = [tuple(pair) for pair in json.loads(service.tags.get(MATCH_TAG, "[]"))]
        self.sequence_match = [tuple(pair) for pair in json.loads(service.tags.get(SEQUENCE_MATCH_TAG, "[]"))]
        self.stored = {feature for view in self.views for feature in view.features}
        self.stored |= {match_feature(left, right) for left, right in self.match}
        self.stored |= {name for _, _, name in self.sequence_match}
        self.model_version = service.tags.get("model_version", "")
        self.served = {feature: SERVED.labels(feature) for view in self.views for feature in view.numeric}

    def fill(self, body: Any) -> Any:
        """The request body with every stored feature added to each instance's candidates (columns)."""
        if not isinstance(body, dict) or not isinstance(body.get("instances"), list):
            return body  # the request parser refuses it with its own message
        for index, instance in enumerate(body["instances"]):
            if isinstance(instance, dict) and isinstance(instance.get("context", {}), dict):
                instance["candidates"] = self.assemble(instance.get("context") or {}, instance.get("candidates"), index)
        return body

    def assemble(self, context: Mapping[str, Any], candidates: Any, index: int = 0) -> dict[str, Any]:
        """Candidate columns: the ids sent (lists), plus every stored feature (NumPy; context-level ones broadcast)."""
        columns: dict[str, Any] = _as_columns(candidates, f"instances[{index}].candidates")
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
        for sequence, column, name in self.sequence_match:
            columns[name] = sequence_hits(
                _side(context, columns, sequence, size), _side(context, columns, column, size)
            )
        _observe(columns, self.served, size)
        return columns

    def _refuse_sent(self, context: Mapping[str, Any], columns: Mapping[str, Any], index: int) -> None:
        for where, keys in (("context", context), ("candidates", columns)):
            sent = sorted(self.stored.intersection(keys))
            if sent:
                raise RequestError(
                    f"instances[{index}].{where}: {', '.join(sent)} come from the feature store; send ids only"
                )

    def _join(self, view: ViewReader, context: Mapping[str, Any], columns: dict[str, Any], size: int) -> None:
        """Add the view's features: one lookup per distinct key, then one NumPy gather per feature."""
        codes, keys = _distinct_keys(view.keys, context, columns, size)
        values = view.values(keys)
        for feature in view.features:
            columns[feature] = values[feature][codes]


def _as_columns(candidates: Any, where: str) -> dict[str, Any]:
    """Candidates as columns (a list of objects is turned into one list per key; NumPy columns pass as they are)."""
    if isinstance(candidates, dict) and all(isinstance(values, list | np.ndarray) for values in candidates.values()):
        return dict(candidates)
    if isinstance(candidates, list) and all(isinstance(row, dict) for row in candidates):
        keys = dict.fromkeys(key for row in candidates for key in row)
        return {key: [row.get(key) for row in candidates] for key in keys}
    raise RequestError(f"{where}: expected a list of objects or an object of equal-length lists")


def _distinct_keys(
    names: list[str], context: Mapping[str, Any], columns: Mapping[str, Any], size: int
) -> tuple[np.ndarray, list[Hashable]]:
    """Each row's index into the distinct keys, and those keys (an id for one name, else a tuple of ids).

    >>> _distinct_keys(["listing_id"], {}, {"listing_id": ["l1", "l2", "l1"]}, 3)
    (array([0, 1, 0]), ['l1', 'l2'])
    """
    parts = [_key_part(name, context, columns) for name in names]
    if all(isinstance(part, str) for part in parts):
        return np.zeros(size, dtype=np.intp), [parts[0] if len(parts) == 1 else tuple(parts)]
    if len(parts) == 1:
        rows: list[Hashable] = parts[0]
    else:
        rows = list(zip(*(repeat(part, size) if isinstance(part, str) else part for part in parts), strict=True))
    distinct = list(dict.fromkeys(rows))
    position = {key: index for index, key in enumerate(distinct)}
    return np.fromiter(map(position.__getitem__, rows), dtype=np.intp, count=size), distinct


def _key_part(name: str, context: Mapping[str, Any], columns: Mapping[str, Any]) -> str | list[str]:
    """One key column as ids: a context value (one string) or a candidate column (one string per row; missing: "")."""
    if name in context or name not in columns:
        value = context.get(name)
        return "" if value is None else str(value)
    values = columns[name]
    if isinstance(values, np.ndarray):  # a stored string column: already ids, "" when missing
        return values.tolist()
    if set(map(type, values)) == {str}:
        return values
    return ["" if value is None else str(value) for value in values]


def _match(context: Mapping[str, Any], columns: Mapping[str, Any], left: str, right: str, size: int) -> np.ndarray:
    """1.0 where the two values are equal and non-empty (as extraction computes ``match_*``)."""
    lefts, rights = _side(context, columns, left, size), _side(context, columns, right, size)
    present = (lefts != "") & np.not_equal(lefts, None)
    return (present & (lefts == rights)).astype(np.float64)


def _side(context: Mapping[str, Any], columns: Mapping[str, Any], name: str, size: int) -> np.ndarray:
    """A candidate column, or the context value for every row, as an object array."""
    values = columns.get(name)
    if values is None or len(values) == 0:
        values = repeat(context.get(name), size)
    return np.fromiter(values, dtype=object, count=size) if not isinstance(values, np.ndarray) else values


def _observe(columns: Mapping[str, Any], served: Mapping[str, Any], size: int) -> None:
    """Observe a few evenly spaced candidates' values of each feature (every value would cost more than the join)."""
    sample = slice(None, None, max(size // SAMPLED_CANDIDATES, 1))
    for feature, child in served.items():
        for value in columns[feature][sample][:SAMPLED_CANDIDATES].tolist():
            if value == value:  # not NaN
                child.observe(value)


def _is_string(dtype: Any) -> bool:
    return str(dtype) == "String"


def _default(tag: str | None) -> float | None:
    return float(tag) if tag is not None else None
