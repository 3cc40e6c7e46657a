"""The DAG and the ``ranker`` command line. Nothing imports this package."""

import trainer  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
