"""The DAG and the ``ranker`` command line. Nothing imports this package."""

from ranker_core.runtime import configure_tensorflow

configure_tensorflow()  # before any module of this package loads TensorFlow
