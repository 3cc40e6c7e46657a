"""Does a folder hold a working ranker? Load it and score a few candidates built from its own feature spec.

The registry runs this before it registers a model and before it hands the
champion to the evaluation, so a folder that only looks like a model (a text
``saved_model.pb``, a spec that does not match the graph, NaN outputs) is
stopped where it is found, with what failed::

    check_loadable("work/model")        # returns None, or raises ModelNotLoadableError
"""

from __future__ import annotations

import numpy as np

from ranker_core.schema import DEFAULT_MODULE, MODULE

SMOKE_ROWS = 8


class ModelNotLoadableError(RuntimeError):
    """Raised when a model folder cannot be loaded as a ranker or scores nonsense."""


def check_loadable(model_uri: str, rows: int = SMOKE_ROWS) -> None:
    """Load the ranker in ``model_uri`` and check it scores ``rows`` synthetic candidates with probabilities.

    Every task's output must be ``rows`` finite numbers in [0, 1]. Any failure
    (no SavedModel, an unreadable graph, a spec the graph does not accept)
    becomes a :class:`ModelNotLoadableError` naming the folder and the cause.
    """
    from trainer.predict import load_ranker
    from trainer.synthetic import synthetic_columns

    try:
        ranker = load_ranker(model_uri)
        spec = ranker.feature_spec
        modules = spec.modules or [DEFAULT_MODULE]
        columns = {**synthetic_columns(spec, rows), MODULE: [modules[row % len(modules)] for row in range(rows)]}
        outputs = ranker.predict(columns)
    except Exception as error:  # whatever loading or scoring raised, said once with the folder it concerns
        raise ModelNotLoadableError(f"{model_uri} is not a loadable ranker: {type(error).__name__}: {error}") from error
    bad = [task for task in ranker.task_names if not _are_probabilities(outputs[task], rows)]
    if bad:
        raise ModelNotLoadableError(
            f"{model_uri} loads but scores {rows} synthetic candidates with values that are not "
            f"finite probabilities for {', '.join(bad)}"
        )


def _are_probabilities(values: np.ndarray, rows: int) -> bool:
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    return len(values) == rows and bool(np.all(np.isfinite(values) & (values >= 0.0) & (values <= 1.0)))
