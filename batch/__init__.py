"""Batch ranking: the champion scores a candidates table with Beam's RunInference, top-k per user to Parquet/BigQuery."""

from ranker_core.runtime import configure_tensorflow

configure_tensorflow()  # before any module of this package loads TensorFlow
