"""Turn raw rows into the canonical impression contract, sending every malformed row to a dead letter.

:func:`parse_batch` works on a whole batch at once (pandas/NumPy); only the
rare malformed rows are handled one by one, to format their reason::

    parsed = parse_batch(raw_batch, spec, file_index=0, path="logs/part-0.parquet")
    parsed.frame          # request_id, timestamp, module_name, position, label_<task>, features, ...
    parsed.dead_letters   # [{"file": ..., "row": 17, "reason": "position: -1 is negative", "record": {...}}]

A row is malformed when a role column (ids, timestamp, module, position) is
missing or mistyped, a timestamp is outside [1970-01-01, 2100-01-01), a label
is not 0/1 (or its expression's inputs are not numbers), or a numeric feature
holds something that is not a finite number. Missing feature values are not
errors: numeric ones become NaN, the others "".
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
import pandas as pd

from components.data.expressions import LabelExpression
from components.data.readers import RawBatch, file_name
from components.data.spec import DatasetSpec
from ranker_core.schema import DEFAULT_MODULE, LIST_SEPARATOR, MODULE, POSITION, REQUEST_ID, TIMESTAMP, label_key

UID = "_uid"  # int64: file index << ROW_BITS | row number; unique per raw row
FILE_INDEX = "_file"
ROW_BITS = 40
EARLIEST_TIMESTAMP = 0  # 1970-01-01T00:00:00Z in epoch seconds
LATEST_TIMESTAMP = 4_102_444_800  # 2100-01-01T00:00:00Z: later is a unit mistake (milliseconds?), not an event


@dataclasses.dataclass
class ParsedBatch:
    """Valid rows in the canonical layout and the dead letters of one raw batch."""

    frame: pd.DataFrame
    dead_letters: list[dict[str, Any]]
    rows_read: int
    # column -> (rows with a problem in it, the first one's reason): a row counts under every column it has a
    # problem in, where its dead letter names the first only
    problems_by_column: dict[str, tuple[int, str]] = dataclasses.field(default_factory=dict)


class _Reasons:
    """The first problem found in each row of a batch."""

    def __init__(self, size: int) -> None:
        self.reasons = np.full(size, None, dtype=object)
        self.by_column: dict[str, tuple[np.ndarray, str]] = {}  # column -> (its bad rows, the first reason)

    def add(self, bad: np.ndarray, column: str, values: Any, problem: str) -> None:
        if bad.any():
            rows, first = self.by_column.get(column, (np.zeros(len(bad), dtype=bool), ""))
            first = first or self._reason(column, values, int(np.argmax(bad)), problem)
            self.by_column[column] = (rows | bad, first)
        for index in np.flatnonzero(bad & pd.isna(self.reasons)):
            self.reasons[index] = self._reason(column, values, index, problem)

    @staticmethod
    def _reason(column: str, values: Any, index: int, problem: str) -> str:
        value = values.iloc[index] if isinstance(values, pd.Series) else values[index]
        return f"{column}: {_show(value)} {problem}"

    def by_column_counts(self) -> dict[str, tuple[int, str]]:
        return {column: (int(rows.sum()), first) for column, (rows, first) in self.by_column.items()}

    @property
    def bad(self) -> np.ndarray:
        return ~pd.isna(self.reasons)


def _show(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "missing value"
    return repr(value.item() if isinstance(value, np.generic) else value)


def _missing(values: pd.Series) -> np.ndarray:
    """Null, or an empty string (how CSV spells a missing cell)."""
    missing = values.isna().to_numpy()
    if values.dtype == object:
        missing |= (values == "").to_numpy()
    return missing


def _as_number(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Float values and a mask of present values that are not finite numbers."""
    if values.dtype == bool:
        return values.to_numpy(dtype=float), np.zeros(len(values), dtype=bool)
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return numbers, ~_missing(values) & ~np.isfinite(numbers)


def _as_text(values: pd.Series) -> np.ndarray:
    """Strings; null becomes "" and integral floats lose their ".0" (Parquet ints with nulls read as floats)."""
    if values.dtype.kind == "f":
        numbers = values.to_numpy()
        integral = np.isfinite(numbers) & (numbers == np.round(numbers))
        text = values.astype(str).to_numpy(dtype=object)
        text[integral] = numbers[integral].astype(np.int64).astype(str)
        text[~np.isfinite(numbers)] = ""
        return text
    text = values.astype(str).to_numpy(dtype=object)
    text[values.isna().to_numpy()] = ""
    return text


