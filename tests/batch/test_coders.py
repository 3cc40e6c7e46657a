"""The chunk coder: pickle round trips, sizes from buffers (no pickling), and the pipeline's chunks use it."""

import pickle

import apache_beam as beam
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from apache_beam.ml.inference.base import PredictionResult

from batch.coders import ChunkCoder, chunk_bytes


def chunk() -> pd.DataFrame:
    return pd.DataFrame({"user_id": ["u1", "u2", "u2"], "price": np.array([1.5, np.nan, 3.0], dtype=np.float32)})


@pytest.mark.parametrize(
    "value",
    [chunk(), pa.table({"score": [0.5, 0.25]}), PredictionResult(chunk(), {"score": np.zeros(3)}, "m")],
    ids=["frame", "arrow", "prediction"],
)
def test_chunks_round_trip_and_their_size_is_estimated_without_encoding(value, monkeypatch):
    coder = ChunkCoder()
    decoded = coder.decode(coder.encode(value))
    if isinstance(value, PredictionResult):
        pd.testing.assert_frame_equal(decoded.example, value.example)
        np.testing.assert_array_equal(decoded.inference["score"], value.inference["score"])
    elif isinstance(value, pd.DataFrame):
        pd.testing.assert_frame_equal(decoded, value)
    else:
        assert decoded.equals(value)

    monkeypatch.setattr(pickle, "dumps", lambda *args: pytest.fail("the size estimate pickled the chunk"))
    assert coder.estimate_size(value) == chunk_bytes(value) > 0


def test_a_frame_counts_its_column_buffers():
    frame = chunk()
    assert chunk_bytes(frame) == 3 * 8 + 3 * 4  # object references and float32 values


def test_the_pipeline_chunks_are_encoded_by_the_chunk_coder():
    from batch import coders  # noqa: F401  (registers the coder)

    for element_type in (pd.DataFrame, pa.Table, PredictionResult):
        assert isinstance(beam.coders.registry.get_coder(element_type), ChunkCoder)
