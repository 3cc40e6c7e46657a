"""Feature assembly for batch ranking: candidate rows in, the model's inputs out, bad rows to dead letters.

:class:`FeatureAssembler` is the one place that turns a chunk of candidate rows
into model inputs. Without a feature store the candidates table carries the
model's raw features itself (the columns ``ranker serve`` accepts and the
extracted examples hold). With one (``--feature-store``, the Feast repo that
``ranker materialize`` wrote), the table carries ids and request context only
(user, listing, campaign, query, ...) and every stored feature is joined from
the online store by the very code that serves ``ranker serve --feature-store``
(:class:`serving.feature_store.OnlineFeatures`), so a batch ranking scores what
the online ranking would::

    assembler = FeatureAssembler(feature_spec, user_column="user_id", item_column="listing_id",
                                 campaign_column="module_name")
    good, dead = assembler.assemble(chunk)    # chunk: a DataFrame with _file and _row columns

    stored = StoredFeatures.of("work_dir/feature_repo", item_key="listing_id")
    assembler = FeatureAssembler(feature_spec, "user_id", "listing_id", stored=stored)
    good, dead = assembler.assemble(chunk, stored.open())   # open() once per worker: it holds the store

Stored features are read from the store only: a column of the same name in the
table is not read (so extracted examples can be ranked as they are).

The user and item ids are read from ``user_column`` and ``item_column``, also
where the table names them otherwise than the model's id roles (``customer``,
``item`` for ``user_id``, ``listing_id``): they are the model's id features and
the keys of the store's joins (:attr:`FeatureAssembler.id_sources`)::

    assembler = FeatureAssembler(feature_spec, "customer", "item")
    stored = StoredFeatures.of("work_dir/feature_repo", "listing_id", columns=assembler.id_sources)

The model's module (its ``module_name`` input) is read as extraction read it
for training: from the spec's module role column (``tab`` on KuaiRand), else
from a ``module_name`` column (extracted examples hold it under that name);
with neither, or an empty value, a model that knows a single module scores
that one (as ``ranker serve`` does). A campaign column that is one of these
columns (the default: the module role) is that module::

    assembler = FeatureAssembler(kuairand_spec, "user_id", "video_id", campaign_column="tab")
    assembler.module_columns    # ("tab", "module_name"): the first present is read

A row is dead-lettered (file, row, reason) when a required column (user, item,
campaign) is absent or empty, the module cannot be told, a numeric feature
holds something that is not a number, or a string feature a value that is not
text (a list feature takes a list of strings, joined by ``|`` as the server
joins it, or the ``|``-joined string). A missing feature value is not an
error: it is scored as missing, as the server does (NaN for numbers, ``""``
for strings).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ranker_core.schema import LIST_SEPARATOR, MODULE, FeatureSpec
from serving.request import FLOAT32_MAX

if TYPE_CHECKING:
    from serving.feature_store import OnlineFeatures

FILE = "_file"
ROW = "_row"
# A batch run reads a snapshot that does not change while it runs: cache each looked-up id for an hour.
STORE_CACHE_SECONDS = 3600.0
# Values that are no scalar: a list feature's tokens (Parquet list columns read as NumPy arrays), or a mistake.
CONTAINERS = (list, tuple, np.ndarray, dict, set)
# What pandas infers for object columns that hold no container: no check per value is needed.
SCALAR_KINDS = frozenset(
    {"string", "empty", "bytes", "floating", "integer", "mixed-integer-float", "decimal", "boolean"}
)


def dead_letter(path: str, row: int, reason: str) -> dict[str, Any]:
    """One dead-letter record: the source file, its 1-based row number and why the row was not ranked."""
    return {"file": path, "row": int(row), "reason": reason}


@dataclasses.dataclass(frozen=True)
class StoredFeatures:
    """The features a Feast repo stores, and the id and context columns its joins read from the table.

    Picklable (Beam ships it to workers); :meth:`open` connects to the store, once per worker.
    """

    repo: str
    item_key: str
    names: frozenset[str]
    keys: tuple[tuple[str, str], ...]  # (the store's name of an id or context value, the table column it is in)
    model_version: str = ""

    @classmethod
    def of(cls, repo: str, item_key: str, columns: Mapping[str, str] | None = None) -> StoredFeatures:
        """Read the repo's ``ranker`` feature service (a missing or broken repo raises Feast's error).

        ``columns``: the table's column of each id the table names otherwise than the store (``{"listing_id":
        "item"}``); the other ids and context values are read from the columns named as in the store.
        """
        store = _online_features(repo, item_key)
        sides = [name for pair in store.match for name in pair]
        views = [key for view in store.views for key in view.keys]
        names = [name for name in dict.fromkeys([item_key, *views, *sides]) if name not in store.stored]
        keys = tuple((name, (columns or {}).get(name, name)) for name in names)
        return cls(repo, item_key, frozenset(store.stored), keys, store.model_version)

    @property
    def id_columns(self) -> tuple[str, ...]:
        """The table columns the joins read."""
        return tuple(dict.fromkeys(column for _, column in self.keys))

    def open(self) -> OnlineFeatures:
        return _online_features(self.repo, self.item_key)

    def join(self, chunk: pd.DataFrame, store: OnlineFeatures) -> pd.DataFrame:
        """The chunk with every stored feature (as the server joins them); the table's own copies are replaced."""
        ids = {key: _text(chunk, column) for key, column in self.keys}
        stored = store.assemble({}, ids)
        return chunk.assign(**{name: stored[name] for name in sorted(self.names)})


