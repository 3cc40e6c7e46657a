"""JSON files and feature specs on local disk or Cloud Storage (``gs://``), through ``tf.io.gfile``.

spec = load_feature_spec("gs://bucket/examples")     # the folder's feature_spec.json
write_json("gs://bucket/model/metrics.json", {"auc": 0.71})
"""

from __future__ import annotations

import json
from typing import Any

import tensorflow as tf

from ranker_core.cli_support import MissingInputError
from ranker_core.schema import FEATURE_SPEC_FILE, FeatureSpec


def read_json(path: str) -> Any:
    with tf.io.gfile.GFile(path) as file:
        return json.loads(file.read())


def write_json(path: str, payload: Any) -> None:
    with tf.io.gfile.GFile(path, "w") as file:
        file.write(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def load_feature_spec(folder: str) -> FeatureSpec:
    """The ``feature_spec.json`` in ``folder``; the error says which file is missing or invalid."""
    path = f"{str(folder).rstrip('/')}/{FEATURE_SPEC_FILE}"
    if not tf.io.gfile.exists(path):
        raise MissingInputError(f"no feature spec at {path}: run `ranker extract-features` first")
    try:
        return FeatureSpec.from_dict(read_json(path))
    except (KeyError, TypeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a valid feature spec: {error}") from error
