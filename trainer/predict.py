"""Load an exported ranker and score batches of candidates from plain Python/NumPy values.

The evaluation and the prediction server both go through :class:`Ranker`::

    ranker = load_ranker("work/model")
    out = ranker.predict({"module_name": ["search", "search"], "price": [12.0, None], "category": ["toys", "art"]})
    out["score"], out["click"]      # np.ndarray of shape (2,)

Inputs are validated and cast: a missing numeric feature (absent column,
``None`` or NaN) is NaN, a missing string feature is ``""`` (both encode as
"missing" inside the model); a column of the wrong length or a value that is
not a number is an error naming the feature and the row. Keys that are not
model inputs are ignored. One signature call scores the whole batch, through
two matrices (every string input, every numeric one) rather than one argument
per feature: a concrete function binds each keyword argument in Python, which
for a 43-input spec cost about as much as a tenth of the model's own work.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from ranker_core.schema import MODULE, serving_input_name
from trainer.config import load_config
from trainer.export import SIGNATURE
from trainer.model import SCORE
from trainer.storage import load_feature_spec

ColumnValues = np.ndarray | Sequence[Any]


class Ranker:
    """A loaded SavedModel ranker: ``predict(columns) -> {task: probabilities, "score": scores}``.

    Example::

        ranker = Ranker("work/model")
        ranker.task_names        # ("click", "favorite", "add_to_cart", "purchase")
        ranker.input_signature   # {"module_name": TensorSpec(shape=(None,), dtype=tf.string), ...}
    """

    def __init__(self, model_dir: str | Path) -> None:
        self.model_dir = str(model_dir)
        if not tf.io.gfile.exists(f"{self.model_dir}/saved_model.pb"):
            raise FileNotFoundError(f"no SavedModel at {self.model_dir}: train one with `ranker train`")
        self.feature_spec = load_feature_spec(self.model_dir)
        self.config = load_config(self.model_dir)
        self._saved = tf.saved_model.load(self.model_dir)
        self._serve = self._saved.signatures[SIGNATURE]
        arguments = self._serve.structured_input_signature[1]
        names = [MODULE, *self.feature_spec.feature_names]
        # raw feature name -> signature argument (TensorFlow sanitizes names such as "item-price")
        self._arguments = {name: serving_input_name(name) for name in names}
        missing = sorted(name for name, argument in self._arguments.items() if argument not in arguments)
        if missing:
            raise ValueError(f"the SavedModel in {self.model_dir} has no input for {missing}: spec and model differ")
        self.input_signature: dict[str, tf.TensorSpec] = {name: arguments[self._arguments[name]] for name in names}
        self.string_inputs = tuple(name for name, spec in self.input_signature.items() if spec.dtype == tf.string)
        self.number_inputs = tuple(name for name, spec in self.input_signature.items() if spec.dtype != tf.string)
        self._serve_matrices = _matrix_call(
            self._serve,
            [self._arguments[name] for name in self.string_inputs],
            [self._arguments[name] for name in self.number_inputs],
        )
        self.task_names: tuple[str, ...] = self.feature_spec.task_names
        self.output_names: tuple[str, ...] = (*self.task_names, SCORE)

    def predict(self, features: Mapping[str, ColumnValues]) -> dict[str, np.ndarray]:
        """Probabilities per task and the ranking score for a batch of candidates (one row per candidate)."""
        return self.predict_tensors(*self.to_tensors(features))

    def to_tensors(self, features: Mapping[str, ColumnValues]) -> tuple[tf.Tensor, tf.Tensor]:
        """Validated, cast inputs (missing columns filled) as ``[len(string_inputs), rows]`` strings
        and ``[len(number_inputs), rows]`` float32, one row per input in those attributes' order."""
        rows = _batch_size(features, self.input_signature)
        strings = [_strings(name, features.get(name), rows) for name in self.string_inputs]
        numbers = [_floats(name, features.get(name), rows) for name in self.number_inputs]
        return (
            tf.constant(np.stack(strings), tf.string),
            tf.constant(np.stack(numbers) if numbers else np.zeros((0, rows), np.float32), tf.float32),
        )

    def predict_tensors(self, strings: tf.Tensor, numbers: tf.Tensor) -> dict[str, np.ndarray]:
        """``predict`` on inputs from :meth:`to_tensors`."""
        outputs = self._serve_matrices(strings, numbers)
        return {name: outputs[name].numpy() for name in self.output_names}