def _online_features(repo: str, item_key: str) -> OnlineFeatures:
    from serving.feature_store import OnlineFeatures

    return OnlineFeatures(repo, item_key=item_key, cache_seconds=STORE_CACHE_SECONDS)


@dataclasses.dataclass(frozen=True)
class FeatureAssembler:
    """Candidate rows -> the model's inputs (strings and float32), plus the user, item and campaign keys."""

    feature_spec: FeatureSpec
    user_column: str
    item_column: str
    campaign_column: str = MODULE
    stored: StoredFeatures | None = None  # with a feature store: these come from it, not from the table

    @property
    def required_columns(self) -> tuple[str, ...]:
        """Columns every row must have a value in (a campaign column that holds the module: see :attr:`modules`)."""
        campaign = "" if self.campaign_is_module else self.campaign_column
        return tuple(dict.fromkeys(column for column in (self.user_column, self.item_column, campaign) if column))

    @property
    def module_columns(self) -> tuple[str, ...]:
        """The columns the model's module is read from, the first present in a chunk: the campaign column where it
        is one of the others, the spec's module role (as extraction read it), ``module_name``."""
        sources = (self.feature_spec.roles.get("module") or MODULE, MODULE)
        first = (self.campaign_column,) if self.campaign_column in sources else ()
        return tuple(dict.fromkeys((*first, *sources)))

    @property
    def campaign_is_module(self) -> bool:
        """Whether the campaign column is the model's module (then its values are :meth:`modules`)."""
        return bool(self.campaign_column) and self.campaign_column in self.module_columns

    @property
    def default_module(self) -> str | None:
        """The module of a row without one: the spec's only module (as ``ranker serve`` has it), else none."""
        modules = self.feature_spec.modules
        return modules[0] if len(modules) == 1 else None

    def modules(self, chunk: pd.DataFrame, reasons: np.ndarray | None = None) -> np.ndarray | None:
        """The model's module of each row, as text (see :attr:`module_columns`); an empty value is the
        :attr:`default_module`, else a dead letter in ``reasons``. None when the chunk has no module column and the
        model several modules (with ``reasons``: all its rows are dead letters)."""
        default = self.default_module
        for column in self.module_columns:
            if column in chunk:
                values = _text(chunk, column)
                missing = values == ""
                if default is not None:
                    return np.where(missing, default, values) if missing.any() else values
                if reasons is not None:
                    _note(reasons, missing, f"{column}: missing value")
                return values
        if default is not None:
            return np.full(len(chunk), default, dtype=object)
        if reasons is not None:
            _note(reasons, np.ones(len(chunk), dtype=bool), self._missing_module)
        return None

    @property
    def _missing_module(self) -> str:
        columns = self.module_columns
        if len(columns) == 1:
            return f"missing column {columns[0]!r}"
        named = " or ".join(repr(column) for column in columns)
        return f"missing column {columns[0]!r} (the model's module: a column {named})"

    def campaigns(self, chunk: pd.DataFrame) -> np.ndarray | None:
        """The campaign of each row as text (``""``: none); None without a campaign column in the chunk."""
        if self.campaign_is_module:
            return self.modules(chunk)
        if not self.campaign_column or self.campaign_column not in chunk:
            return None
        return _text(chunk, self.campaign_column)

    @property
    def id_sources(self) -> dict[str, str]:
        """The model's user and item id (its id roles: features and the store's keys) -> the table column holding
        it, where the two names differ (``{"listing_id": "item"}`` for ``item_column="item"``)."""
        roles = self.feature_spec.roles
        ids = {roles.get("user_id", self.user_column): self.user_column}
        ids[roles.get("item_id", self.item_column)] = self.item_column
        return {name: column for name, column in ids.items() if name != column}

    @property
    def input_columns(self) -> tuple[str, ...]:
        """Every column the ranking reads from the table: the keys and the model's inputs not in the store."""
        stored = self.stored.names if self.stored else frozenset()
        ids = self.stored.id_columns if self.stored else ()
        sources = self.id_sources
        features = [sources.get(name, name) for name in self.feature_spec.feature_names if name not in stored]
        return tuple(dict.fromkeys((*self.required_columns, *self.module_columns, *ids, *features)))

    def assemble(
        self, chunk: pd.DataFrame, store: OnlineFeatures | None = None
    ) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
        """The rows that can be scored (inputs cast, keys as text) and the dead letters of the others.

        ``store``: the opened :attr:`stored` features, required when the assembler has them.
        """
        if self.stored is not None:
            if store is None:
                raise ValueError("this assembler joins stored features: pass store=assembler.stored.open()")
            chunk = self.stored.join(chunk, store)
        reasons = np.full(len(chunk), None, dtype=object)
        out = {FILE: chunk[FILE].to_numpy(), ROW: chunk[ROW].to_numpy()}
        for column in self.required_columns:
            out[column] = self._required(chunk, column, reasons)
        modules = self.modules(chunk, reasons)
        out[MODULE] = np.full(len(chunk), "", dtype=object) if modules is None else modules
        if self.campaign_is_module:
            out[self.campaign_column] = out[MODULE]
        sources = self.id_sources
        for name in self.feature_spec.feature_names:
            if name in out:
                continue
            if sources.get(name) in out:  # an id feature in a key column of another name: the key's text
                out[name] = out[sources[name]]
                continue
            if name not in chunk:
                continue  # an absent feature is scored as missing
            feature = self.feature_spec.feature(name)
            if feature.is_string:
                out[name] = _strings(chunk, name, reasons, joined=feature.kind == "list")
            else:
                out[name] = _number(chunk, name, reasons)
        frame = pd.DataFrame(out, copy=False)
        bad = np.flatnonzero(pd.notna(reasons))
        if not len(bad):
            return frame, []
        dead = [dead_letter(frame[FILE].iat[i], frame[ROW].iat[i], reasons[i]) for i in bad]
        return frame.drop(index=frame.index[bad]).reset_index(drop=True), dead

    def _required(self, chunk: pd.DataFrame, column: str, reasons: np.ndarray) -> np.ndarray:
        if column not in chunk:
            _note(reasons, np.ones(len(chunk), dtype=bool), f"missing column {column!r}")
            return np.full(len(chunk), "", dtype=object)
        values = _text(chunk, column)
        _note(reasons, values == "", f"{column}: missing value")
        return values


