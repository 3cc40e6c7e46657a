"""The coder of batch ranking's chunk elements: pickled, with a size estimate that does not pickle them.

Beam's workers sample the elements of every PCollection to report their mean size,
and the default coder of a DataFrame, an Arrow table or a ``PredictionResult``
(pickle) can only tell a size by encoding the element. A batch ranking element
is a whole chunk (4,096 candidates), and with a few hundred chunks per run
nearly every one is sampled: pickling them cost 0.37 s per 500,000 candidates
inside the one fused stage that never encodes them otherwise (measured with
``benchmarks/bench_batch.py``'s data). :class:`ChunkCoder` encodes as pickle does
and estimates from the buffers' sizes::

    chunks = pipeline | beam.ParDo(ReadFile(...)).with_output_types(pd.DataFrame)   # ChunkCoder, registered below
"""

from __future__ import annotations

import pickle
from typing import Any

import apache_beam as beam
import pandas as pd
import pyarrow as pa
from apache_beam.ml.inference.base import PredictionResult


class ChunkCoder(beam.coders.Coder):
    """Pickle for DataFrames, Arrow tables and prediction results of chunks; sizes from their buffers."""

    def encode(self, value: Any) -> bytes:
        return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)

    def decode(self, encoded: bytes) -> Any:
        return pickle.loads(encoded)

    def is_deterministic(self) -> bool:
        return False

    def estimate_size(self, value: Any) -> int:
        return chunk_bytes(value)


def chunk_bytes(value: Any) -> int:
    """The bytes of a chunk's column buffers (object columns: 8 bytes a reference, as NumPy counts them)."""
    if isinstance(value, PredictionResult):
        return chunk_bytes(value.example) + sum(chunk_bytes(array) for array in value.inference.values())
    if isinstance(value, pd.DataFrame):
        return int(sum(value[column].array.nbytes for column in value.columns))
    if isinstance(value, pa.Table):
        return int(value.nbytes)
    return int(getattr(value, "nbytes", 64))


for chunk_type in (pd.DataFrame, pa.Table, PredictionResult):
    beam.coders.registry.register_coder(chunk_type, ChunkCoder)
