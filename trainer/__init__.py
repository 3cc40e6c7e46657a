"""The MMoE canonical ranker: model, input pipeline, training and export.

TensorFlow Recommenders needs Keras 2: :func:`~ranker_core.runtime.configure_tensorflow`
sets the legacy-Keras switch here, before anything in this process can import ``tf.keras``.
"""

from ranker_core.runtime import configure_tensorflow

configure_tensorflow()
