"""Read a candidates table in chunks: Parquet, CSV or TFRecord example files (local or gs://), or BigQuery.

Every chunk is a DataFrame of the needed columns plus ``_file`` and ``_row``
(the 1-based row number in its file), so any row that cannot be ranked can be
dead-lettered with where it came from. Rows that cannot even be read (a CSV cell
that is not UTF-8, a TFRecord that is not a ``tf.train.Example``) are dead
letters here::

    candidates = pipeline | ReadCandidates(source, columns, feature_spec, batch_rows=4096)
    candidates.chunks, candidates.dead_letters

Files are read by the project's readers (:mod:`components.data.readers`), one
file per work item after a reshuffle, so the files of a folder are read in
parallel; BigQuery through Beam's ``ReadFromBigQuery`` (options as extraction
builds them), whose rows are numbered in the order they were read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
import pandas as pd
from apache_beam.metrics import Metrics

from batch.features import FILE, ROW, dead_letter
from batch.topk import NAMESPACE
from components.data.readers import DataSourceError, bigquery_read, file_columns, read_batches, resolve_files
from components.data.spec import SourceSpec
from ranker_core.schema import FEATURE_SPEC_FILE, FeatureSpec

DEAD_LETTERS = "dead_letters"
TFRECORD_PATTERN = "*.tfrecord*"


@dataclasses.dataclass(frozen=True)
class CandidateSource:
    """Where the candidates are: ``uri`` (file, glob, folder, ``bq://project.dataset.table``) and its format."""

    uri: str
    format: str
    project: str = ""
    temp_location: str = ""

    def files(self) -> list[str]:
        """The files to read (none for BigQuery); an error names the URI when nothing matches."""
        if self.format == "bigquery":
            return []
        spec = SourceSpec(format=self.format, pattern=TFRECORD_PATTERN) if self.format == "tfrecord" else None
        try:
            return resolve_files(self.uri, spec or SourceSpec(format=self.format))
        except DataSourceError as error:
            if self._is_examples_folder():
                raise DataSourceError(f"{error}: it is an extracted examples folder, pass --split test") from None
            raise

    def _is_examples_folder(self) -> bool:
        """Whether ``uri`` is an extraction's output (its splits are folders of TFRecords, read with ``--split``)."""
        from apache_beam.io.filesystems import FileSystems

        return FileSystems.exists(f"{self.uri.rstrip('/')}/{FEATURE_SPEC_FILE}")


class ReadCandidates(beam.PTransform):
    """Candidate chunks (main output) and the dead letters of unreadable rows (``dead_letters``)."""

    def __init__(self, source: CandidateSource, columns: Sequence[str], spec: FeatureSpec, batch_rows: int) -> None:
        super().__init__()
        self.source, self.columns, self.spec, self.batch_rows = source, tuple(columns), spec, batch_rows

    def expand(self, pipeline: beam.Pipeline) -> beam.pvalue.DoOutputsTuple:
        if self.source.format == "bigquery":
            return self._bigquery(pipeline)
        return (
            pipeline
            | "Files" >> beam.Create(self.source.files())
            | "Spread" >> beam.Reshuffle()
            | "Read"
            >> beam.ParDo(ReadFile(self.source.format, self.columns, self.spec, self.batch_rows))
            .with_output_types(pd.DataFrame)
            .with_outputs(DEAD_LETTERS, main="chunks")
        )

    def _bigquery(self, pipeline: beam.Pipeline) -> beam.pvalue.DoOutputsTuple:
        read = bigquery_read(
            SourceSpec(format="bigquery"), self.columns, self.source.project or None,
            self.source.temp_location or None, data_uri=self.source.uri,
        )  # fmt: skip
        return (
            pipeline
            | "ReadBigQuery" >> beam.io.ReadFromBigQuery(**read.kwargs)
            | "Chunk" >> beam.BatchElements(min_batch_size=self.batch_rows, max_batch_size=self.batch_rows)
            | "ToFrame" >> beam.ParDo(RowsToChunk(self.source.uri)).with_outputs(DEAD_LETTERS, main="chunks")
        )


class RowsToChunk(beam.DoFn):
    """A list of BigQuery rows (dicts) as one chunk, numbered in the order read within this worker."""

    def __init__(self, table: str) -> None:
        self.table = table

    def setup(self) -> None:
        self.read = 0
        self.counter = Metrics.counter(NAMESPACE, "candidates_read")

    def process(self, rows: list[dict[str, Any]]) -> Iterator[pd.DataFrame]:
        numbers = np.arange(self.read + 1, self.read + len(rows) + 1)
        self.read += len(rows)
        self.counter.inc(len(rows))
        yield _with_origin(pd.DataFrame.from_records(rows), self.table, numbers)


class ReadFile(beam.DoFn):
    """One file as chunks of candidate rows; unreadable rows go to ``dead_letters``."""

    def __init__(self, file_format: str, columns: Sequence[str], spec: FeatureSpec, batch_rows: int) -> None:
        self.format, self.columns, self.spec, self.batch_rows = file_format, tuple(columns), spec, batch_rows

    def setup(self) -> None:
        self.read = Metrics.counter(NAMESPACE, "candidates_read")

    def process(self, path: str) -> Iterator[Any]:
        read = _tfrecord_chunks if self.format == "tfrecord" else _table_chunks
        for chunk, errors in read(path, self.format, self.columns, self.spec, self.batch_rows):
            self.read.inc(len(chunk) + len(errors))  # rows read = ranked + dead letters + left out
            for row, reason in errors:
                yield beam.pvalue.TaggedOutput(DEAD_LETTERS, dead_letter(path, row, reason))
            if len(chunk):
                yield chunk


Chunks = Iterator[tuple[pd.DataFrame, list[tuple[int, str]]]]


def _table_chunks(path: str, file_format: str, columns: Sequence[str], spec: FeatureSpec, batch_rows: int) -> Chunks:
    """Parquet or CSV through the project's readers: only the needed columns the file has."""
    source = SourceSpec(format=file_format)
    next_row = 1
    try:
        present = [column for column in columns if column in file_columns(path, source)]
        for batch in read_batches(path, source, present, batch_rows):
            yield _with_origin(batch.frame, path, batch.rows), batch.errors
            next_row = max(next_row, int(batch.rows.max(initial=0)) + 1, *(row + 1 for row, _ in batch.errors))
    except DataSourceError as error:  # not Parquet, or truncated: the file's other rows are ranked
        yield pd.DataFrame(), [(next_row, f"unreadable from here on: {error}")]


def _tfrecord_chunks(path: str, file_format: str, columns: Sequence[str], spec: FeatureSpec, batch_rows: int) -> Chunks:
    """``tf.train.Example`` records (extracted examples): parsed a batch at a time, bad records one by one."""
    import tensorflow as tf

    compression = "GZIP" if path.endswith(".gz") else ""
    records = tf.data.TFRecordDataset(path, compression_type=compression).batch(batch_rows)
    first = 1
    try:
        for serialized in records.as_numpy_iterator():
            yield _parse_examples(serialized, spec, path, first)
            first += len(serialized)
    except tf.errors.DataLossError as error:  # a truncated or corrupt file: what follows cannot be read
        yield pd.DataFrame(), [(first, f"unreadable TFRecord data from here on: {error.message}")]


def _parse_examples(serialized: np.ndarray, spec: FeatureSpec, path: str, first: int) -> tuple[pd.DataFrame, list]:
    """A batch of serialized examples as a chunk; a record that does not parse is an error of its row."""
    import tensorflow as tf

    from trainer.examples import feature_description

    description = feature_description(spec)
    numbers = np.arange(first, first + len(serialized))
    errors: list[tuple[int, str]] = []
    try:
        parsed = tf.io.parse_example(serialized, description)
    except tf.errors.InvalidArgumentError:  # rare: find the bad records one by one, parse the others
        good = np.array([_parses(record, description) for record in serialized], dtype=bool)
        errors = [(int(number), "not a tf.train.Example of the model's features") for number in numbers[~good]]
        serialized, numbers = serialized[good], numbers[good]
        if not len(serialized):
            return pd.DataFrame(), errors
        parsed = tf.io.parse_example(serialized, description)
    columns = {key: _decoded(values.numpy()) for key, values in parsed.items()}
    return _with_origin(pd.DataFrame(columns), path, numbers), errors


def _parses(record: bytes, description: dict) -> bool:
    import tensorflow as tf

    try:
        tf.io.parse_single_example(record, description)
    except tf.errors.InvalidArgumentError:
        return False
    return True


def _decoded(values: np.ndarray) -> np.ndarray:
    if values.dtype != object:
        return values
    return np.array([value.decode("utf-8", errors="replace") for value in values], dtype=object)


def _with_origin(frame: pd.DataFrame, path: str, rows: np.ndarray) -> pd.DataFrame:
    """``frame`` with the file and 1-based row number of every row (added in place: ``assign`` copies the frame)."""
    frame[FILE] = path
    frame[ROW] = np.asarray(rows, dtype=np.int64)
    return frame