def _as_token_list(values: pd.Series, separator: str) -> np.ndarray:
    """List-valued cells (arrays, JSON lists or separated strings) joined by ``LIST_SEPARATOR``."""

    def join(value: Any) -> str:
        if isinstance(value, (list, tuple, np.ndarray)):
            return LIST_SEPARATOR.join(str(token) for token in value if token is not None and str(token))
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return ""
        return LIST_SEPARATOR.join(token.strip() for token in str(value).split(separator) if token.strip())

    return np.array([join(value) for value in values], dtype=object)


def _as_epoch_seconds(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Epoch seconds as floats (numbers, datetimes or ISO-8601 strings) and a mask of unparseable values."""
    if pd.api.types.is_datetime64_any_dtype(values):
        bad = values.isna().to_numpy()
        seconds = values.to_numpy(dtype="datetime64[s]").astype(np.int64).astype(float)
        return np.where(bad, np.nan, seconds), bad
    numbers, bad = _as_number(values)
    bad = bad | _missing(values)
    if bad.any() and values.dtype == object:
        parsed = pd.to_datetime(values[bad], errors="coerce", utc=True, format="ISO8601")
        ok = parsed.notna().to_numpy()
        numbers[np.flatnonzero(bad)[ok]] = parsed[ok].astype("int64").to_numpy() // 1_000_000_000
        bad[np.flatnonzero(bad)[ok]] = False
    return numbers, bad


def parse_batch(batch: RawBatch, spec: DatasetSpec, file_index: int, path: str) -> ParsedBatch:
    """Validate and convert one raw batch; see the module docstring for what counts as malformed."""
    raw, size = batch.frame, len(batch.frame)
    for column in spec.required_columns:
        if column not in raw.columns:
            raw[column] = None
    reasons = _Reasons(size)
    out: dict[str, Any] = {UID: (np.int64(file_index) << ROW_BITS) | batch.rows, FILE_INDEX: np.full(size, file_index)}
    roles = spec.columns
    for role, column in (("user_id", roles.user_id), ("item_id", roles.item_id), ("request_id", roles.request_id)):
        if column:
            reasons.add(_missing(raw[column]), column, raw[column], f"is not a valid {role}")
            out[column if role != "request_id" else REQUEST_ID] = _as_text(raw[column])
    if not roles.request_id:
        out[REQUEST_ID] = _row_ids(path, batch.rows)
    out[TIMESTAMP] = _timestamps(raw, roles.timestamp, reasons)
    out[MODULE] = _modules(raw, roles.module, reasons)
    out[POSITION] = _positions(raw, roles.position, reasons)
    for task in spec.tasks:
        out[label_key(task.name)] = _labels(raw, task.column, task.expression, reasons)
    _features(raw, spec, reasons, out)
    frame = pd.DataFrame(out)
    bad = reasons.bad
    dead = [dead_letter(path, int(batch.rows[i]), reasons.reasons[i], raw.iloc[i]) for i in np.flatnonzero(bad)]
    dead += [{"file": path, "row": row, "reason": reason, "record": None} for row, reason in batch.errors]
    return ParsedBatch(frame[~bad].reset_index(drop=True), dead, size + len(batch.errors), reasons.by_column_counts())


def _row_ids(path: str, rows: np.ndarray) -> np.ndarray:
    name = file_name(path)
    return np.array([f"{name}:{row}" for row in rows], dtype=object)


def _timestamps(raw: pd.DataFrame, column: str | None, reasons: _Reasons) -> np.ndarray:
    if not column:
        return np.zeros(len(raw), dtype=np.int64)
    values = raw[column]
    seconds, bad = _as_epoch_seconds(values)
    reasons.add(bad, column, values, "is not a timestamp (epoch seconds or ISO-8601)")
    reasons.add(seconds < EARLIEST_TIMESTAMP, column, values, "is before 1970-01-01")
    reasons.add(
        seconds >= LATEST_TIMESTAMP, column, values, "is after 2100-01-01 (epoch seconds expected: milliseconds?)"
    )
    valid = ~bad & (seconds >= EARLIEST_TIMESTAMP) & (seconds < LATEST_TIMESTAMP)
    return np.floor(np.where(valid, seconds, 0)).astype(np.int64)


def _modules(raw: pd.DataFrame, column: str | None, reasons: _Reasons) -> np.ndarray:
    if not column:
        return np.full(len(raw), DEFAULT_MODULE, dtype=object)
    reasons.add(_missing(raw[column]), column, raw[column], "is not a module name")
    return _as_text(raw[column])


def _positions(raw: pd.DataFrame, column: str | None, reasons: _Reasons) -> np.ndarray:
    if not column:
        return np.zeros(len(raw), dtype=np.int64)
    numbers, bad = _as_number(raw[column])
    reasons.add(bad | _missing(raw[column]), column, raw[column], "is not a position (an integer >= 0)")
    valid = np.nan_to_num(numbers, nan=0.0)
    reasons.add(valid < 0, column, raw[column], "is negative; positions are 0-based")
    reasons.add(valid != np.round(valid), column, raw[column], "is not an integer position")
    return valid.astype(np.int64)


def _as_flag(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`_as_number`, with the text ``true`` / ``false`` (any case: CSV cells) read as 1 / 0."""
    if values.dtype == object:
        try:
            words = values.str.strip().str.lower()  # NaN where a value is not text
        except AttributeError:  # no value is text (JSON booleans, numbers)
            words = None
        if words is not None and words.isin(_FLAG_WORDS).any():
            values = values.where(~words.isin(_FLAG_WORDS), words.map(_FLAG_WORDS))
    return _as_number(values)


_FLAG_WORDS = {"true": 1, "false": 0}


def _labels(raw: pd.DataFrame, column: str | None, expression: str | None, reasons: _Reasons) -> np.ndarray:
    if column:
        numbers, bad = _as_flag(raw[column])
        reasons.add(bad | _missing(raw[column]) | ~np.isin(numbers, (0.0, 1.0)), column, raw[column], "is not 0/1")
        return np.nan_to_num(numbers).astype(np.int8)
    rule = LabelExpression(expression or "")
    inputs = {}
    for name in rule.columns:
        if name in rule.text_columns:
            reasons.add(_missing(raw[name]), name, raw[name], f"is missing (needed by {expression!r})")
            inputs[name] = _as_text(raw[name])
            continue
        numbers, bad = _as_number(raw[name])
        reasons.add(bad | _missing(raw[name]), name, raw[name], f"is not a number (needed by {expression!r})")
        inputs[name] = numbers
    return rule.evaluate(inputs).astype(np.int8)


def _features(raw: pd.DataFrame, spec: DatasetSpec, reasons: _Reasons, out: dict[str, Any]) -> None:
    features = spec.features
    for column in features.numeric:
        numbers, bad = _as_number(raw[column])
        reasons.add(bad, column, raw[column], "is not a finite number")
        out[column] = numbers
    for column in (*features.categorical, *features.hashed):
        out[column] = _as_text(raw[column])
    for column in features.list:
        out[column] = _as_token_list(raw[column], spec.source.list_separator)
    history = spec.history
    for column in (*history.entities, *history.user_by, *(c for pair in history.match for c in pair)):
        if column not in out:
            out[column] = _as_text(raw[column])


def dead_letter(path: str, row: int, reason: str, record: pd.Series) -> dict[str, Any]:
    """One dead-letter line: where the row came from, why it was rejected, and its values."""
    # timestamps as a CSV or JSONL file takes them, floats with every digit (to_json keeps 10 by default)
    values = record.to_json(default_handler=str, date_format="iso", date_unit="ns", double_precision=15)
    return {"file": path, "row": row, "reason": reason, "record": json.loads(values)}


def raw_column_names(spec: DatasetSpec) -> dict[str, str]:
    """Parsed column -> the spec's raw column, where one raw column holds it: the roles and 0/1 label columns
    (features keep their raw names; a label from an expression has no single column)."""
    columns = spec.columns
    roles = {REQUEST_ID: columns.request_id, TIMESTAMP: columns.timestamp, MODULE: columns.module}
    labels = {label_key(task.name): task.column for task in spec.tasks}
    return {parsed: raw for parsed, raw in {**roles, POSITION: columns.position, **labels}.items() if raw}


def row_origin(uid: int) -> tuple[int, int]:
    """(file index, 1-based row number) of a row's ``UID``."""
    return uid >> ROW_BITS, uid & ((1 << ROW_BITS) - 1)
