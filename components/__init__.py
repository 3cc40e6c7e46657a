"""Pipeline steps: library functions and the thin kfp components that call them."""

import trainer  # noqa: F401  (sets TF_USE_LEGACY_KERAS before any step touches TensorFlow)
