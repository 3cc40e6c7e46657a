"""Export: the trained ranker as a SavedModel with its feature spec and config beside it.

The ``serving_default`` signature takes one rank-1 tensor per raw feature
(``module_name`` and every feature of the spec; strings as ``tf.string``,
numbers as ``tf.float32``) for a batch of candidates and returns one calibrated
probability per task, keyed by task name, and ``score``::

    export_model(model, "work/model")
    serve = tf.saved_model.load("work/model").signatures["serving_default"]
    serve(module_name=tf.constant(["search"]), price=tf.constant([12.0]), ...)["score"]
"""

from __future__ import annotations

import re

import tensorflow as tf

from trainer.config import CONFIG_FILE
from trainer.model import RankerModel
from trainer.schema import FEATURE_SPEC_FILE, MODULE, FeatureSpec
from trainer.storage import write_json

SIGNATURE = "serving_default"
# SavedModel signature argument names must match this.
_VALID_INPUT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-/]*$")


def input_specs(spec: FeatureSpec) -> dict[str, tf.TensorSpec]:
    """The serving inputs: ``module_name`` then the spec's features, in spec order."""
    inputs = {MODULE: tf.TensorSpec([None], tf.string, name=MODULE)}
    for feature in spec.features:
        if not _VALID_INPUT_NAME.match(feature.name):
            raise ValueError(
                f"feature name {feature.name!r} cannot be a SavedModel input (allowed: {_VALID_INPUT_NAME.pattern})"
            )
        dtype = tf.string if feature.is_string else tf.float32
        inputs[feature.name] = tf.TensorSpec([None], dtype, name=feature.name)
    return inputs


class ServingModule(tf.Module):
    """What is saved: the Keras ranker and a flat-keyword serving function.

    Example::

        module = ServingModule(model)
        module.serve.get_concrete_function()(**raw_tensors)["score"]
    """

    def __init__(self, model: RankerModel) -> None:
        super().__init__(name="ranker")
        self.model = model
        specs = input_specs(model.spec)
        self.serve = tf.function(self._serve, input_signature=[specs])

    def _serve(self, features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return self.model(features, training=False)


def export_model(model: RankerModel, model_dir: str) -> str:
    """Save ``model`` as a SavedModel in ``model_dir`` (local or gs://) with its spec and config; returns the dir."""
    module = ServingModule(model)
    signature = module.serve.get_concrete_function()
    tf.saved_model.save(module, model_dir, signatures={SIGNATURE: signature})
    write_json(f"{model_dir.rstrip('/')}/{FEATURE_SPEC_FILE}", model.spec.to_dict())
    model.config.save(f"{model_dir.rstrip('/')}/{CONFIG_FILE}")
    return model_dir
