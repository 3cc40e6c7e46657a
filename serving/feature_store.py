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

Opening checks the repo before it serves (:func:`open_online_features`): a path that
is not a repo ``ranker materialize`` wrote (no folder, no ``feature_store.yaml``, no
local registry or SQLite online store, no ``ranker`` feature service), an online
store that cannot be read (one probe lookup per view), or a repo whose features
do not fit the model is one :class:`~ranker_core.cli_support.UserError` line.

Looked-up rows are cached in memory, column by column (:class:`ColumnCache`):
at most ``cache_entries`` keys per view, each for ``cache_seconds`` (0: no
cache); when full, the key fetched longest ago makes room. A warm
1,000-candidate request then costs a few dictionary lookups per distinct id and
one NumPy gather per feature, and never reaches the store.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from prometheus_client import Counter, Histogram

from ranker_core.cli_support import UserError, first_few
from ranker_core.feature_store import (
    DEFAULT_TAG,
    FEATURE_SERVICE,
    HISTORY_PREFIX,
    MATCH_PREFIX,
    MATCH_TAG,
    SEQUENCE_MATCH_TAG,
    match_feature,
    sequence_hits,
)
from serving.open_inference import INPUTS
from serving.request import RequestError, check_candidates, column_count, empty_candidates

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
NOT_A_REPO = "not a Feast repo written by `ranker materialize`"
PROBE_ID = "__ranker_probe__"  # the key of the start-up lookup: no entity has it
MOST_NAMED = 10  # features a mismatch message names
SQLITE_STORE_CLASS = "feast.infra.online_stores.sqlite.SqliteOnlineStore"  # the long name of ``type: sqlite``
BODY_FIELDS = frozenset({"instances", "parameters"})  # a body or an instance with other fields is the parser's to
INSTANCE_FIELDS = frozenset({"context", "candidates"})  # refuse, with no lookup


class StoreUnavailableError(RuntimeError):
    """The online store failed or timed out (the server answers 503)."""


class FeatureRepoError(UserError):
    """The folder is not a Feast repo ``ranker materialize`` wrote, or its online store cannot be read.

    The message is the reason only (``no such folder``): :func:`open_online_features` names the flag and the repo.
    """


def feast_store_class() -> type:
    """Feast's ``FeatureStore``, with Feast's stored ``import torch`` error cut from the frames that imported it.

    Feast 0.67 (``feast/torch_wrapper.py``) keeps the ``ModuleNotFoundError`` of its optional ``import torch`` in
    a module global. Its traceback holds the frames that first imported Feast and, through ``f_back``, every
    caller's frame with its locals: in ``ranker skew-check`` the TensorFlow model, which then outlived the check
    and was freed at interpreter exit, deep in that chain of frames, where CPython 3.11 crashed
    (``_PyTrash_thread_destroy_chain``, exit 139). Dropping the traceback right after the import frees nothing
    (the frames are still running) and keeps the error's message for Feast.
    """
    from feast import FeatureStore

    error = getattr(sys.modules.get("feast.torch_wrapper"), "_torch_import_error", None)
    if isinstance(error, BaseException):
        error.__traceback__ = None
    return FeatureStore


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
            store = self._local.store = feast_store_class()(repo_path=self.repo_path)
        return store


