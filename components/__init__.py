"""Pipeline steps: library functions and the thin kfp components that call them."""

from ranker_core.runtime import configure_tensorflow

configure_tensorflow()  # before any module of this package loads TensorFlow
