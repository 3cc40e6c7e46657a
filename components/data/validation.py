"""Check a dataset spec against its data before any work: files exist, columns exist, types fit.

    problems = check_data(load_dataset_spec("simulator"), "work/sim/impressions")
    if problems: print("\\n".join(problems))

Every problem names the spec file, the data file and the column. Row-level
problems (one bad value) are not reported here: extraction sends those rows to
the dead-letter output. A column whose every sampled value is malformed is
reported, because that is a wrong type or a wrong column, not a bad row.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from components.data.readers import (
    DataSourceError,
    file_columns,
    is_bigquery_uri,
    read_batches,
    resolve_files,
)
from components.data.rows import parse_batch
from components.data.spec import DatasetSpec, file_splits

SAMPLE_ROWS = 1_000
SAMPLED_FILES = 3  # files whose first rows are parsed
SCHEMA_FILES = 100  # files whose schema or header is read (evenly spaced; a folder may hold thousands)
_NUMERIC_ARROW = ("int", "uint", "float", "double", "bool", "decimal", "timestamp", "date", "halffloat")


def column_roles(spec: DatasetSpec) -> dict[str, str]:
    """Raw column -> where the spec uses it (for error messages)."""
    uses: dict[str, str] = {}
    for role, column in spec.role_names().items():
        uses.setdefault(column, f"columns.{role}")
    for task in spec.tasks:
        for column in task.columns:
            uses.setdefault(column, f"label of task {task.name}")
    for kind in ("categorical", "hashed", "numeric", "list"):
        for column in getattr(spec.features, kind):
            uses.setdefault(column, f"features.{kind}")
    history = spec.history
    for column in (*history.entities, *history.user_by, *(c for pair in history.match for c in pair)):
        uses.setdefault(column, "history")
    return uses


def numeric_columns(spec: DatasetSpec) -> set[str]:
    labels = {column for task in spec.tasks for column in task.columns}
    return {*labels, *spec.features.numeric, *(c for c in (spec.columns.position,) if c)}


def check_data(spec: DatasetSpec, data_uri: str) -> list[str]:
    """Every problem that would make extraction of ``data_uri`` with ``spec`` fail; empty when it can run."""
    if is_bigquery_uri(data_uri) or spec.source.format == "bigquery":
        return []  # BigQuery checks the columns itself when the query or read session starts
    try:
        files = resolve_files(data_uri, spec.source)
    except DataSourceError as error:
        return [f"{spec.origin}: {error}"]
    problems = []
    for path in _evenly_spaced(files, SCHEMA_FILES):
        problems += _schema_problems(spec, path)
    problems += _file_split_problems(spec, files)
    if not problems:
        for path in files[:SAMPLED_FILES]:
            problems += _sample_problems(spec, path)
    return problems


def _evenly_spaced(files: list[str], count: int) -> list[str]:
    if len(files) <= count:
        return files
    return [files[int(index)] for index in np.linspace(0, len(files) - 1, count).round()]


def _schema_problems(spec: DatasetSpec, path: str) -> list[str]:
    try:
        columns = file_columns(path, spec.source)
    except Exception as error:  # an unreadable file is a problem to report, whatever the reader raised
        return [f"{path}: cannot read it as {spec.source.format}: {error}"]
    if spec.source.format == "jsonl":
        return []  # JSONL keys are per row: a row without a needed key is a dead letter
    uses, numeric = column_roles(spec), numeric_columns(spec)
    problems = []
    for column, use in uses.items():
        if column not in columns:
            problems.append(f"{path}: missing column {column!r} ({use} in {spec.origin})")
        elif spec.source.format == "parquet" and column in numeric and not columns[column].startswith(_NUMERIC_ARROW):
            problems.append(
                f"{path}: column {column!r} has type {columns[column]}, but {use} in {spec.origin} needs numbers"
            )
    return problems


def _file_split_problems(spec: DatasetSpec, files: list[str]) -> list[str]:
    try:
        file_splits(spec, files)
    except ValueError as error:
        return [f"{spec.origin}: {error}"]
    return []


def _sample_problems(spec: DatasetSpec, path: str) -> list[str]:
    batch = next(read_batches(path, spec.source, spec.required_columns, batch_rows=SAMPLE_ROWS), None)
    if batch is None or not len(batch.frame):
        return [] if batch is None or not batch.errors else [f"{path}: no readable row in the first {SAMPLE_ROWS}"]
    batch.frame = batch.frame.iloc[:SAMPLE_ROWS]
    batch.rows = batch.rows[:SAMPLE_ROWS]
    parsed = parse_batch(batch, spec, file_index=0, path=path)
    by_column = Counter(letter["reason"].split(":", 1)[0] for letter in parsed.dead_letters)
    sampled = len(batch.frame)
    problems = []
    for column, bad in sorted(by_column.items()):
        if bad == sampled:
            example = next(letter["reason"] for letter in parsed.dead_letters if letter["reason"].startswith(column))
            problems.append(
                f"{path}: every sampled value of column {column!r} is malformed (wrong type or wrong column?), "
                f"e.g. {example}"
            )
    return problems
