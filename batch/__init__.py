"""Batch ranking: the champion scores candidates with Beam RunInference, top-k per user to Parquet or BigQuery."""

from ranker_core.runtime import configure_tensorflow

configure_tensorflow()  # before any module of this package loads TensorFlow