class ViewReader:
    """One feature view: its keys, features and defaults, read through a :class:`ColumnCache`.

    A key is the id itself for a one-key view (``"l7"``) and a tuple of ids
    otherwise (``("u3", "toys")``).
    """

    def __init__(self, stores: StorePerThread, view: Any, cache_seconds: float, cache_entries: int) -> None:
        self.stores, self.name = stores, view.name
        self.keys: list[str] = list(view.join_keys)
        self.source = view.batch_source  # what ``ranker materialize`` read: the snapshot table of the ids it holds
        self.features = [field.name for field in view.features]
        self.strings = {field.name for field in view.features if _is_string(field.dtype)}
        self.numeric = [field.name for field in view.features if DEFAULT_TAG in field.tags]
        self.defaults = {field.name: _default(field.tags.get(DEFAULT_TAG)) for field in view.features}
        dtypes = {feature: object if feature in self.strings else np.float64 for feature in self.features}
        self.cache = ColumnCache(dtypes, cache_entries, cache_seconds)

    def probe(self) -> None:
        """Look up a key no entity has, past the cache and the metrics: a :class:`FeatureRepoError` when the
        online store cannot be read (a table missing, say)."""
        refs = [f"{self.name}:{feature}" for feature in self.features[:1]]
        try:
            self.stores.get().get_online_features(features=refs, entity_rows=[dict.fromkeys(self.keys, PROBE_ID)])
        except Exception as error:  # any store failure: the repo cannot serve
            raise FeatureRepoError(f"its online store cannot be read: {_one_line(error)}") from error

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
    (``--feature-cache-seconds``, ``--feature-cache-entries``). A repo that is not
    one ``ranker materialize`` wrote, or whose online store cannot be read, raises
    :class:`FeatureRepoError`.
    """

    def __init__(
        self, repo_path: str, item_key: str, cache_seconds: float = 60.0, cache_entries: int = 100_000
    ) -> None:
        stores = StorePerThread(repo_path)
        service, views = read_service(stores)
        self.item_key = item_key
        self.views = [ViewReader(stores, view, cache_seconds, cache_entries) for view in views]
        for view in self.views:
            view.probe()
        self.match = [tuple(pair) for pair in json.loads(service.tags.get(MATCH_TAG, "[]"))]
        self.sequence_match = [tuple(pair) for pair in json.loads(service.tags.get(SEQUENCE_MATCH_TAG, "[]"))]
        self.stored = {feature for view in self.views for feature in view.features}
        self.stored |= {match_feature(left, right) for left, right in self.match}
        self.stored |= {name for _, _, name in self.sequence_match}
        self.model_version = service.tags.get("model_version", "")
        self.served = {feature: SERVED.labels(feature) for view in self.views for feature in view.numeric}

    def sent_by_request(self, names: Iterable[str]) -> list[str]:
        """Those of ``names`` a request sends besides the ids: the ones this store does not keep."""
        return [name for name in names if name not in self.stored and name != self.item_key]

    def held_ids(self, key: str) -> list[str]:
        """The ids of ``key`` the store holds, in the snapshot table its view keyed by ``key`` alone was materialized
        from (``[]`` when no view is keyed by it alone); a :class:`FeatureRepoError` when that table cannot be read::

            features.held_ids("listing_id")[:3]   # ['l00001', 'l00002', 'l00004']
        """
        view = next((view for view in self.views if view.keys == [key]), None)
        if view is None:
            return []
        table = snapshot_table(view.name, view.source, view.stores.repo_path)
        return [str(value) for value in pq.read_table(table, columns=[key]).column(key).to_pylist()]

    def fill(self, body: Any) -> Any:
        """The request body with every stored feature added to each instance's candidates (columns).

        A body with unknown top-level fields, and an instance the parser refuses before it reads the candidates
        (not an object, unknown fields, a context that is not an object), are left as they are, for the parser's
        message. (A KServe v2 request's candidates go to :meth:`assemble` with ``tensors``.)
        """
        if not isinstance(body, dict) or not isinstance(body.get("instances"), list) or not body.keys() <= BODY_FIELDS:
            return body  # the request parser refuses it with its own message
        for index, instance in enumerate(body["instances"]):
            if not isinstance(instance, dict) or not instance.keys() <= INSTANCE_FIELDS:
                continue
            context = instance.get("context", {})
            if not isinstance(context, dict):
                continue
            instance["candidates"] = self.assemble(context or {}, instance.get("candidates"), index, at_least_one=True)
        return body

    def assemble(
        self,
        context: Mapping[str, Any],
        candidates: Any,
        index: int = 0,
        tensors: bool = False,
        at_least_one: bool = False,
    ) -> dict[str, Any]:
        """Candidate columns: the ids sent (lists), plus every stored feature (NumPy; context-level ones broadcast).

        The candidates are checked first, with the parser's messages (shape, columns of one length, and with
        ``at_least_one``, a request's, at least one candidate: a batch-rank chunk may be empty), then that
        no stored feature was sent and that the ids were: each a :class:`RequestError` naming the place
        (``instances[3].candidates``; the input tensor when ``tensors``: a KServe v2 request). The join takes the
        ids' length for every row.
        """
        where = INPUTS if tensors else f"instances[{index}]"
        columns: dict[str, Any] = _as_columns(candidates, f"{where}.candidates")
        size = len(candidates) if isinstance(candidates, list) else column_count(columns, f"{where}.candidates")
        if size == 0 and at_least_one:
            raise RequestError(empty_candidates(f"{where}.candidates"))
        self._refuse_sent(context, columns, where, tensors)
        if self.item_key not in columns:
            raise RequestError(self._no_ids(context, where, size, tensors))
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

    def _refuse_sent(self, context: Mapping[str, Any], columns: Mapping[str, Any], where: str, tensors: bool) -> None:
        """A :class:`RequestError` naming the stored features the request sent (the input tensors, for v2)."""
        if tensors:
            sent = sorted(self.stored.intersection(context) | self.stored.intersection(columns))
            if sent:
                tensors_sent = ("input tensor " if len(sent) == 1 else "input tensors ") + first_few(
                    list(map(repr, sent)), MOST_NAMED
                )
                raise RequestError(
                    f"{tensors_sent} {come_from_the_store(sent)}; send ids only "
                    "(GET /v2/models/<name> lists the inputs a request sends)"
                )
            return
        for place, keys in (("context", context), ("candidates", columns)):
            sent = sorted(self.stored.intersection(keys))
            if sent:
                raise RequestError(f"{where}.{place}: {', '.join(sent)} {come_from_the_store(sent)}; send ids only")

    def _no_ids(self, context: Mapping[str, Any], where: str, size: int, tensors: bool) -> str:
        """Why candidates without the item ids are refused: the ids sent once for all (context, a [1] tensor), or
        not at all."""
        key = self.item_key
        if tensors and key in context:
            return (
                f"input tensor '{key}' has shape [1]; the others have {size} rows: with a feature store, "
                f"send one id per candidate (shape [{size}])"
            )
        if tensors:
            return f"no input tensor '{key}': with a feature store, send '{key}' ids, one per candidate (shape [N])"
        if key in context:
            return (
                f"{where}.context.{key}: with a feature store, send '{key}' ids in {where}.candidates, "
                "one per candidate, not in the context"
            )
        return f"{where}.candidates lack '{key}': with a feature store, send '{key}' ids, one per candidate"

    def _join(self, view: ViewReader, context: Mapping[str, Any], columns: dict[str, Any], size: int) -> None:
        """Add the view's features: one lookup per distinct key, then one NumPy gather per feature."""
        codes, keys = _distinct_keys(view.keys, context, columns, size)
        values = view.values(keys)
        for feature in view.features:
            columns[feature] = values[feature][codes]


def come_from_the_store(names: list[str]) -> str:
    """The verb of a refusal of stored features sent, agreeing with how many there are.

    >>> come_from_the_store(["price"]), come_from_the_store(["category", "price"])
    ('comes from the feature store', 'come from the feature store')
    """
    return f"{'comes' if len(names) == 1 else 'come'} from the feature store"


def open_online_features(
    repo: str,
    item_key: str,
    model_features: Iterable[str],
    cache_seconds: float = 60.0,
    cache_entries: int = 100_000,
) -> OnlineFeatures:
    """:class:`OnlineFeatures` of ``repo`` for a model that reads ``model_features``; a repo that is not one
    ``ranker materialize`` wrote, or that does not fit the model, is one :class:`UserError` line naming it."""
    try:
        features = OnlineFeatures(repo, item_key, cache_seconds, cache_entries)
    except FeatureRepoError as error:
        raise UserError(f"--feature-store {repo}: {NOT_A_REPO} ({error})") from None
    require_fit(repo, features.stored, model_features)
    return features


def require_fit(repo: str, stored: Iterable[str], model_features: Iterable[str]) -> None:
    """A one-line :class:`UserError` naming the features when the repo's ``stored`` ones do not fit the model's
    (:func:`model_mismatch`)."""
    mismatch = model_mismatch(stored, model_features)
    if mismatch:
        raise UserError(
            f"--feature-store {repo}: the repo does not fit the model: it {mismatch}; "
            "materialize the extraction the model was trained on"
        )


def model_mismatch(stored: Iterable[str], model_features: Iterable[str]) -> str:
    """What keeps a repo that provides ``stored`` from serving a model that reads ``model_features`` ("" if nothing).

    Missing: the model's history features (``hist_*``, ``match_*``) the repo does not provide (they would be
    NaN: only the store has them; raw features the repo does not store may come with the request). Extra: stored
    features the model does not read. They are refused, not ignored: the server would add them to every request
    (which the parser refuses), and a repo with other features comes from another extraction, whose shared
    features may differ too (another prior strength, time bucket or cutoff).

    >>> model_mismatch({"hist_user_impressions", "price"}, ["hist_user_impressions", "hist_shop_impressions"])
    'lacks hist_shop_impressions (the model reads them from the store) and stores price (the model does not read them)'
    """
    stored, model = set(stored), set(model_features)
    history = (HISTORY_PREFIX, MATCH_PREFIX)
    missing = sorted(name for name in model - stored if name.startswith(history))
    extra = sorted(stored - model)
    problems = []
    if missing:
        problems.append(f"lacks {first_few(missing, MOST_NAMED)} (the model reads them from the store)")
    if extra:
        problems.append(f"stores {first_few(extra, MOST_NAMED)} (the model does not read them)")
    return " and ".join(problems)


def read_service(stores: StorePerThread) -> tuple[Any, list[Any]]:
    """The repo's ``ranker`` feature service and its views; a :class:`FeatureRepoError` saying why when the repo
    is not one ``ranker materialize`` wrote."""
    check_repo_folder(stores.repo_path)
    try:
        store = stores.get()
        check_local_stores(store.config)
        service = store.get_feature_service(FEATURE_SERVICE)
        return service, [store.get_feature_view(projection.name) for projection in service.feature_view_projections]
    except FeatureRepoError:
        raise
    except Exception as error:  # Feast raises its own types for a broken config, registry or service
        raise FeatureRepoError(_one_line(error)) from error


def check_repo_folder(repo: str) -> None:
    """A :class:`FeatureRepoError` unless ``repo`` is a folder with ``feature_store.yaml``."""
    path = Path(repo)
    if not path.exists():
        raise FeatureRepoError("no such folder")
    if not path.is_dir():
        raise FeatureRepoError("a file, not a folder")
    if not (path / "feature_store.yaml").is_file():
        raise FeatureRepoError("no feature_store.yaml")


def check_local_stores(config: Any) -> None:
    """A :class:`FeatureRepoError` when the repo's local registry file or SQLite online store is missing.

    Checked before Feast opens them: it would create an empty registry or database and then fail on every read.
    """
    for what, path in _local_store_files(config):
        if not path.is_file():
            raise FeatureRepoError(f"no {what} at {path}; copy the repo with its data/ or run ranker materialize")


def snapshot_table(view: str, source: Any, repo: str) -> Path:
    """The Parquet snapshot a view was materialized from: its ``FileSource`` path, or, in a repo copied elsewhere,
    the file of that name under the repo's ``data/offline`` (where ``ranker materialize`` copies it); a
    :class:`FeatureRepoError` for another kind of source (BigQuery, ...) or a file that is in neither place."""
    path = getattr(source, "path", None)
    if not isinstance(path, str) or "://" in path:
        raise FeatureRepoError(
            f"the view {view!r} reads {type(source).__name__} {path or source.name!r}, not a local Parquet snapshot"
        )
    for table in (Path(path), Path(repo, "data", "offline", Path(path).name)):
        if table.is_file():
            return table
    raise FeatureRepoError(f"the snapshot of the view {view!r} is not at {path} nor in {repo}/data/offline")


def _local_store_files(config: Any) -> list[tuple[str, Path]]:
    """The repo config's local files: a file registry's and a SQLite online store's (paths relative to the repo)."""
    files = []
    registry = config.registry
    if registry.registry_type == "file" and "://" not in str(registry.path):
        files.append(("registry", Path(config.repo_path or ".", registry.path)))
    online = config.online_store
    if str(getattr(online, "type", "")) in ("sqlite", SQLITE_STORE_CLASS):
        files.append(("online store", Path(config.repo_path or ".", online.path)))
    return files


def _one_line(error: BaseException) -> str:
    """An error's message on one line (Feast's and pydantic's may span several)."""
    return " ".join(str(error).split()) or type(error).__name__


def _as_columns(candidates: Any, where: str) -> dict[str, Any]:
    """Candidates as columns (a list of objects is turned into one list per key; an object's values pass as they
    are, for :func:`column_count` to check); anything else is refused with the parser's message."""
    check_candidates(candidates, where)
    if isinstance(candidates, dict):
        return dict(candidates)
    keys = dict.fromkeys(key for row in candidates for key in row)
    return {key: [row.get(key) for row in candidates] for key in keys}


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
