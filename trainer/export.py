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

import tensorflow as tf

from ranker_core.schema import FEATURE_SPEC_FILE, MODULE, FeatureSpec, serving_input_name, serving_name_clashes
from trainer.config import CONFIG_FILE, save_config
from trainer.model import RankerModel
from trainer.storage import write_json

SIGNATURE = "serving_default"


def check_serving_names(spec: FeatureSpec) -> None:
    """Refuse a spec two of whose inputs would share a serving name (checked before training, not after)."""
    clashes = serving_name_clashes([MODULE, *spec.feature_names])
    if clashes:
        raise ValueError(f"features: {'; '.join(clashes)}")


def input_specs(spec: FeatureSpec) -> dict[str, tf.TensorSpec]:
    """The serving inputs keyed by raw name: ``module_name`` then the spec's features, in spec order."""
    names = [MODULE, *spec.feature_names]
    dtypes = [tf.string, *(tf.string if feature.is_string else tf.float32 for feature in spec.features)]
    check_serving_names(spec)
    return {
        name: tf.TensorSpec([None], dtype, name=serving_input_name(name))
        for name, dtype in zip(names, dtypes, strict=True)
    }


def export_model(model: RankerModel, model_dir: str) -> str:
    """Save ``model`` as a SavedModel in ``model_dir`` (local or gs://) with its spec and config; returns the dir."""
    serve = tf.function(lambda features: model(features, training=False), input_signature=[input_specs(model.spec)])
    # save_traces=False: the signature is all that is served, so skip tracing every Keras layer (2-3x faster).
    model.save(
        model_dir,
        save_format="tf",
        signatures={SIGNATURE: serve.get_concrete_function()},
        include_optimizer=False,
        save_traces=False,
    )
    write_json(f"{model_dir.rstrip('/')}/{FEATURE_SPEC_FILE}", model.spec.to_dict())
    save_config(model.config, f"{model_dir.rstrip('/')}/{CONFIG_FILE}")
    return model_dir