def load_ranker(model_dir: str | Path) -> Ranker:
    """The exported ranker in ``model_dir`` (local or gs://), ready to ``predict``."""
    return Ranker(model_dir)


def set_op_threads(threads: int) -> None:
    """Size TensorFlow's intra- and inter-op thread pools in this process (0: TensorFlow's default, one per core).

    It must run before TensorFlow executes anything in this process; after that it
    logs a warning and changes nothing. ``ranker serve`` and each batch ranking worker call it.
    """
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow already ran something here (e.g. a test that served in-process)
        logging.getLogger(__name__).warning("TensorFlow is already initialized: op_threads=%d not applied", threads)


def _matrix_call(
    serve: tf.types.experimental.ConcreteFunction, string_arguments: Sequence[str], number_arguments: Sequence[str]
) -> tf.types.experimental.ConcreteFunction:
    """``serve`` as a function of a ``[strings, rows]`` and a ``[numbers, rows]`` matrix, row i its i-th argument.

    Feature-major, so each argument is a contiguous row of its matrix.
    """

    @tf.function(
        input_signature=[
            tf.TensorSpec([len(string_arguments), None], tf.string),
            tf.TensorSpec([len(number_arguments), None], tf.float32),
        ]
    )
    def call(strings: tf.Tensor, numbers: tf.Tensor) -> dict[str, tf.Tensor]:
        inputs = dict(zip(string_arguments, tf.unstack(strings), strict=True))
        inputs.update(zip(number_arguments, tf.unstack(numbers), strict=True))
        return serve(**inputs)

    return call.get_concrete_function()


def _batch_size(features: Mapping[str, ColumnValues], signature: Mapping[str, tf.TensorSpec]) -> int:
    lengths = {name: len(features[name]) for name in signature if name in features and features[name] is not None}
    if not lengths:
        raise ValueError(f"no model input in the request; expected some of {', '.join(signature)}")
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{name}={length}" for name, length in lengths.items())
        raise ValueError(f"input columns have different lengths: {detail}")
    return next(iter(lengths.values()))


def _column(name: str, values: ColumnValues, rows: int) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or len(array) != rows:
        raise ValueError(f"feature {name!r} must be one value per candidate, got shape {array.shape}")
    return array


def _strings(name: str, values: ColumnValues | None, rows: int) -> np.ndarray:
    """Strings for a tf.string input; None/NaN become "" (vectorized: no Python per candidate)."""
    if values is None:
        return np.full(rows, "", dtype=object)
    array = _column(name, values, rows)
    if array.dtype.kind in "US" or pd.api.types.infer_dtype(array, skipna=False) == "string":
        return array  # the fast path: strings already, none missing
    array = np.where(pd.isna(array), "", array.astype(object))
    if pd.api.types.infer_dtype(array, skipna=True) in ("string", "bytes", "empty"):
        return array
    return array.astype(str)  # e.g. ids sent as JSON numbers


def _floats(name: str, values: ColumnValues | None, rows: int) -> np.ndarray:
    """float32 for a numeric input; None and "" become NaN; anything else that is not a number is an error."""
    if values is None:
        return np.full(rows, np.nan, dtype=np.float32)
    array = _column(name, values, rows)
    if array.dtype.kind in "fiub":  # the fast path: already numbers
        return array.astype(np.float32, copy=False)
    series = pd.Series(array, dtype=object).replace("", None)
    numbers = pd.to_numeric(series, errors="coerce")
    bad = numbers.isna() & series.notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(f"feature {name!r} row {row}: {series.iloc[row]!r} is not a number")
    return numbers.to_numpy(dtype=np.float32)
