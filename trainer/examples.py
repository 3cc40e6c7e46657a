"""Reading and writing extracted examples (the layout is in :mod:`ranker_core.schema`).

Extraction writes shards with :func:`encode_example`; the baseline, the
evaluation and the tests read a whole split into columns with
:func:`read_split`; the trainer streams the same records through
:func:`parse_features` inside ``tf.data``::

    columns = read_split("work/examples", "test", spec)
    columns["label_click"]   # np.ndarray of 0/1
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from ranker_core.runtime import usable_cores
from ranker_core.schema import MODULE, POSITION, REQUEST_ID, TIMESTAMP, FeatureSpec, label_key

SHARD_PATTERN = "part-*.tfrecord.gz"
COMPRESSION = "GZIP"


def context_keys(spec: FeatureSpec) -> tuple[str, ...]:
    """Keys every example has besides the model features."""
    return (REQUEST_ID, POSITION, TIMESTAMP, *(label_key(task) for task in spec.task_names))


def feature_description(spec: FeatureSpec) -> dict[str, tf.io.FixedLenFeature]:
    """The ``tf.io.parse_example`` description of every key in an example."""
    description = {
        REQUEST_ID: tf.io.FixedLenFeature([], tf.string, default_value=""),
        POSITION: tf.io.FixedLenFeature([], tf.int64, default_value=0),
        TIMESTAMP: tf.io.FixedLenFeature([], tf.int64, default_value=0),
        MODULE: tf.io.FixedLenFeature([], tf.string, default_value=""),
    }
    for task in spec.task_names:
        description[label_key(task)] = tf.io.FixedLenFeature([], tf.int64, default_value=0)
    for feature in spec.features:
        if feature.is_string:
            description[feature.name] = tf.io.FixedLenFeature([], tf.string, default_value="")
        else:
            description[feature.name] = tf.io.FixedLenFeature([], tf.float32, default_value=np.nan)
    return description


def encode_example(row: Mapping[str, Any], spec: FeatureSpec) -> bytes:
    """Serialize one row (reserved keys, labels and features) as a ``tf.train.Example``."""
    features: dict[str, tf.train.Feature] = {}
    for key, kind in _key_kinds(spec).items():
        value = row.get(key)
        if kind == "bytes":
            text = "" if value is None else str(value)
            features[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[text.encode()]))
        elif kind == "int":
            features[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value or 0)]))
        else:
            number = np.nan if value is None else float(value)
            features[key] = tf.train.Feature(float_list=tf.train.FloatList(value=[number]))
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def _key_kinds(spec: FeatureSpec) -> dict[str, str]:
    kinds = {REQUEST_ID: "bytes", MODULE: "bytes", POSITION: "int", TIMESTAMP: "int"}
    kinds.update({label_key(task): "int" for task in spec.task_names})
    kinds.update({f.name: "bytes" if f.is_string else "float" for f in spec.features})
    return kinds


def shard_paths(examples_dir: str | Path, split: str) -> list[str]:
    """The shard files of one split, sorted; an error names the folder when there are none."""
    pattern = str(Path(examples_dir) / split / SHARD_PATTERN)
    paths = sorted(tf.io.gfile.glob(pattern))
    if not paths:
        raise FileNotFoundError(f"no example shards match {pattern}")
    return paths


def write_shards(
    rows: Iterable[Mapping[str, Any]], examples_dir: str | Path, split: str, spec: FeatureSpec, shards: int = 1
) -> list[str]:
    """Write rows as the shards of a split (tests and small tools; extraction uses Beam).

    As in extraction, every row of a request goes to the same shard (chosen by a hash of its ``request_id``).
    """
    folder = Path(examples_dir) / split
    folder.mkdir(parents=True, exist_ok=True)
    paths = [str(folder / f"part-{index:05d}-of-{shards:05d}.tfrecord.gz") for index in range(shards)]
    with contextlib.ExitStack() as stack:
        writers = [stack.enter_context(tf.io.TFRecordWriter(path, options=COMPRESSION)) for path in paths]
        for row in rows:
            shard = zlib.crc32(str(row.get(REQUEST_ID, "")).encode()) % shards
            writers[shard].write(encode_example(row, spec))
    return paths


def parse_features(serialized: tf.Tensor, spec: FeatureSpec) -> dict[str, tf.Tensor]:
    """Parse a batch of serialized examples into a dict of dense tensors."""
    return tf.io.parse_example(serialized, feature_description(spec))


def read_split(
    examples_dir: str | Path, split: str, spec: FeatureSpec, batch_size: int = 8192, threads: int = 0
) -> dict[str, np.ndarray]:
    """Read a whole split into NumPy columns (in key order, whatever the spec's order), rows in shard order.

    Strings are decoded to ``str`` objects. Shards are read side by side on ``threads`` threads
    (0: one per core): GZIP inflation and ``parse_example`` run in TensorFlow without the GIL, and
    one ``tf.data`` pipeline inflates its records on one thread (``interleave`` was slower than this
    on 2 cores: docs/benchmarks.md).
    """
    paths = shard_paths(examples_dir, split)
    workers = min(len(paths), threads or usable_cores())
    with ThreadPoolExecutor(max_workers=workers) as pool:
        shards = list(pool.map(lambda path: _read_shard(path, spec, batch_size), paths))
    shards = [shard for shard in shards if shard]  # an empty shard has no batches
    if not shards:
        return {}
    columns = {key: np.concatenate([chunk for shard in shards for chunk in shard[key]]) for key in sorted(shards[0])}
    for key, values in columns.items():
        if values.dtype == object:
            columns[key] = _decoded(values)
    return columns


def _read_shard(path: str, spec: FeatureSpec, batch_size: int) -> dict[str, list[np.ndarray]]:
    """One shard's parsed batches, per key."""
    dataset = tf.data.TFRecordDataset([path], compression_type=COMPRESSION)
    dataset = dataset.batch(batch_size).map(lambda batch: parse_features(batch, spec))
    chunks: dict[str, list[np.ndarray]] = {}
    for batch in dataset.as_numpy_iterator():
        for key, values in batch.items():
            chunks.setdefault(key, []).append(values)
    return chunks


def _decoded(values: np.ndarray) -> np.ndarray:
    """Bytes to ``str`` objects, each distinct value decoded once (string columns repeat a lot).

    >>> _decoded(np.array([b"a", b"b", b"a"], dtype=object)).tolist()
    ['a', 'b', 'a']
    """
    codes, uniques = pd.factorize(values)
    return np.array([value.decode() for value in uniques], dtype=object)[codes]