def _note(reasons: np.ndarray, bad: np.ndarray, reason: str) -> None:
    """Record ``reason`` for the bad rows that have no reason yet (a row's first problem is the one shown)."""
    if bad.any():  # most chunks have no bad row: skip the pass over ``reasons``
        reasons[bad & pd.isna(reasons)] = reason


def _text(chunk: pd.DataFrame, column: str) -> np.ndarray:
    """A string column; absent or null values are ``""``, numbers (ids read as numbers) become their text."""
    if column not in chunk:
        return np.full(len(chunk), "", dtype=object)
    text = chunk[column].to_numpy(dtype=object)
    if pd.api.types.infer_dtype(text, skipna=False) in ("string", "empty"):
        return text  # the common case, in one pass: strings, none missing
    text = np.where(pd.isna(text), "", text)
    if pd.api.types.infer_dtype(text, skipna=False) != "string":
        text = np.array([_as_text(value) for value in text], dtype=object)
    return text


def _as_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _strings(chunk: pd.DataFrame, column: str, reasons: np.ndarray, joined: bool) -> np.ndarray:
    """A string feature as extraction wrote it for training: text as read (null is scored as missing), numbers as
    their text (integral floats without ``.0``: Parquet integers with nulls read as floats); for a list feature
    (``joined``) a list of strings (a Parquet list column) is joined by ``|``, as the server joins it. Any other
    value (a list of non-strings, a list for a feature that takes one string) is a dead letter naming it."""
    values = chunk[column]
    if values.dtype.kind == "f":
        return _float_text(values.to_numpy())
    if values.dtype.kind in "iub":
        return values.astype(str).to_numpy(dtype=object)
    array = values.to_numpy(dtype=object)
    if pd.api.types.infer_dtype(array, skipna=True) in ("string", "bytes", "empty"):
        return array  # the common case, in one pass: the ranker casts null to "" as the server does
    text = np.empty(len(array), dtype=object)
    for index, value in enumerate(array):
        value = value.item() if isinstance(value, np.generic) else value
        if isinstance(value, str):
            text[index] = value
        elif isinstance(value, CONTAINERS):
            tokens = list(value)
            if joined and not isinstance(value, (dict, set)) and all(isinstance(token, str) for token in tokens):
                text[index] = LIST_SEPARATOR.join(tokens)
                continue
            text[index] = ""
            if pd.isna(reasons[index]):
                expected = "a string or a list of strings" if joined else "a string"
                reasons[index] = f"{column}: expected {expected}, got {_short(value)}"
        elif value is None or value is pd.NA or (isinstance(value, float) and not np.isfinite(value)):
            text[index] = ""
        else:
            text[index] = _as_text(value)
    return text


