"""Reading a split back: every shard, rows in shard order, whatever the number of reading threads."""

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import synthetic_feature_spec, synthetic_rows
from trainer.examples import COMPRESSION, encode_example, read_split


def write_split(folder, split, shards, spec) -> None:
    """Each list of rows in ``shards`` as one shard file, named so that they sort in list order."""
    (folder / split).mkdir(parents=True)
    for index, rows in enumerate(shards):
        path = folder / split / f"part-{index:05d}-of-{len(shards):05d}.tfrecord.gz"
        with tf.io.TFRecordWriter(str(path), options=COMPRESSION) as writer:
            for row in rows:
                writer.write(encode_example(row, spec))


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_a_split_of_several_shards_reads_back_every_row_in_shard_order(tmp_path, threads):
    spec = synthetic_feature_spec()
    rows = synthetic_rows(10, candidates=5, seed=3)
    write_split(tmp_path, "test", [rows[:20], [], rows[20:35], rows[35:]], spec)

    columns = read_split(tmp_path, "test", spec, batch_size=7, threads=threads)

    assert list(columns) == sorted(columns), "columns in key order, whatever the spec's order"
    assert columns["request_id"].tolist() == [row["request_id"] for row in rows]
    assert columns["category"].tolist() == [row["category"] for row in rows]
    np.testing.assert_allclose(columns["price"], [row["price"] for row in rows], rtol=1e-6)


def test_a_split_whose_shards_are_all_empty_reads_as_no_columns(tmp_path):
    spec = synthetic_feature_spec()
    write_split(tmp_path, "test", [[], []], spec)

    assert read_split(tmp_path, "test", spec) == {}


def test_a_split_without_shards_is_an_error_that_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="test"):
        read_split(tmp_path, "test", synthetic_feature_spec())
