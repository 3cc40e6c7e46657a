"""The MMoE canonical ranker: schema, model, input pipeline, training and export.

TensorFlow Recommenders needs Keras 2, so the legacy-Keras switch is set here,
before anything in this process can import ``tf.keras``.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
