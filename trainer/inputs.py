"""The ``tf.data`` input pipeline: TFRecord shards of a split to batches of parsed features.

Shards are read in parallel (interleave), records are optionally cached in
memory and shuffled, then parsed a whole batch at a time (``parse_example`` on
a batch is far cheaper than per record) and prefetched, so the accelerator or
the CPU cores training the model never wait on input::

    batches = make_dataset("work/examples", "train", spec, batch_size=1024, shuffle=True, seed=7)
    for batch in batches.take(1):
        batch["module_name"], batch["label_click"]

With a loss over requests (``TrainerConfig.listwise_weight``, ``logged_order_weight``) a batch must hold whole
requests: :class:`RequestBatches` keeps a split's records in memory grouped by
``request_id`` (extraction writes every row of a request into one shard, but not
necessarily next to each other) and packs shuffled requests into batches. A split
too large for memory streams through :class:`ShardedRequestBatches`: a group of
shards at a time, since no request crosses shards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from ranker_core.schema import REQUEST_ID, FeatureSpec
from trainer.distribute import shard_policy
from trainer.examples import COMPRESSION, parse_features, shard_paths


def make_dataset(
    examples_dir: str | Path,
    split: str,
    spec: FeatureSpec,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    cache: bool = False,
    shuffle_buffer: int = 100_000,
) -> tf.data.Dataset:
    """Batches of parsed examples (every key of :func:`trainer.examples.feature_description`).

    ``cache`` keeps the serialized records in memory after the first pass (use it
    when the split fits); ``shuffle`` reshuffles files and records every epoch,
    reproducibly for a given ``seed``.
    """
    files = shard_paths(examples_dir, split)
    dataset = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.interleave(
        lambda path: tf.data.TFRecordDataset(path, compression_type=COMPRESSION),
        cycle_length=min(len(files), 8),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    if cache:
        dataset = dataset.cache()
    if shuffle:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    dataset = dataset.map(lambda batch: parse_features(batch, spec), num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = shard_policy(len(files))  # for multi-worker training
    return dataset.prefetch(tf.data.AUTOTUNE).with_options(options)


def pack_requests(sizes: Sequence[int], batch_size: int) -> list[int]:
    """The index of each batch's first request when requests, in order, fill batches of at most
    ``batch_size`` rows; a request of more rows than that is a batch of its own (never split).

    Example::

        pack_requests([3, 4, 2, 9, 1], batch_size=6)   # [0, 1, 3, 4]: batches [3], [4, 2], [9], [1]
    """
    starts: list[int] = []
    rows = 0
    for index, size in enumerate(sizes):
        if not starts or rows + size > batch_size:
            starts.append(index)
            rows = 0
        rows += size
    return starts


class _WholeRequestBatches:
    """What both readers of whole requests share: a ``tf.data`` pass over the batches ``batches`` yields."""

    def batches(self, batch_size: int, rng: np.random.Generator | None = None) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def dataset(self, spec: FeatureSpec, batch_size: int, shuffle: bool = False, seed: int = 0) -> tf.data.Dataset:
        """One pass of parsed batches of whole requests (every key of ``make_dataset``'s batches)."""
        rng = np.random.default_rng(seed)
        return _parsed_batches(lambda: self.batches(batch_size, rng if shuffle else None), spec)


class RequestBatches(_WholeRequestBatches):
    """The serialized records of one split, grouped by request, as batches of whole requests.

    Every pass shuffles the order of the requests (seeded; a new order each pass)
    and packs them, in that order, into batches of at most ``batch_size`` rows
    (:func:`pack_requests`); a request larger than a batch is a batch of its own.
    Without ``shuffle`` the requests come in ``request_id`` order, so a pass always
    has :meth:`steps` batches; a shuffled pass packs to within a few batches of it.
    The records stay in memory (like ``make_dataset``'s cache)::

        requests = RequestBatches.read("work/examples", "train")
        batches = requests.dataset(spec, batch_size=1024, shuffle=True, seed=7)
        requests.steps(1024)   # batches in one unshuffled pass
    """

    def __init__(self, records: np.ndarray, request_ids: np.ndarray) -> None:
        if not len(records):
            raise ValueError("a split without examples has no requests to batch")
        _, inverse, self.sizes = np.unique(request_ids, return_inverse=True, return_counts=True)
        self.records = records[np.argsort(inverse, kind="stable")]  # the rows of a request are consecutive
        self.starts = np.cumsum(self.sizes) - self.sizes

    @classmethod
    def read(cls, examples_dir: str | Path, split: str) -> RequestBatches:
        """Every record of a split and its request id."""
        return cls.read_files(shard_paths(examples_dir, split))

    @classmethod
    def read_files(cls, files: Sequence[str]) -> RequestBatches:
        """Every record of these shards and its request id."""
        return cls(*_records_and_request_ids(files))

    def plan(self, batch_size: int, order: np.ndarray | None = None) -> list[np.ndarray]:
        """The row indices of every batch, the requests taken in ``order`` (default: by request id)."""
        order = np.arange(len(self.sizes)) if order is None else order
        sizes = self.sizes[order]
        offsets = np.cumsum(sizes) - sizes  # where each request starts in the pass
        rows = np.repeat(self.starts[order] - offsets, sizes) + np.arange(len(self.records))
        first_requests = pack_requests(sizes.tolist(), batch_size)
        return np.split(rows, offsets[first_requests[1:]])

    def steps(self, batch_size: int) -> int:
        """Batches in one pass with the requests in ``request_id`` order."""
        return len(pack_requests(self.sizes.tolist(), batch_size))

    def batches(self, batch_size: int, rng: np.random.Generator | None = None) -> Iterator[np.ndarray]:
        """The serialized records of each batch of one pass; the requests shuffled by ``rng`` when given."""
        order = rng.permutation(len(self.sizes)) if rng is not None else None
        for rows in self.plan(batch_size, order):
            yield self.records[rows]


class ShardedRequestBatches(_WholeRequestBatches):
    """Batches of whole requests from a split too large to keep in memory, read a group of shards at a time.

    Extraction writes every row of a request into one shard, so any group of
    shards holds whole requests. Every pass takes the shards in a shuffled order
    (seeded; a new order each pass), reads them in groups of at most ``max_rows``
    rows (a larger shard is a group of its own) and batches each group as
    :class:`RequestBatches` does, its requests shuffled. Only one group's records
    are in memory at a time; requests mix within a group, not across groups.
    Opening the split counts the requests of each shard (one pass that parses
    only ``request_id``), so :meth:`steps` is known before training::

        requests = ShardedRequestBatches.read("work/examples", "train", max_rows=2_000_000)
        batches = requests.dataset(spec, batch_size=1024, shuffle=True, seed=7)
    """

    def __init__(self, files: Sequence[str], request_sizes: Sequence[np.ndarray], max_rows: int) -> None:
        self.files, self.request_sizes, self.max_rows = list(files), list(request_sizes), max_rows
        self.rows = np.array([sizes.sum() for sizes in self.request_sizes])

    @classmethod
    def read(cls, examples_dir: str | Path, split: str, max_rows: int) -> ShardedRequestBatches:
        """The split's shards and the row count of each of their requests."""
        counted = [(path, _request_sizes(path)) for path in shard_paths(examples_dir, split)]
        counted = [(path, sizes) for path, sizes in counted if len(sizes)]  # an empty shard has no request
        if not counted:
            raise ValueError("a split without examples has no requests to batch")
        return cls([path for path, _ in counted], [sizes for _, sizes in counted], max_rows)

    def groups(self, order: Sequence[int]) -> list[list[int]]:
        """The shards, taken in ``order``, as consecutive groups of at most ``max_rows`` rows.

        Example (shards of 5, 4, 3 and 9 rows, ``max_rows`` 8)::

            groups([0, 1, 2, 3])   # [[0], [1, 2], [3]]
        """
        starts = pack_requests(self.rows[list(order)].tolist(), self.max_rows)
        return [list(group) for group in np.split(np.asarray(order), starts[1:])]

    def steps(self, batch_size: int) -> int:
        """Batches in one pass with the shards in file order and each group's requests in shard order."""
        groups = self.groups(range(len(self.files)))
        return sum(
            len(pack_requests(np.concatenate([self.request_sizes[i] for i in g]).tolist(), batch_size)) for g in groups
        )

    def batches(self, batch_size: int, rng: np.random.Generator | None = None) -> Iterator[np.ndarray]:
        """The serialized records of each batch of one pass; shards and requests shuffled by ``rng`` when given."""
        order = rng.permutation(len(self.files)) if rng is not None else range(len(self.files))
        for group in self.groups(order):
            yield from RequestBatches.read_files([self.files[i] for i in group]).batches(batch_size, rng)


def _records_and_request_ids(files: Sequence[str], keep_records: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The serialized records of these shards (empty when not ``keep_records``) and the request id of each."""
    description = {REQUEST_ID: tf.io.FixedLenFeature([], tf.string, default_value="")}
    dataset = tf.data.TFRecordDataset(list(files), compression_type=COMPRESSION).batch(8192)
    dataset = dataset.map(
        lambda batch: (batch if keep_records else batch[:0], tf.io.parse_example(batch, description)[REQUEST_ID])
    )
    pairs = list(dataset.as_numpy_iterator())
    if not pairs:
        return np.array([], dtype=object), np.array([], dtype=object)
    records, request_ids = zip(*pairs, strict=True)
    return np.concatenate(records), np.concatenate(request_ids)


def _request_sizes(path: str) -> np.ndarray:
    """The rows of each request of one shard (in request id order)."""
    return np.unique(_records_and_request_ids([path], keep_records=False)[1], return_counts=True)[1]


def _parsed_batches(batches: Callable[[], Iterator[np.ndarray]], spec: FeatureSpec) -> tf.data.Dataset:
    """Parsed, prefetched batches of the serialized records ``batches()`` yields (called once per pass)."""
    dataset = tf.data.Dataset.from_generator(batches, output_signature=tf.TensorSpec([None], tf.string))
    dataset = dataset.map(lambda batch: parse_features(batch, spec), num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    # No files to shard: workers share out the batches. Several replicas may split a batch (a request) by rows.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.prefetch(tf.data.AUTOTUNE).with_options(options)
