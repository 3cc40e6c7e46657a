"""Check a dataset spec against its data before any work: files exist, columns exist, types fit.

    problems = check_data(load_dataset_spec("simulator"), "work/sim/impressions")
    if problems: print("\\n".join(problems))
    inspect_data(spec, uri).notes   # sampled rows extraction will send to the dead letters

Every problem names the spec file, the data file and the column. Row-level
problems (one bad value, text that is not UTF-8, an impossible timestamp) are
not problems: extraction sends those rows to the dead-letter output, and the
check only notes the ones in its sample. A column whose every sampled value is
malformed is a problem, because that is a wrong type or a wrong column, not a
bad row.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np

from components.data.readers import (
    DataSourceError,
    file_columns,
    header_hint,
    is_bigquery_uri,
    read_batches,
    resolve_files,
)
from components.data.rows import parse_batch
from components.data.spec import DatasetSpec, file_splits

SAMPLE_ROWS = 1_000
DEAD_LETTER_THRESHOLD = 0.01  # extraction's default: it fails when a larger share of rows is malformed
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
    labels = {column for task in spec.tasks for column in task.columns if column not in task.text_columns}
    return {*labels, *spec.features.numeric, *(c for c in (spec.columns.position,) if c)}


def flag_columns(spec: DatasetSpec) -> set[str]:
    """The 0/1 label columns: read like CSV cells, so a Parquet string of ``true``/``false`` or ``0``/``1`` fits."""
    return {task.column for task in spec.tasks if task.column}


@dataclasses.dataclass
class DataCheck:
    """What checking a spec against its data found.

    ``problems`` stop extraction (no files, a missing column, a wrong type);
    ``notes`` describe sampled rows that extraction will send to the dead letters
    (the run goes on unless their share exceeds its threshold).
    """

    problems: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    sampled_rows: int = 0
    malformed_rows: int = 0  # sampled rows that would be dead letters

    def add(self, other: DataCheck) -> None:
        self.problems += other.problems
        self.notes += other.notes
        self.sampled_rows += other.sampled_rows
        self.malformed_rows += other.malformed_rows

    def threshold_problem(self, threshold: float) -> str:
        """Why extraction will fail when the sampled share of malformed rows exceeds ``threshold``; else ""."""
        share = self.malformed_rows / self.sampled_rows if self.sampled_rows else 0.0
        if share <= threshold:
            return ""
        return (
            f"extraction will fail: {self.malformed_rows} of {self.sampled_rows} sampled rows ({share:.1%}) are "
            f"malformed, more than the dead-letter threshold of {threshold:.1%} (--dead-letter-threshold); fix "
            "them (see the notes) or raise the threshold"
        )


def check_data(spec: DatasetSpec, data_uri: str) -> list[str]:
    """Every problem that would make extraction of ``data_uri`` with ``spec`` fail; empty when it can run."""
    return inspect_data(spec, data_uri).problems


def inspect_data(spec: DatasetSpec, data_uri: str) -> DataCheck:
    """The problems of :func:`check_data` and notes on the sampled rows that would become dead letters."""
    if is_bigquery_uri(data_uri) or spec.source.format == "bigquery":
        return DataCheck()  # BigQuery checks the columns itself when the query or read session starts
    try:
        files = resolve_files(data_uri, spec.source)
    except DataSourceError as error:
        return DataCheck([f"{spec.origin}: {error}"])
    check = DataCheck()
    for path in _evenly_spaced(files, SCHEMA_FILES):
        check.problems += _schema_problems(spec, path)
    check.problems += _file_split_problems(spec, files)
    if not check.problems:
        for path in files[:SAMPLED_FILES]:
            check.add(_check_sample(spec, path))
    return check


def _evenly_spaced(files: list[str], count: int) -> list[str]:
    if len(files) <= count:
        return files
    return [files[int(index)] for index in np.linspace(0, len(files) - 1, count).round()]


def _schema_problems(spec: DatasetSpec, path: str) -> list[str]:
    try:
        columns = file_columns(path, spec.source)
    except DataSourceError as error:
        return [str(error)]
    except Exception as error:  # an unreadable file is a problem to report, whatever the reader raised
        return [f"{path}: cannot read it as {spec.source.format}: {error}"]
    if spec.source.format == "jsonl" or not columns:
        return []  # JSONL keys are per row (a row without a needed key is a dead letter); an empty file has no rows
    uses, numeric, flags = column_roles(spec), numeric_columns(spec), flag_columns(spec)
    if spec.source.format == "csv" and not set(uses) & set(columns):
        return [f"{path}: {header_hint(list(columns), spec.source)}"]  # one line, not one per needed column
    problems = []
    for column, use in uses.items():
        if column not in columns:
            problems.append(f"{path}: missing column {column!r} ({use} in {spec.origin})")
        elif spec.source.format == "parquet" and column in numeric and not _fits(columns[column], flags, column):
            problems.append(
                f"{path}: column {column!r} has type {columns[column]}, but {use} in {spec.origin} needs numbers"
            )
    return problems


def _fits(arrow_type: str, flags: set[str], column: str) -> bool:
    """A numeric Parquet type; for a 0/1 label also text (each value is then checked, a bad one a dead letter)."""
    return arrow_type.startswith(_NUMERIC_ARROW) or (column in flags and arrow_type in _TEXT_ARROW)


_TEXT_ARROW = ("string", "large_string")


def _file_split_problems(spec: DatasetSpec, files: list[str]) -> list[str]:
    try:
        file_splits(spec, files)
    except ValueError as error:
        return [f"{spec.origin}: {error}"]
    return []


def _check_sample(spec: DatasetSpec, path: str) -> DataCheck:
    """Parse the first rows of a file: a column malformed in every row is a problem, other bad rows are notes."""
    try:
        batch = next(read_batches(path, spec.source, spec.required_columns, batch_rows=SAMPLE_ROWS), None)
    except DataSourceError as error:
        return DataCheck([str(error)])
    if batch is None or not (len(batch.frame) or batch.errors):
        return DataCheck()
    if not len(batch.frame):
        row, reason = min(batch.errors)
        return DataCheck([f"{path}: no readable row in the first {SAMPLE_ROWS}, e.g. row {row}: {reason}"])
    batch.frame = batch.frame.iloc[:SAMPLE_ROWS]
    batch.rows = batch.rows[:SAMPLE_ROWS]
    if len(batch.rows):  # the CSV reader reports the malformed lines of a whole block: keep the sampled ones
        batch.errors = [(row, reason) for row, reason in batch.errors if row <= batch.rows[-1]]
    parsed = parse_batch(batch, spec, file_index=0, path=path)
    letters = parsed.dead_letters
    problems = [  # every such column, though each row's dead letter names only its first problem
        f"{path}: every sampled value of column {column!r} is malformed (wrong type or wrong column?), e.g. {example}"
        for column, (bad, example) in sorted(parsed.problems_by_column.items())
        if bad == len(batch.frame)
    ]
    sampled = len(batch.frame) + len(batch.errors)
    notes = [] if problems or not letters else [_dead_letter_note(path, letters, sampled)]
    return DataCheck(problems, notes, sampled, len(letters))


def _reason_key(letter: dict) -> str:
    """The column or kind of a dead letter's reason (how extraction counts them)."""
    return letter["reason"].split(":", 1)[0]


def _dead_letter_note(path: str, letters: list[dict], sampled: int) -> str:
    """``a.csv: 2 of 1000 sampled rows will go to the dead letters (title: 2), e.g. row 162: ...``."""
    counts = ", ".join(f"{key}: {count}" for key, count in sorted(Counter(map(_reason_key, letters)).items()))
    first = min(letters, key=lambda letter: letter["row"])
    note = (
        f"{path}: {len(letters)} of {sampled} sampled rows will go to the dead letters ({counts}), "
        f"e.g. row {first['row']}: {first['reason']}"
    )
    if any("is not UTF-8" in letter["reason"] for letter in letters):
        note += "; text must be UTF-8 (convert a file in another encoding, e.g. iconv -f latin1 -t utf-8)"
    return note
