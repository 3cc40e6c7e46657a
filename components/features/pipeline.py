"""The Beam feature-extraction pipeline: raw impressions -> point-in-time features -> TFRecord examples.

::

    summary = extract_features(ExtractionConfig(data_uri="work/sim/impressions", dataset_spec="simulator",
                                                output_dir="work/examples"))
    print(summary.format())

The graph works on DataFrame batches, never on single rows, so the local
runner is fast and Dataflow scales it out unchanged:

1. read each file in record batches, parse and validate them (dead letters out);
   group the rows by request shard and find exact duplicate rows (dropped to the
   dead letters unless the spec keeps them), before anything is computed from them;
2. a global, mergeable :class:`~components.features.history.Timeline` (rows and
   positives per timestamp) gives point-in-time priors and the time split;
3. per history entity, rows are sharded by the entity's key, each shard computes
   its aggregates with vectorized cumulative sums, and the features go back to
   the rows' request shard;
4. rows are joined with their features per request shard (a request is never
   split), assigned to a split, and the train split's statistics become the
   feature spec; each shard then writes one TFRecord file per split.

``<out>/feature_spec.json`` is written last: its presence means the run succeeded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import pickle
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
import pandas as pd
from apache_beam import pvalue
from apache_beam.io.filesystems import FileSystems
from apache_beam.pvalue import AsSingleton

from components.data.readers import (
    RawBatch,
    bigquery_read,
    is_bigquery_uri,
    matching_paths,
    parquet_rows,
    read_batches,
    resolve_files,
)
from components.data.rows import FILE_INDEX, UID, parse_batch, raw_column_names
from components.data.spec import DatasetSpec, SequenceSpec, file_splits, load_dataset_spec, split_names
from components.data.validation import DEAD_LETTER_THRESHOLD, check_data
from components.features.duplicates import (
    DUPLICATE_REASON,
    MIXED_MODULES_REASON,
    find_duplicates,
    repeated_items,
    split_module_requests,
)
from components.features.encoding import encode_frame
from components.features.history import Entity, Timeline, add_match_features, entity_history, history_entities
from components.features.history import match_features as match_feature_columns
from components.features.options import BeamOptions, artifact_beam_uri
from components.features.snapshot import (
    SNAPSHOT_DIR,
    entity_snapshot,
    snapshot_metadata,
    stored_columns,
    write_metadata,
    write_table,
)
from components.features.statistics import FeatureColumn, FeatureStatistics, SplitCounts
from ranker_core.schema import (
    FEATURE_SPEC_FILE,
    HELDOUT_SPLIT,
    MODULE,
    REQUEST_ID,
    TIMESTAMP,
    FeatureSpec,
    label_key,
)

logger = logging.getLogger(__name__)

DEAD_LETTER_DIR = "dead_letter"
ROWS_PER_SHARD = 250_000  # 3M rows in 12 shards: 4 GiB less memory than in 4, and faster (docs/data.md)
MIN_SHARDS = 4
SPILL_DIR = "_spill"  # joined shards between the join and the writer, removed when the run ends
SHARD = "_shard"
SPLIT = "_split"


class ExtractionError(RuntimeError):
    """Extraction cannot produce trustworthy examples; the message says why and where to look."""


@dataclasses.dataclass
class ExtractionConfig:
    """Everything one extraction run needs.

    ``data_uri`` is a file, a glob, a folder (read with the spec's pattern) or
    ``bq://project.dataset.table``; ``dataset_spec`` a shipped name, a path or a gs:// URI.
    """

    data_uri: str
    dataset_spec: str
    output_dir: str
    held_out_module: str = ""
    dead_letter_threshold: float = DEAD_LETTER_THRESHOLD  # the run fails when a larger share is malformed
    num_shards: int = 0  # shuffle partitions and TFRecord files per split; 0: sized by the data (shard_count)
    batch_rows: int = 65_536
    timeline_seconds: int = 60  # time buckets of the global prior and the split boundaries
    dead_letter_dir: str = ""  # default: <output_dir>/dead_letter
    beam: BeamOptions = dataclasses.field(default_factory=BeamOptions.load)

    @property
    def dead_letter_path(self) -> str:
        return self.dead_letter_dir or _join(self.output_dir, DEAD_LETTER_DIR)


@dataclasses.dataclass
class ExtractionSummary:
    """What a run read, wrote and rejected."""

    output_dir: str
    dead_letter_dir: str
    rows_read: int
    rows_written: int
    dead_letters: int
    dead_letter_reasons: dict[str, int]
    split_rows: dict[str, int]
    modules: list[str]
    features: int
    seconds: float
    duplicates: int = 0  # rows equal to an earlier row in every column; dead letters unless kept
    duplicate_policy: str = "drop"
    mixed_module_requests: int = 0  # requests whose rows name two or more modules: all their rows are dead letters
    repeated_items: int = 0  # rows kept that repeat an earlier (request, item) pair (kept exact copies too)

    @property
    def dead_letter_share(self) -> float:
        return self.dead_letters / self.rows_read if self.rows_read else 0.0

    @property
    def malformed_share(self) -> float:
        """The share of rows that could not be used: dead letters other than dropped duplicates.

        A dropped duplicate is a well-formed row seen twice (a file exported twice, a retried
        write), so it is dead-lettered and counted, but it does not fail the run.
        """
        dropped = self.duplicates if self.duplicate_policy == "drop" else 0
        return (self.dead_letters - dropped) / self.rows_read if self.rows_read else 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"dead_letter_share": self.dead_letter_share}

    def metrics(self) -> dict[str, float]:
        """Flat numbers for a pipeline's metrics artifact."""
        numbers = {
            "rows_read": self.rows_read,
            "rows_written": self.rows_written,
            "dead_letters": self.dead_letters,
            "dead_letter_share": self.dead_letter_share,
            "duplicates": self.duplicates,
            "features": self.features,
            "seconds": round(self.seconds, 1),
        }
        numbers |= {f"rows_{split}": rows for split, rows in self.split_rows.items()}
        return {name: float(value) for name, value in numbers.items()}

    def format(self) -> str:
        lines = [
            f"rows read      {self.rows_read:>12,}",
            f"rows written   {self.rows_written:>12,}",
            f"dead letters   {self.dead_letters:>12,}  ({self.dead_letter_share:.3%})",
        ]
        lines += [f"  {reason:<12} {count:>12,}" for reason, count in sorted(self.dead_letter_reasons.items())]
        kept = "dropped" if self.duplicate_policy == "drop" else "kept"
        lines += [f"duplicates     {self.duplicates:>12,}  ({kept})"]
        if self.mixed_module_requests:
            lines += [f"mixed requests {self.mixed_module_requests:>12,}  (in 2+ modules: dead letters)"]
        if self.repeated_items:
            lines += [f"repeated items {self.repeated_items:>12,}  (a (request, item) pair again: kept)"]
        lines += [f"split {split:<8} {rows:>12,}" for split, rows in self.split_rows.items()]
        lines += [
            f"modules        {', '.join(self.modules)}",
            f"features       {self.features}",
            f"seconds        {self.seconds:.1f}",
            f"examples       {self.output_dir}",
            f"feature spec   {_join(self.output_dir, FEATURE_SPEC_FILE)}",
            f"dead letters   {self.dead_letter_dir}/",
        ]
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class FrameSpill:
    """Frames on their way through a shuffle: in files on the local runner, as they are elsewhere.

    Beam's local runner keeps every shuffled element in its own process until the step that reads
    them has run, so a run's memory would grow with its rows; a frame put in a file travels as its
    path and the step after the shuffle reads it back. Dataflow shuffles outside the workers'
    memory: there ``folder`` is "" and frames pass as they are. Files stay until the run ends
    (:func:`frame_spill`), so a retried bundle finds its input::

        spill = FrameSpill("/tmp/ranker-spill-x1y2")
        handle = spill.put(frame)         # the file's path
        frames = spill.get([handle])      # [frame]
    """

    folder: str = ""

    def put(self, frame: pd.DataFrame) -> pd.DataFrame | str:
        if not self.folder:
            return frame
        path = _join(self.folder, f"{uuid.uuid4().hex}.pkl")
        _write_pickle(path, frame)
        return path

    @staticmethod
    def get(handles: Iterable[pd.DataFrame | str]) -> list[pd.DataFrame]:
        return [_read_pickle(handle) if isinstance(handle, str) else handle for handle in handles]


@dataclasses.dataclass(frozen=True)
class ExtractionPlan:
    """The resolved inputs of a run: the spec, the files and the features to describe."""

    spec: DatasetSpec
    data_uri: str
    files: tuple[str, ...]
    file_splits: dict[int, str]
    held_out_module: str | None
    num_shards: int
    batch_rows: int
    timeline_seconds: int = 1
    spill: FrameSpill = FrameSpill()

    @property
    def entities(self) -> list[Entity]:
        return history_entities(self.spec)

    def source_name(self, file_index: int) -> str:
        """The file a row came from, or its BigQuery read batch (rows' ``UID`` carry the index)."""
        return self.files[file_index] if self.files else f"bigquery batch {file_index}"

    def feature_columns(self) -> list[FeatureColumn]:
        features = self.spec.features
        columns = [
            FeatureColumn(name, "categorical", max_vocabulary=v.max_size, min_count=v.min_count)
            for name, v in features.categorical.items()
        ]
        columns += [FeatureColumn(name, "hashed", hash_buckets=buckets) for name, buckets in features.hashed.items()]
        columns += [FeatureColumn(name, "numeric", n.transform, n.encoding) for name, n in features.numeric.items()]
        columns += [
            FeatureColumn(name, "list", max_vocabulary=v.max_size, min_count=v.min_count)
            for name, v in features.list.items()
        ]
        for entity in self.entities:
            columns.append(FeatureColumn(entity.count_feature, "numeric", transform="log1p"))
            columns += [FeatureColumn(entity.rate_feature(task), "numeric") for task in self.spec.task_names]
            columns += [self._sequence_column(sequence) for sequence in entity.sequences]
        columns += [FeatureColumn(name, "numeric") for name in match_feature_columns(self.spec)]
        if self.entities:  # the sequences' matches (the user's entity carries the sequences)
            columns += [FeatureColumn(sequence.match_feature, "numeric") for sequence in self.spec.history.sequences]
        return columns

    def _sequence_column(self, sequence: SequenceSpec) -> FeatureColumn:
        """A list feature; its target is the sequence's column when that is a string feature of the model."""
        features = self.spec.features
        target = sequence.column if sequence.column in (*features.categorical, *features.hashed) else None
        size, count = sequence.max_size, sequence.min_count
        return FeatureColumn(sequence.feature, "list", max_vocabulary=size, min_count=count, target=target)


def plan_extraction(config: ExtractionConfig) -> ExtractionPlan:
    """Load the spec and check it against the data; every problem is reported before any work."""
    spec = load_dataset_spec(config.dataset_spec)
    problems = check_data(spec, config.data_uri)
    if problems:
        raise ExtractionError(f"{len(problems)} problem(s) with the data:\n  - " + "\n  - ".join(problems))
    bigquery = is_bigquery_uri(config.data_uri) or spec.source.format == "bigquery"
    files = () if bigquery else tuple(resolve_files(config.data_uri, spec.source))
    if not 0 <= config.dead_letter_threshold <= 1:
        raise ExtractionError(f"dead_letter_threshold must be in [0, 1], got {config.dead_letter_threshold}")
    if config.num_shards < 0 or min(config.batch_rows, config.timeline_seconds) < 1:
        raise ExtractionError(
            "num_shards must be 0 (sized by the data) or more, batch_rows and timeline_seconds positive, got "
            f"{config.num_shards}, {config.batch_rows}, {config.timeline_seconds}"
        )
    return ExtractionPlan(
        spec=spec,
        data_uri=config.data_uri,
        files=files,
        file_splits=file_splits(spec, list(files)),
        held_out_module=config.held_out_module or None,
        num_shards=shard_count(config.num_shards, spec.source.format, files),
        batch_rows=config.batch_rows,
        timeline_seconds=config.timeline_seconds,
    )


def shard_count(requested: int, file_format: str, files: Sequence[str]) -> int:
    """``requested``, or with 0 one shard per :data:`ROWS_PER_SHARD` rows, at least :data:`MIN_SHARDS`.

    A shard's rows sit in one worker's memory together, so the count must grow with the data. Parquet
    footers give the rows without reading them; other sources (CSV, JSON lines, BigQuery) get
    :data:`MIN_SHARDS`, and a large one wants ``num_shards`` set.
    """
    if requested:
        return requested
    if file_format != "parquet" or not files:
        return MIN_SHARDS
    return max(MIN_SHARDS, math.ceil(parquet_rows(files) / ROWS_PER_SHARD))


# --- batch functions (DataFrames in, DataFrames out; the Beam graph below only routes their results) ---------


def shard_of(values: pd.Series | np.ndarray, shards: int) -> np.ndarray:
    """A stable shard number per value (the same on every worker and every run)."""
    hashes = pd.util.hash_array(np.asarray(values, dtype=object))
    return (hashes % np.uint64(shards)).astype(np.int64)


def parse_file(plan: ExtractionPlan, file_index: int, path: str) -> Iterator[tuple[str, Any]]:
    """Read and parse one file: ("rows", frame), ("dead", letter) and ("counts", counts) outputs."""
    columns = plan.spec.required_columns
    for raw in read_batches(path, plan.spec.source, columns, plan.batch_rows):
        yield from _parsed_outputs(plan, raw, file_index, path)


def _parsed_outputs(plan: ExtractionPlan, raw: RawBatch, file_index: int, path: str) -> Iterator[tuple[str, Any]]:
    parsed = parse_batch(raw, plan.spec, file_index=file_index, path=path)
    reasons = Counter(letter["reason"].split(":", 1)[0] for letter in parsed.dead_letters)
    counts = {"rows_read": parsed.rows_read, "rows_valid": len(parsed.frame), "dead_letters": len(parsed.dead_letters)}
    yield "counts", {**counts, "dead_letter_reasons": dict(reasons)}
    for letter in parsed.dead_letters:
        yield "dead", letter
    if len(parsed.frame):
        frame = parsed.frame
        frame[SHARD] = shard_of(frame[REQUEST_ID], plan.num_shards)
        yield "rows", frame


def request_shards(frame: pd.DataFrame, plan: ExtractionPlan) -> Iterator[tuple[int, pd.DataFrame | str]]:
    """The rows of a parsed batch by request shard (every row of a request is in one shard), spilled."""
    for shard, part in frame.groupby(SHARD, sort=False):
        yield int(shard), plan.spill.put(part)


def drop_duplicates(group: tuple[int, Iterable[pd.DataFrame]], plan: ExtractionPlan) -> Iterator[tuple[str, Any]]:
    """All rows of one request shard, with exact duplicates counted and, unless the spec keeps them,
    dead-lettered, requests in two or more modules dead-lettered and repeated (request, item) pairs counted:
    ("rows", (shard, frame)), ("dead", letter) and ("counts", counts) outputs."""
    shard, frames = group
    drop = plan.spec.source.duplicates == "drop"
    rows = pd.concat(plan.spill.get(frames), ignore_index=True)
    raw_names = raw_column_names(plan.spec)
    found = find_duplicates(rows, drop, plan.source_name, ignore=(SHARD,), raw_names=raw_names)
    mixed = split_module_requests(found.rows, plan.source_name, ignore=(SHARD,), raw_names=raw_names)
    letters = found.dead_letters + mixed.dead_letters
    reasons = {DUPLICATE_REASON: len(found.dead_letters), MIXED_MODULES_REASON: len(mixed.dead_letters)}
    counts = {"rows_read": 0, "rows_valid": -len(letters), "dead_letters": len(letters), "duplicates": found.count}
    repeated = repeated_items(mixed.rows, plan.spec.columns.item_id)
    counts |= {"mixed_module_requests": mixed.count, "repeated_items": repeated}
    yield "counts", counts | {"dead_letter_reasons": {reason: n for reason, n in reasons.items() if n}}
    for letter in letters:
        yield "dead", letter
    yield "rows", (shard, mixed.rows)


def entity_shards(frame: pd.DataFrame, plan: ExtractionPlan) -> Iterator[tuple[tuple[str, int], pd.DataFrame]]:
    """The columns each entity's history needs, keyed by (entity, shard of the entity's key)."""
    labels = [label_key(task) for task in plan.spec.task_names]
    for entity in plan.entities:
        hashes = pd.util.hash_pandas_object(frame[list(entity.columns)], index=False).to_numpy()
        shards = (hashes % np.uint64(plan.num_shards)).astype(np.int64)
        sequence_columns = [sequence.column for sequence in entity.sequences]
        columns = dict.fromkeys(
            [UID, SHARD, TIMESTAMP, *labels, *entity.columns, *stored_columns(entity, plan.spec), *sequence_columns]
        )
        subset = frame[list(columns)]
        for shard in np.unique(shards):
            yield (entity.name, int(shard)), plan.spill.put(subset[shards == shard])


def entity_features(
    group: tuple[tuple[str, int], Iterable[pd.DataFrame]], plan: ExtractionPlan, timeline: Timeline
) -> Iterator[tuple[int, tuple[str, pd.DataFrame]]]:
    """All rows of some keys of one entity -> their history features, keyed by request shard."""
    key, frames = group
    entity = next(entity for entity in plan.entities if entity.name == key[0])
    frame = pd.concat(plan.spill.get(frames), ignore_index=True)
    features = entity_history(frame, entity, plan.spec.task_names, timeline, plan.spec.history.prior_strength)
    features[UID] = frame[UID].to_numpy()
    shards = frame[SHARD].to_numpy()
    for shard in np.unique(shards):
        yield int(shard), (entity.name, plan.spill.put(features[shards == shard].set_index(UID)))


def join_and_split(
    group: tuple[int, Iterable[tuple[str, pd.DataFrame]]], plan: ExtractionPlan, timeline: Timeline
) -> Iterator[tuple[int, pd.DataFrame]]:
    """Rows of one request shard joined with every entity's features, each row assigned its split."""
    shard, parts = group
    by_kind: dict[str, list[pd.DataFrame]] = {}
    for kind, frame in parts:
        by_kind.setdefault(kind, []).append(frame)
    if "rows" not in by_kind:
        return
    rows = pd.concat(plan.spill.get(by_kind.pop("rows")), ignore_index=True).set_index(UID)
    for entity in plan.entities:
        rows = rows.join(pd.concat(plan.spill.get(by_kind[entity.name])), how="left")
    add_match_features(rows, plan.spec)
    rows[SPLIT] = assign_splits(rows, plan, timeline)
    yield shard, rows.reset_index()


def assign_splits(rows: pd.DataFrame, plan: ExtractionPlan, timeline: Timeline) -> np.ndarray:
    """train / eval / test per row by the spec's method, whole requests together; held-out module apart."""
    split = plan.spec.split
    if split.by == "files":
        assigned = rows[FILE_INDEX].map(plan.file_splits).to_numpy(dtype=object)
        # eval or test without a file pattern: carved from the train files' requests by their fractions
        eval_end = split.eval_fraction if "eval" not in split.files else 0.0
        test_end = eval_end + (split.test_fraction if "test" not in split.files else 0.0)
        if test_end > 0:  # no hashing when every split has its files
            share, train = _request_share(rows), assigned == "train"
            assigned[train & (share < eval_end)] = "eval"
            assigned[train & (share >= eval_end) & (share < test_end)] = "test"
    else:
        if split.by == "time":  # a request's earliest timestamp places all of it
            order = rows.groupby(REQUEST_ID)[TIMESTAMP].transform("min").to_numpy()
            eval_start, test_start = timeline.split_boundaries(split.eval_fraction, split.test_fraction)
        else:
            order = _request_share(rows)
            eval_start, test_start = 1 - split.eval_fraction - split.test_fraction, 1 - split.test_fraction
        assigned = np.where(order < eval_start, "train", np.where(order < test_start, "eval", "test"))
        assigned = assigned.astype(object)
    if plan.held_out_module:
        assigned[(rows[MODULE] == plan.held_out_module).to_numpy()] = HELDOUT_SPLIT
    return assigned


def _request_share(rows: pd.DataFrame) -> np.ndarray:
    """A stable uniform number in [0, 1) per request (a hash of its id), the same for all of its rows."""
    return pd.util.hash_array(rows[REQUEST_ID].to_numpy(dtype=object)) / float(2**64)


def build_feature_spec(
    plan: ExtractionPlan, statistics: FeatureStatistics, splits: SplitCounts, counts: dict[str, Any], timeline: Timeline
) -> FeatureSpec:
    """The feature spec: train statistics, per-split counts, roles, source counts and split boundaries."""
    train = splits.splits.get("train")
    spec = plan.spec
    if spec.split.by == "time":
        eval_start, test_start = timeline.split_boundaries(spec.split.eval_fraction, spec.split.test_fraction)
        counts = counts | {"split_boundaries": {"eval_start": eval_start, "test_start": test_start}}
    return dataclasses.replace(
        spec.outline(),
        features=statistics.features(plan.feature_columns()),
        modules=sorted(train.rows_per_module) if train else [],
        splits={name: splits.splits[name] for name in split_names(plan.held_out_module) if name in splits.splits},
        held_out_module=plan.held_out_module,
        source={
            "data_uri": plan.data_uri,
            "format": spec.source.format,
            "files": len(plan.files),
            "dataset_spec": spec.origin,
            "split_by": spec.split.by,
            **counts,
        },
    )


def write_split_shards(
    shard_rows: tuple[int, pd.DataFrame], spec: FeatureSpec, output_dir: str, num_shards: int
) -> Iterator[tuple[str, str, int]]:
    """One GZIP TFRecord file per split present in the shard: (split, path, rows).

    Records are written in time order, ties by their bytes: the order in which Beam hands over a
    shard's rows varies between runs, and the trainer's seeded shuffle starts from the file order,
    so only a fixed order makes the same raw data give the same files and the same model.
    """
    import tensorflow as tf

    from trainer.examples import COMPRESSION

    shard, rows = shard_rows
    for split, part in rows.groupby(SPLIT, sort=True):
        folder = _join(output_dir, str(split))
        tf.io.gfile.makedirs(folder)
        path = _join(folder, f"part-{shard:05d}-of-{num_shards:05d}.tfrecord.gz")
        with tf.io.TFRecordWriter(path, options=COMPRESSION) as writer:
            for _, record in sorted(zip(part[TIMESTAMP].tolist(), encode_frame(part, spec), strict=True)):
                writer.write(record)
        yield str(split), path, len(part)


def spill_shard(shard_rows: tuple[int, pd.DataFrame], folder: str) -> tuple[int, str]:
    """A joined shard pickled to ``folder`` (the same path for the same shard, so a retry overwrites it)."""
    shard, rows = shard_rows
    path = _join(folder, f"shard-{shard:05d}.pkl")
    _write_pickle(path, rows)
    return shard, path


def write_spilled_shard(
    shard_path: tuple[int, str], spec: FeatureSpec, output_dir: str, num_shards: int
) -> Iterator[tuple[str, str, int]]:
    """:func:`write_split_shards` of a shard :func:`spill_shard` wrote.

    The spilled file stays until the run ends (:func:`remove_spilled_shards`): a runner that retries a
    failed bundle hands the writer the same paths again.
    """
    shard, path = shard_path
    yield from write_split_shards((shard, _read_pickle(path)), spec, output_dir, num_shards)


@contextlib.contextmanager
def frame_spill(beam_options: BeamOptions) -> Iterator[FrameSpill]:
    """The run's :class:`FrameSpill`: on the local runner a temporary folder, removed when the run ends.

    The local runner's workers share this machine, so the folder is local (``TMPDIR``) whatever the
    output: thousands of small files on a bucket would be slow. Other runners get no folder.
    """
    if not beam_options.is_local:
        yield FrameSpill()
        return
    with tempfile.TemporaryDirectory(prefix="ranker-spill-") as folder:
        yield FrameSpill(folder)


def remove_spilled_shards(output_dir: str) -> None:
    """Delete the spilled shards and their folder."""
    _delete_existing([_join(output_dir, SPILL_DIR)])


def _write_pickle(path: str, value: Any) -> None:
    with FileSystems.create(path) as handle:
        pickle.dump(value, handle, protocol=pickle.HIGHEST_PROTOCOL)


def _read_pickle(path: str) -> Any:
    with FileSystems.open(path) as handle:
        return pickle.load(handle)


def _join(*parts: str) -> str:
    return "/".join([parts[0].rstrip("/"), *parts[1:]])


_COUNTS = ("rows_read", "rows_valid", "dead_letters", "duplicates", "mixed_module_requests", "repeated_items")


def sum_counts(counts: Iterable[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = dict.fromkeys(_COUNTS, 0) | {"dead_letter_reasons": Counter()}
    for count in counts:
        for key in _COUNTS:
            total[key] += count.get(key, 0)
        total["dead_letter_reasons"].update(count["dead_letter_reasons"])
    return total | {"dead_letter_reasons": dict(total["dead_letter_reasons"])}


# --- the Beam graph -------------------------------------------------------------------------------------------


class MergeCombine(beam.CombineFn):
    """Combine mergeable summaries (each element is already one): ``empty()`` and ``merge(a, b) -> a``."""

    def __init__(self, empty: Callable[[], Any], merge: Callable[[Any, Any], Any]) -> None:
        self.empty, self.merge = empty, merge

    def create_accumulator(self):
        return self.empty()

    def add_input(self, accumulator, element):
        return self.merge(accumulator, element)

    def merge_accumulators(self, accumulators):
        result = self.empty()
        for accumulator in accumulators:
            result = self.merge(result, accumulator)
        return result

    def extract_output(self, accumulator):
        return accumulator


def build_extraction_pipeline(pipeline: beam.Pipeline, plan: ExtractionPlan, config: ExtractionConfig) -> None:
    """Add the extraction graph to a Beam pipeline."""
    output_dir = config.output_dir
    tasks = plan.spec.task_names
    outputs = _read(pipeline, plan, config.beam)
    requests = (
        outputs.rows
        | "ByRequestShard" >> beam.FlatMap(request_shards, plan)
        | "GroupRequests" >> beam.GroupByKey()
        | "DropDuplicates" >> beam.ParDo(_DropDuplicates(plan)).with_outputs("rows", "dead", "counts")
    )
    rows = requests.rows | "Rows" >> beam.Values()
    timeline = (
        rows
        | "Timeline" >> beam.Map(Timeline.of, tasks, plan.held_out_module, plan.timeline_seconds)
        | "MergeTimeline"
        >> beam.CombineGlobally(
            MergeCombine(
                lambda: Timeline.merge([], len(tasks), plan.timeline_seconds),
                lambda a, b: Timeline.merge([a, b], len(tasks), plan.timeline_seconds),
            )
        )
    )
    timeline_view = AsSingleton(timeline)
    by_shard = requests.rows | "TagRows" >> beam.Map(lambda kv: (kv[0], ("rows", plan.spill.put(kv[1]))))
    by_entity = rows | "ByEntityShard" >> beam.FlatMap(entity_shards, plan) | "GroupEntities" >> beam.GroupByKey()
    features = by_entity | "History" >> beam.FlatMap(entity_features, plan, timeline_view)
    _write_snapshot(pipeline, by_entity, plan, timeline_view, output_dir)
    joined = (
        (by_shard, features)
        | "AllParts" >> beam.Flatten()
        | "GroupShards" >> beam.GroupByKey()
        | "JoinAndSplit" >> beam.FlatMap(join_and_split, plan, timeline_view)
    )
    # The writer waits for the train statistics (a side input), so whatever it consumes is held until they
    # are done: by the local runner in memory. Each joined shard goes to a file and only its path is held.
    spilled = joined | "SpillShards" >> beam.Map(spill_shard, _join(output_dir, SPILL_DIR))
    train_rows = joined | "TrainRows" >> beam.Map(lambda kv: kv[1][kv[1][SPLIT] == "train"])
    statistics = (
        train_rows
        | "Describe" >> beam.Map(FeatureStatistics.of, plan.feature_columns(), UID)
        | "MergeStatistics" >> beam.CombineGlobally(MergeCombine(FeatureStatistics, FeatureStatistics.merge))
    )
    split_counts = (
        joined
        | "CountSplits" >> beam.Map(lambda kv: SplitCounts.of(kv[1], tasks, SPLIT))
        | "MergeSplitCounts" >> beam.CombineGlobally(MergeCombine(SplitCounts, SplitCounts.merge))
    )
    counts = (
        (outputs.counts, requests.counts)
        | "AllCounts" >> beam.Flatten()
        | "SumCounts" >> beam.CombineGlobally(lambda counts: sum_counts(counts))
    )
    feature_spec = (
        pipeline
        | "SpecSeed" >> beam.Create([None])
        | "FeatureSpec"
        >> beam.Map(
            lambda _, stats, splits, totals, times: build_feature_spec(plan, stats, splits, totals, times),
            AsSingleton(statistics),
            AsSingleton(split_counts),
            AsSingleton(counts),
            timeline_view,
        )
    )
    written = spilled | "WriteShards" >> beam.FlatMap(
        write_spilled_shard, AsSingleton(feature_spec), output_dir, plan.num_shards
    )
    _ = (
        written
        | "CountShards" >> beam.combiners.Count.Globally()
        | "WriteSpec" >> beam.Map(lambda _, spec: _save_spec(spec, output_dir), AsSingleton(feature_spec))
    )
    _ = (
        (outputs.dead, requests.dead)
        | "AllDeadLetters" >> beam.Flatten()
        | "DeadLetterJson" >> beam.Map(lambda letter: json.dumps(letter, sort_keys=True, default=str))
        | "WriteDeadLetters"
        >> beam.io.WriteToText(_join(config.dead_letter_path, "part"), file_name_suffix=".jsonl", num_shards=1)
    )


def _write_snapshot(pipeline, by_entity, plan: ExtractionPlan, timeline_view, output_dir: str) -> None:
    """Each entity's features as of the cutoff (``components/features/snapshot.py``) for the feature store."""
    _ = (
        by_entity
        | "Snapshot" >> beam.Map(entity_snapshot_part, plan, timeline_view)
        | "GroupSnapshot" >> beam.GroupByKey()
        | "WriteSnapshot" >> beam.MapTuple(lambda name, frames: write_table(name, list(frames), output_dir))
    )
    _ = (
        pipeline
        | "SnapshotSeed" >> beam.Create([None])
        | "WriteSnapshotMeta"
        >> beam.Map(
            lambda _, timeline: write_metadata(snapshot_metadata(plan.spec, timeline), output_dir), timeline_view
        )
    )


def entity_snapshot_part(
    group: tuple[tuple[str, int], Iterable[pd.DataFrame]], plan: ExtractionPlan, timeline: Timeline
) -> tuple[str, pd.DataFrame]:
    """All rows of some keys of one entity -> (entity, their features as of the cutoff)."""
    (name, _), frames = group
    entity = next(entity for entity in plan.entities if entity.name == name)
    return name, entity_snapshot(pd.concat(plan.spill.get(frames), ignore_index=True), entity, plan.spec, timeline)


def _read(pipeline, plan: ExtractionPlan, beam_options: BeamOptions):
    if not plan.files:
        read = bigquery_read(
            plan.spec.source, plan.spec.required_columns, beam_options.project, beam_options.temp_location,
            data_uri=plan.data_uri,
        )  # fmt: skip
        return (
            pipeline
            | "ReadBigQuery" >> beam.io.ReadFromBigQuery(**read.kwargs)
            | "Batch" >> beam.BatchElements(min_batch_size=plan.batch_rows // 4, max_batch_size=plan.batch_rows)
            | "Parse" >> beam.ParDo(_ParseBigQuery(plan, read.description)).with_outputs("rows", "dead", "counts")
        )
    return (
        pipeline
        | "Files" >> beam.Create(list(enumerate(plan.files)))
        | "Reshuffle" >> beam.Reshuffle()
        | "Parse" >> beam.ParDo(_ParseFiles(plan)).with_outputs("rows", "dead", "counts")
    )


def _tagged(outputs: Iterator[tuple[str, Any]]) -> Iterator[pvalue.TaggedOutput]:
    for tag, value in outputs:
        yield pvalue.TaggedOutput(tag, value)


class _ParseFiles(beam.DoFn):
    def __init__(self, plan: ExtractionPlan) -> None:
        self.plan = plan

    def process(self, element: tuple[int, str]):
        file_index, path = element
        yield from _tagged(parse_file(self.plan, file_index, path))


class _DropDuplicates(beam.DoFn):
    def __init__(self, plan: ExtractionPlan) -> None:
        self.plan = plan

    def process(self, group: tuple[int, Iterable[pd.DataFrame]]):
        yield from _tagged(drop_duplicates(group, self.plan))


class _ParseBigQuery(beam.DoFn):
    """BigQuery rows have no file and no row number: a random batch id keeps their uids unique."""

    def __init__(self, plan: ExtractionPlan, description: str) -> None:
        self.plan, self.description = plan, description

    def process(self, records: list[dict[str, Any]]):
        batch_id = int(np.random.default_rng().integers(1, 2**22))
        raw = RawBatch(pd.DataFrame.from_records(records), np.arange(1, len(records) + 1, dtype=np.int64))
        yield from _tagged(_parsed_outputs(self.plan, raw, batch_id, f"bigquery {self.description}"))


def _save_spec(spec: FeatureSpec, output_dir: str) -> None:
    with FileSystems.create(_join(output_dir, FEATURE_SPEC_FILE)) as handle:
        handle.write((json.dumps(spec.to_dict(), indent=2, sort_keys=True) + "\n").encode())


def clear_outputs(config: ExtractionConfig) -> None:
    """Remove what an earlier run left (only the paths extraction writes), so no stale shard survives."""
    folders = [_join(config.output_dir, split) for split in split_names(HELDOUT_SPLIT)]
    snapshot = _join(config.output_dir, SNAPSHOT_DIR)
    _delete_existing([_join(config.output_dir, FEATURE_SPEC_FILE), *folders, snapshot, config.dead_letter_path])
    remove_spilled_shards(config.output_dir)
    if not FileSystems.exists(config.output_dir):
        FileSystems.mkdirs(config.output_dir)


def _delete_existing(paths: list[str]) -> None:
    """Delete each path that exists: a file, or a folder and everything under it.

    On GCS a folder is only a prefix: ``exists`` is false for it and nothing deletes it whole, so the
    files under each path are matched (``**`` crosses folders on every Beam file system) and deleted
    first, then whatever the paths themselves still name (a file, an emptied local folder).
    """
    files = [file for path in paths for file in matching_paths(_join(path, "**"))]
    existing = files + [path for path in paths if FileSystems.exists(path)]
    if existing:
        FileSystems.delete(existing)


def extract_features(config: ExtractionConfig) -> ExtractionSummary:
    """Run extraction; raise :class:`ExtractionError` when the dead-letter share exceeds the threshold.

    Example::

        summary = extract_features(ExtractionConfig("data/*.csv", "kuairand", "work/examples"))
        summary.split_rows   # {"train": ..., "eval": ..., "test": ...}
    """
    started = time.monotonic()
    plan = plan_extraction(config)
    clear_outputs(config)
    logger.info("extracting %s (%d files) with %s", config.data_uri, len(plan.files), config.beam.runner)
    with frame_spill(config.beam) as spill, beam.Pipeline(options=config.beam.pipeline_options()) as pipeline:
        build_extraction_pipeline(pipeline, dataclasses.replace(plan, spill=spill), config)
    remove_spilled_shards(config.output_dir)
    return _check_run(config, plan, time.monotonic() - started)


def _check_run(config: ExtractionConfig, plan: ExtractionPlan, seconds: float) -> ExtractionSummary:
    spec_path = _join(config.output_dir, FEATURE_SPEC_FILE)
    with FileSystems.open(spec_path) as handle:
        spec = FeatureSpec.from_dict(json.loads(handle.read()))
    source = spec.source
    split_rows = {name: spec.splits[name].rows for name in split_names(plan.held_out_module) if name in spec.splits}
    summary = ExtractionSummary(
        output_dir=config.output_dir,
        dead_letter_dir=config.dead_letter_path,
        rows_read=source["rows_read"],
        rows_written=sum(split_rows.values()),
        dead_letters=source["dead_letters"],
        dead_letter_reasons=source["dead_letter_reasons"],
        split_rows=split_rows,
        modules=spec.modules,
        features=len(spec.features),
        seconds=seconds,
        duplicates=source.get("duplicates", 0),
        duplicate_policy=plan.spec.source.duplicates,
        mixed_module_requests=source.get("mixed_module_requests", 0),
        repeated_items=source.get("repeated_items", 0),
    )
    problem = (
        _run_problem(summary, config.dead_letter_threshold, plan.held_out_module)
        or _held_out_problem(plan, summary)
        or _unlearnable_task_problem(spec)
    )
    if problem:
        FileSystems.delete([spec_path])  # no feature spec: nothing downstream can mistake this for a success
        raise ExtractionError(problem)
    for split in split_names(plan.held_out_module)[1:]:
        if not split_rows.get(split):
            logger.warning("the %s split is empty", split)
    _warn_mixed_and_repeated(summary)
    return summary


def _warn_mixed_and_repeated(summary: ExtractionSummary) -> None:
    """Requests left out for spanning modules, and (request, item) pairs that repeat, are named in a warning."""
    if summary.mixed_module_requests:
        logger.warning(
            "%d request(s) span two or more modules: their %d rows are dead letters (%r in %s/); a request is one "
            "ranked list on one surface",
            summary.mixed_module_requests,
            summary.dead_letter_reasons.get(MIXED_MODULES_REASON, 0),
            MIXED_MODULES_REASON,
            summary.dead_letter_dir,
        )
    if summary.repeated_items:
        logger.warning(
            "%d row(s) repeat a (request, item) pair of their request with other values (the same item shown "
            "twice in one list): they are kept, each ranked as its own candidate "
            "(an oracle's row of the pair scores both)",
            summary.repeated_items,
        )


def _run_problem(summary: ExtractionSummary, threshold: float, held_out_module: str = "") -> str:
    dead_letters = summary.dead_letter_dir
    if summary.rows_read != summary.rows_written + summary.dead_letters:
        return (
            f"row counts do not add up: read {summary.rows_read}, wrote {summary.rows_written}, "
            f"dead letters {summary.dead_letters}"
        )
    if summary.malformed_share > threshold:
        reasons = ", ".join(f"{reason}: {count}" for reason, count in sorted(summary.dead_letter_reasons.items()))
        mixed = summary.mixed_module_requests
        spanning = f"; {mixed} requests span two or more modules (a request is one list on one surface)" * bool(mixed)
        return (
            f"{summary.malformed_share:.2%} of {summary.rows_read} rows are malformed, more than the threshold of "
            f"{threshold:.2%} (dead letters: {reasons}){spanning}; see {dead_letters}/ for every row and reason"
        )
    if not summary.split_rows.get("train"):
        if held_out_module and summary.split_rows.get(HELDOUT_SPLIT) == summary.rows_written:
            return (
                f"the train split is empty: every row is in the held-out module {held_out_module!r}, the only "
                "module in the data; hold out none"
            )
        return f"the train split is empty ({summary.rows_written} rows written); check the split settings"
    return ""


def _unlearnable_task_problem(spec: FeatureSpec) -> str:
    """A task with no positive anywhere is a label mistake (wrong column, value or expression): no ranker can
    learn it, and the baseline and the verdict would fail on it after the training. One with positives, but none
    in the train split (a rare label in a small sample), is a warning: the GBDT baseline will refuse it."""

    def positives(task: str, splits: list[str]) -> int:
        return sum(spec.splits[split].positives.get(task, 0) for split in splits if split in spec.splits)

    never = [task for task in spec.task_names if not positives(task, list(spec.splits))]
    if never:
        rows = sum(stats.rows for stats in spec.splits.values())
        return (
            f"task(s) {', '.join(map(repr, never))} have no positive in any of the {rows} rows written: no ranker "
            "can learn them; check their label in the dataset spec (column, values, expression) or leave them out"
        )
    for task in spec.task_names:
        if not positives(task, ["train"]):
            logger.warning(
                "task %r has no positive in the train split (%d rows): no ranker can learn it, and the GBDT baseline "
                "refuses it; extract more data, or leave the task out",
                task,
                spec.splits["train"].rows,
            )
    return ""


def _held_out_problem(plan: ExtractionPlan, summary: ExtractionSummary) -> str:
    """A held-out module that matched no row is a typo, not an empty test set."""
    if not plan.held_out_module or summary.split_rows.get(HELDOUT_SPLIT):
        return ""
    return (
        f"held-out module {plan.held_out_module!r} matches no row; "
        f"modules in the data: {', '.join(summary.modules) or '(none)'}"
    )


def extract_features_step(
    raw_data_uri: str,
    raw_data_path: str,
    dataset_spec: str,
    examples_uri: str,
    dead_letters_uri: str,
    held_out_module: str = "",
    dead_letter_threshold: float = 0.01,
    num_shards: int = 4,
    beam_options_json: str = "{}",
) -> ExtractionSummary:
    """The kfp component's body: artifacts in (each as :func:`artifact_beam_uri` gives it), :func:`extract_features`
    run, summary out."""
    beam_fields = json.loads(beam_options_json or "{}")
    if not isinstance(beam_fields, dict):
        raise ValueError(f"beam_options_json must be a JSON object of BeamOptions fields, got {beam_options_json!r}")
    config = ExtractionConfig(
        data_uri=artifact_beam_uri(raw_data_uri, raw_data_path),
        dataset_spec=dataset_spec,
        output_dir=examples_uri,
        held_out_module=held_out_module,
        dead_letter_threshold=dead_letter_threshold,
        num_shards=num_shards,
        dead_letter_dir=dead_letters_uri,
        beam=BeamOptions.load(beam_fields, environ={}),  # what the run sends, as checked when it was compiled
    )
    summary = extract_features(config)
    logger.info("extraction summary:\n%s", summary.format())
    return summary
