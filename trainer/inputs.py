"""The ``tf.data`` input pipeline: TFRecord shards of a split to batches of parsed features.

Shards are read in parallel (interleave), records are optionally cached in
memory and shuffled, then parsed a whole batch at a time (``parse_example`` on
a batch is far cheaper than per record) and prefetched, so the accelerator or
the CPU cores training the model never wait on input::

    batches = make_dataset("work/examples", "train", spec, batch_size=1024, shuffle=True, seed=7)
    for batch in batches.take(1):
        batch["module_name"], batch["label_click"]
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from ranker_core.schema import FeatureSpec
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
