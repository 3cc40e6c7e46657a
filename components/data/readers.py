"""Readers for raw impression logs: Parquet, CSV and JSONL files (local or ``gs://``) and BigQuery.

Files are read in record batches (pyarrow) through Beam's ``FileSystems``, so
the same code reads a local folder and a Cloud Storage bucket, and extraction
keeps per-row Python work off its hot path::

    files = resolve_files("work/sim/impressions", spec.source)
    for batch in read_batches(files[0], spec.source, spec.required_columns):
        batch.frame, batch.rows, batch.errors   # DataFrame, 1-based row numbers, unreadable rows

Row numbers are 1-based: the record number in a Parquet file, the line number
in a JSONL file and the line number in a CSV file (the header is line 1).

Text must be UTF-8. A CSV cell or a JSONL line that is not is an error of that
row only (``batch.errors``), so extraction dead-letters it and reads on; a file
that cannot be read at all raises :class:`DataSourceError` naming the file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from components.data.spec import SourceSpec
from ranker_core.cli_support import UserError, first_few

BIGQUERY_SCHEME = "bq://"
DEFAULT_BATCH_ROWS = 65_536
SCHEMA_SAMPLE_LINES = 1_000
_CSV_BLOCK_BYTES = 1 << 22  # the CSV text parsed at a time, in whole lines


class DataSourceError(UserError, ValueError):
    """The data URI matches no readable file, or a file cannot be read at all."""


@dataclasses.dataclass
class RawBatch:
    """Rows read from one file: the values as read, their row numbers and the rows that could not be read."""

    frame: pd.DataFrame
    rows: np.ndarray  # int64 1-based row number of each row of ``frame``
    errors: list[tuple[int, str]] = dataclasses.field(default_factory=list)  # (row number, reason)


def is_bigquery_uri(uri: str) -> bool:
    return uri.startswith(BIGQUERY_SCHEME)


def is_glob(uri: str) -> bool:
    """Whether a data URI is a pattern (``logs/*.parquet``) rather than a file or a folder."""
    return any(char in uri for char in "*?[")


def resolve_files(data_uri: str, source: SourceSpec) -> list[str]:
    """The sorted files of a data URI: a file, a glob, or a folder (read with the source's pattern).

    Example::

        resolve_files("gs://bucket/logs/", SourceSpec(format="csv"))   # every gs://bucket/logs/*.csv
    """
    from apache_beam.io.filesystems import FileSystems

    has_glob = is_glob(data_uri)
    pattern = data_uri if has_glob else FileSystems.join(data_uri.rstrip("/"), source.file_pattern)
    files = matching_paths(pattern)
    if not files and not has_glob:
        files = [path for path in matching_paths(data_uri) if not path.endswith("/") and not os.path.isdir(path)]
    if not files:
        raise DataSourceError(f"no {source.format} files match {data_uri!r} (looked for {pattern!r} and the path)")
    return sorted(files)


def matching_paths(pattern: str) -> list[str]:
    """The paths a glob matches on any Beam file system (none when its local folder does not exist)."""
    return [metadata.path for metadata in matching_paths_metadata(pattern)]


def matching_paths_metadata(pattern: str) -> list[Any]:
    """Beam's ``FileMetadata`` (path, size, update time) of what a glob matches (``**`` also below folders)."""
    from apache_beam.io.filesystems import FileSystems

    try:
        results = FileSystems.match([pattern])
    except Exception:  # a missing local folder raises instead of matching nothing
        return []
    return [metadata for result in results for metadata in result.metadata_list]


def read_batches(
    path: str, source: SourceSpec, columns: Sequence[str], batch_rows: int = DEFAULT_BATCH_ROWS
) -> Iterator[RawBatch]:
    """Read the given columns of one file in batches.

    A Parquet or CSV file without one of the columns raises :class:`DataSourceError`;
    an absent JSONL key is a null value in that row.
    """
    readers = {"parquet": _parquet_batches, "csv": _csv_batches, "jsonl": _jsonl_batches}
    if source.format not in readers:
        raise DataSourceError(f"{path}: {source.format!r} is not a file format ({', '.join(readers)})")
    try:
        yield from readers[source.format](path, source, list(columns), batch_rows)
    except DataSourceError:
        raise
    except (OSError, ValueError) as error:  # pyarrow's errors are ValueError / OSError subclasses
        raise DataSourceError(f"{path}: cannot read it as {source.format}: {error}") from error


def parquet_rows(paths: Sequence[str]) -> int:
    """The rows of Parquet files, from their footers (no data is read)."""
    import pyarrow.parquet as pq

    rows = 0
    for path in paths:
        with _open(path) as handle:
            rows += 0 if _is_empty(handle) else pq.ParquetFile(handle).metadata.num_rows
    return rows


def _is_empty(handle: Any) -> bool:
    """Whether an open file has no bytes at all (left where it was read from)."""
    empty = not handle.read(1)
    handle.seek(0)
    return empty


def _open(path: str):
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.open(path)


_ARROW_CODECS = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd"}


def _arrow_stream(path: str):
    """A pyarrow input stream of a file, decompressed by pyarrow when its extension says so.

    (Beam's own decompressing file object does not satisfy pyarrow's file checks.)
    """
    import pyarrow as pa
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    raw = pa.PythonFile(FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED), mode="r")
    codec = next((codec for suffix, codec in _ARROW_CODECS.items() if path.endswith(suffix)), None)
    return pa.CompressedInputStream(raw, codec) if codec else raw


def _parquet_batches(path: str, source: SourceSpec, columns: list[str], batch_rows: int) -> Iterator[RawBatch]:
    import pyarrow.parquet as pq

    with _open(path) as handle:
        if _is_empty(handle):
            return  # a day without traffic: no rows, as an empty CSV or JSONL file
        parquet = pq.ParquetFile(handle)
        present = _present_columns(path, columns, parquet.schema_arrow.names)
        first = 1
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=present):
            frame = batch.to_pandas()
            yield RawBatch(frame, np.arange(first, first + len(frame), dtype=np.int64))
            first += len(frame)


def _csv_batches(path: str, source: SourceSpec, columns: list[str], batch_rows: int) -> Iterator[RawBatch]:
    """Cells are read as bytes and decoded here, so one cell that is not UTF-8 costs its row, not the file.

    The file is parsed in blocks of whole lines (:func:`_csv_blocks`, :func:`_parse_csv_block`): a value cannot
    span lines, so a line whose quoted field never closes is a dead letter of its own, not the start of a field
    that swallows the lines after it.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    header = _csv_header(path, source)
    if not header:
        return  # an empty file: no rows, as an empty JSONL or Parquet file
    present = _present_columns(path, columns, header, source)
    convert = pacsv.ConvertOptions(
        include_columns=present,
        column_types={column: pa.binary() for column in present},
        strings_can_be_null=True,
        **({} if source.null_values is None else {"null_values": list(source.null_values)}),
    )
    with _arrow_stream(path) as handle:
        for block, first_line in _csv_blocks(handle, skip_header=not source.column_names):
            table, rows, errors = _parse_csv_block(block, first_line, header, source.delimiter, convert)
            for start in range(0, table.num_rows, batch_rows):
                batch = table.slice(start, batch_rows).combine_chunks().to_batches()[0]
                chunk = _decoded(batch, rows[start : start + batch_rows])
                chunk.errors, errors = errors + chunk.errors, []
                yield chunk
            if errors:
                yield RawBatch(pd.DataFrame(columns=present), np.zeros(0, dtype=np.int64), errors)


def _csv_blocks(handle: Any, skip_header: bool) -> Iterator[tuple[bytes, int]]:
    """The CSV text in blocks of whole lines (about ``_CSV_BLOCK_BYTES``), the header cut off, each with the file
    line number of its first line. A line longer than a block is gathered in pieces, joined once."""
    pending: list[bytes] = []  # the start of a line that no read so far has ended
    next_line = 1
    while True:
        data = handle.read(_CSV_BLOCK_BYTES)
        end = data.rfind(b"\n") + 1 if data else 0
        if data and not end:
            pending.append(data)
            continue
        block = b"".join([*pending, data[:end] if data else b""])
        pending = [data[end:]] if data[end:] else []
        if skip_header and next_line == 1 and block:
            block, next_line = block[block.find(b"\n") + 1 :] if b"\n" in block else b"", 2
        if block:
            yield block, next_line
            next_line += block.count(b"\n") + (not block.endswith(b"\n"))
        if not data:
            return


def _parse_csv_block(
    block: bytes, first_line: int, header: list[str], delimiter: str, convert: Any
) -> tuple[Any, np.ndarray, list[tuple[int, str]]]:
    """One block's rows (a pyarrow table), their file line numbers and the lines that are no row ``(line, reason)``.

    pyarrow skips blank lines, ends a row at a lone carriage return, and runs a quoted field that never closes on
    to the end of its block (one malformed row, or an error). So when the rows and malformed lines do not add up
    to the block's lines, the block is read again line by line: blank lines are no rows, and a line with a
    carriage return inside, then (only if the count is still off) one whose quote never closes, is a dead letter.
    """
    lines_in_block = block.count(b"\n") + (not block.endswith(b"\n"))
    numbers = np.arange(first_line, first_line + lines_in_block, dtype=np.int64)
    blank = block.startswith((b"\n", b"\r\n")) or b"\n\n" in block or b"\n\r\n" in block
    lone_return = block.count(b"\r") != block.count(b"\r\n")  # either could keep the count right by chance
    if not (blank or lone_return):
        try:
            table, malformed = _read_csv(block, header, delimiter, convert)
            if table.num_rows + len(malformed) == len(numbers):
                return table, *_rows_and_errors(numbers, malformed)
        except ValueError:  # "CSV parser got out of sync with chunker"
            pass
    lines = block.split(b"\n")[: len(numbers)]
    for careful in (False, True):
        problems = {
            index: problem
            for index, line in enumerate(lines)
            if (problem := _line_problem(line, delimiter, len(header), careful))
        }
        kept = [index for index, line in enumerate(lines) if index not in problems and line not in (b"", b"\r")]
        try:
            table, malformed = _read_csv(b"\n".join(lines[index] for index in kept) + b"\n", header, delimiter, convert)
        except ValueError:
            continue
        if table.num_rows + len(malformed) == len(kept):
            rows, errors = _rows_and_errors(numbers[kept], malformed)
            errors += [(int(numbers[index]), f"malformed CSV line: {problem}: {lines[index][:200]!r}")
                       for index, problem in problems.items()]  # fmt: skip
            return table, rows, sorted(errors)
    raise DataSourceError(f"lines {numbers[0]}-{numbers[-1]} cannot be split into CSV rows, one per line")


def _line_problem(line: bytes, delimiter: str, fields: int, careful: bool) -> str:
    """Why a CSV line cannot be read as one row (``""`` when it can): a carriage return inside it; ``careful``,
    also a quoted field that never closes (values may not span lines) or, in a line that is not UTF-8, the wrong
    number of fields (pyarrow cannot report such a line: it fails the read)."""
    if b"\r" in line.rstrip(b"\r"):
        return "a carriage return inside the line"
    if not careful:
        return ""
    utf8 = _is_utf8(line)
    if b'"' not in line and utf8:
        return ""
    values = _csv_fields(line, delimiter)
    if values is None:
        return "a quoted field never closes"
    if not utf8 and len(values) != fields:
        return f"expected {fields} fields, got {len(values)}, in a line that is not UTF-8 text"
    return ""


def _is_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _rows_and_errors(numbers: np.ndarray, malformed: dict[int, str]) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """The line numbers of the rows read, and the malformed lines ``(line, reason)``, from the lines parsed."""
    if not malformed:
        return numbers, []
    return np.delete(numbers, list(malformed)), [(int(numbers[index]), why) for index, why in malformed.items()]


def _read_csv(text: bytes, header: list[str], delimiter: str, convert: Any) -> tuple[Any, dict[int, str]]:
    """pyarrow's table of CSV ``text`` (no header line) and its malformed lines (0-based index: reason)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    malformed: dict[int, str] = {}

    def skip_invalid(row: Any) -> str:
        try:
            shown = repr(row.text[:200])
        except UnicodeDecodeError:  # pyarrow decodes the line for us; a handler that raises fails the read
            shown = "(a line that is not UTF-8 text)"
        malformed[int(row.number) - 1] = (
            f"malformed CSV line: expected {row.expected_columns} fields, got {row.actual_columns}: {shown}"
        )
        return "skip"

    table = pacsv.read_csv(
        pa.BufferReader(text),
        read_options=pacsv.ReadOptions(use_threads=False, column_names=header, block_size=max(1 << 20, len(text) + 1)),
        parse_options=pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=skip_invalid),
        convert_options=convert,
    )
    return table, malformed


def _csv_fields(line: bytes, delimiter: str) -> list[str] | None:
    """The values of one CSV line, or ``None`` when it opens a quoted field it does not close."""
    import csv

    try:
        return next(csv.reader([line.decode("utf-8", "replace").rstrip("\r")], delimiter=delimiter, strict=True), [])
    except csv.Error as error:
        if "end of data" in str(error):
            return None
        return next(csv.reader([line.decode("utf-8", "replace").rstrip("\r")], delimiter=delimiter), [])  # '"a"b'


def _decoded(batch: Any, rows: np.ndarray) -> RawBatch:
    """A record batch of binary CSV cells as text; rows with a cell that is not UTF-8 become errors.

    The whole batch is validated at once (a cast in pyarrow); only a column that
    fails is decoded cell by cell to find its bad rows.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    reasons = np.full(len(rows), None, dtype=object)  # the first undecodable cell of each row
    text = []
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        try:
            text.append(pc.cast(column, pa.string()))
        except pa.ArrowInvalid:
            text.append(_decode_cells(name, column.to_pylist(), reasons))
    bad = pd.notna(reasons)
    frame = pa.RecordBatch.from_arrays(text, names=batch.schema.names).to_pandas()
    errors = [(int(rows[index]), str(reasons[index])) for index in np.flatnonzero(bad)]
    return RawBatch(frame[~bad].reset_index(drop=True), rows[~bad], errors)


def _decode_cells(column: str, cells: list[bytes | None], reasons: np.ndarray) -> Any:
    """Cells decoded one by one: one that is not UTF-8 becomes null and its row's reason (if it has none yet)."""
    import pyarrow as pa

    values = []
    for index, cell in enumerate(cells):
        try:
            values.append(None if cell is None else cell.decode("utf-8"))
        except UnicodeDecodeError as error:
            values.append(None)
            if reasons[index] is None:
                reasons[index] = f"{column}: {_utf8_problem(cell, error)}"
    return pa.array(values, pa.string())


def _utf8_problem(data: bytes, error: UnicodeDecodeError) -> str:
    """``b'caf\\xe9' is not UTF-8 text (byte 0xe9 at offset 3: invalid continuation byte)``."""
    shown = data[: max(40, error.start + 8)]
    return (
        f"{shown!r}{'...' if len(shown) < len(data) else ''} is not UTF-8 text "
        f"(byte 0x{data[error.start]:02x} at offset {error.start}: {error.reason})"
    )


def _present_columns(
    path: str, columns: list[str], names: Sequence[str], source: SourceSpec | None = None
) -> list[str]:
    """The needed columns; a file without one of them cannot be read (its rows would all be incomplete)."""
    missing = [column for column in columns if column not in names]
    if missing:
        hint = (
            f"; {header_hint(list(names), source)}" if source and source.format == "csv" and missing == columns else ""
        )
        raise DataSourceError(f"{path}: missing column(s) {', '.join(map(repr, missing))}{hint}")
    return columns


def header_hint(names: list[str], source: SourceSpec) -> str:
    """Why a CSV header holds none of the columns a spec needs, with what it does hold."""
    return (
        f"its header line names none of the columns the spec needs (it has {len(names)}: "
        f"{first_few([repr(name) for name in names], 8)}): is "
        f"source.delimiter {source.delimiter!r} right, or does the file lack a header line (source.column_names)?"
    )


def _csv_header(path: str, source: SourceSpec) -> list[str]:
    """The columns of a CSV file: its first line, or the spec's ``column_names`` for a file without a header."""
    import csv

    if source.column_names:
        return list(source.column_names)
    with _open(path) as handle:
        header = handle.readline()
    try:
        first_line = header.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataSourceError(f"{path}: the header line is not UTF-8: {_utf8_problem(header, error)}") from None
    return next(csv.reader([first_line], delimiter=source.delimiter), [])


def _jsonl_batches(path: str, source: SourceSpec, columns: list[str], batch_rows: int) -> Iterator[RawBatch]:
    records: list[dict[str, Any]] = []
    rows: list[int] = []
    errors: list[tuple[int, str]] = []
    with _open(path) as handle:
        for line_number, line in enumerate(iter(handle.readline, b""), start=1):  # works on .gz files too
            if not line.strip():
                continue
            record, problem = _json_record(line)
            if problem:
                errors.append((line_number, f"malformed JSON: {problem}"))
                continue
            records.append(record)
            rows.append(line_number)
            if len(records) >= batch_rows:
                yield _jsonl_batch(records, rows, errors, columns)
                records, rows, errors = [], [], []
    if records or errors:
        yield _jsonl_batch(records, rows, errors, columns)


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")  # \ud800-\udfff: half of a UTF-16 pair


def _json_record(line: bytes) -> tuple[dict[str, Any], str]:
    """A JSONL line as an object, or why it is not one (not UTF-8, not JSON, not an object, not text)."""
    try:
        record = json.loads(line.rstrip(b"\r\n"))  # a cut line's open string ends at its end, not at a newline
    except UnicodeDecodeError as error:
        return {}, _utf8_problem(line, error)
    except json.JSONDecodeError as error:
        return {}, str(error)
    if not isinstance(record, dict):
        return {}, f"a line must be an object, got {type(record).__name__}"
    if _SURROGATE_ESCAPE.search(line) and not _is_text(record):
        return {}, "a \\u escape is half of a UTF-16 surrogate pair, not text"
    return record, ""


def _is_text(record: dict[str, Any]) -> bool:
    """Whether every string of a parsed record can be written as UTF-8 (a lone surrogate cannot)."""
    try:
        json.dumps(record, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _jsonl_batch(records: list[dict], rows: list[int], errors: list[tuple[int, str]], columns: list[str]) -> RawBatch:
    frame = pd.DataFrame.from_records(records, columns=columns) if records else pd.DataFrame(columns=columns)
    return RawBatch(frame, np.asarray(rows, dtype=np.int64), errors)


def file_columns(path: str, source: SourceSpec) -> dict[str, str]:
    """Column name -> type name of one file, read from its schema, header or first lines.

    A file whose schema cannot be read (not Parquet, truncated) raises :class:`DataSourceError`.
    """
    if source.format == "parquet":
        import pyarrow.parquet as pq

        try:
            with _open(path) as handle:
                schema = [] if _is_empty(handle) else pq.ParquetFile(handle).schema_arrow
        except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
            raise DataSourceError(f"{path}: cannot read it as parquet: {error}") from error
        return {field.name: str(field.type) for field in schema}  # {}: an empty file, as an empty CSV
    if source.format == "csv":
        return dict.fromkeys(_csv_header(path, source), "string")
    names: dict[str, str] = {}
    with _open(path) as handle:
        for _, line in zip(range(SCHEMA_SAMPLE_LINES), iter(handle.readline, b""), strict=False):
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(record, dict):
                names.update(dict.fromkeys(record, "json"))
    return names


def file_name(path: str) -> str:
    return PurePosixPath(path).name


@dataclasses.dataclass(frozen=True)
class BigQueryRead:
    """The arguments of ``beam.io.ReadFromBigQuery`` for a spec's table or query.

    Example::

        read = bigquery_read(spec.source, spec.required_columns, project="p", temp_location="gs://b/tmp")
        rows = pipeline | beam.io.ReadFromBigQuery(**read.kwargs)
    """

    kwargs: dict[str, Any]
    description: str


def bigquery_read(
    source: SourceSpec, columns: Sequence[str], project: str | None = None, temp_location: str | None = None,
    data_uri: str = "",
) -> BigQueryRead:  # fmt: skip
    """A table (from the spec, or ``bq://project.dataset.table``) is read with the Storage Read API and
    only the needed columns; a query is run as standard SQL and exported through ``temp_location``."""
    table = data_uri[len(BIGQUERY_SCHEME) :] if is_bigquery_uri(data_uri) else source.table
    if source.query and not table:
        kwargs: dict[str, Any] = {"query": source.query, "use_standard_sql": True, "method": "EXPORT"}
        if temp_location:
            kwargs["gcs_location"] = temp_location
        description = f"query {source.query[:80]!r}"
    elif table:
        if table.count(".") != 2 and ":" not in table:
            raise DataSourceError(f"BigQuery table {table!r} must be project.dataset.table")
        kwargs = {"table": table.replace(":", "."), "method": "DIRECT_READ", "selected_fields": list(columns)}
        description = f"table {table}"
    else:
        raise DataSourceError("a BigQuery source needs a table (bq://project.dataset.table or source.table) or a query")
    if project:
        kwargs["project"] = project
    return BigQueryRead(kwargs=kwargs, description=description)
