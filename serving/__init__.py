"""The prediction server and the load tester."""

from ranker_core.runtime import configure_tensorflow

configure_tensorflow()  # before any module of this package loads TensorFlow