def _float_text(numbers: np.ndarray) -> np.ndarray:
    """Floats as extraction's text: integral ones without ``.0``, NaN and infinities as ``""``."""
    integral = np.isfinite(numbers) & (numbers == np.round(numbers))
    text = numbers.astype(str).astype(object)
    text[integral] = numbers[integral].astype(np.int64).astype(str)
    text[~np.isfinite(numbers)] = ""
    return text


def _short(value: Any, most: int = 60) -> str:
    """``value`` for a message (a NumPy array as the list it holds), cut at ``most`` characters."""
    text = repr(value.tolist() if isinstance(value, np.ndarray) else value)
    return text if len(text) <= most else text[: most - 3] + "..."


def _number(chunk: pd.DataFrame, column: str, reasons: np.ndarray) -> np.ndarray:
    """A float32 column; absent, null and ``""`` are NaN; anything else that is not a number, or is not a finite
    float32 (``inf``, ``1e39``: the server refuses them too), is a dead letter."""
    if column not in chunk:
        return np.full(len(chunk), np.nan, dtype=np.float32)
    values = chunk[column]
    if values.dtype.kind in "fiub":
        numbers = values.to_numpy(dtype=np.float64)
    else:
        values = _scalars(values, column, reasons)
        present = values.replace("", None)
        parsed = pd.to_numeric(present, errors="coerce")
        _note_values(reasons, (parsed.isna() & present.notna()).to_numpy(), values, f"{column}: {{!r}} is not a number")
        numbers = parsed.to_numpy(dtype=np.float64)
    too_big = np.abs(numbers) > FLOAT32_MAX  # NaN (missing) is not
    if too_big.any():
        _note_values(reasons, too_big, values, f"{column}: {{!r}} is not a finite float32 number")
        numbers = np.where(too_big, np.nan, numbers)  # a dead letter, never scored (and the chunk is not written to)
    return numbers.astype(np.float32)


def _scalars(values: pd.Series, column: str, reasons: np.ndarray) -> pd.Series:
    """``values`` with every list (or other container: a Parquet list column) null, and a dead letter."""
    if pd.api.types.infer_dtype(values, skipna=True) in SCALAR_KINDS:
        return values  # text (CSV), numbers: no pass per value
    container = np.array([isinstance(value, CONTAINERS) for value in values], dtype=bool)
    for index in np.flatnonzero(container & pd.isna(reasons)):
        reasons[index] = f"{column}: {_short(values.iat[index])} is not a number"
    return values.where(~container, None) if container.any() else values


def _note_values(reasons: np.ndarray, bad: np.ndarray, values: pd.Series, message: str) -> None:
    """Like :func:`_note`, each row's reason ``message`` with the row's value in it."""
    for index in np.flatnonzero(bad & pd.isna(reasons)):
        value = values.iat[index]
        reasons[index] = message.format(value.item() if isinstance(value, np.generic) else value)
