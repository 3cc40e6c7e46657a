"""The exported ranker as an MLflow ``pyfunc`` model, so MLflow tools can load and serve it.

The SavedModel folder (with ``feature_spec.json`` beside it) is the pyfunc
model's artifact ``saved_model``; :class:`RankerPyfunc` wraps
:class:`~trainer.predict.Ranker`, so ``mlflow.pyfunc.load_model(uri).predict(frame)``
and ``mlflow models serve -m models:/mmoe-ranker@champion --env-manager local``
score exactly as the SavedModel does. The signature names every raw input
column and the outputs (one probability per task and ``score``)::

    info = log_ranker_model("work/model", name="model")   # inside an active MLflow run
    mlflow.pyfunc.load_model(info.model_uri).predict(frame)   # DataFrame: click, ..., score

Folders that hold the MLflow model rather than the bare SavedModel (a
registered version downloaded by the server) are mapped back to the SavedModel
with :func:`saved_model_dir`.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd

SAVED_MODEL_ARTIFACT = "saved_model"
MLMODEL_FILE = "MLmodel"
SIGNATURE_ROWS = 4


class RankerPyfunc(mlflow.pyfunc.PythonModel):
    """``mlflow.pyfunc.PythonModel`` over the exported ranker: a DataFrame of candidates in, scores out."""

    def load_context(self, context: Any) -> None:
        from trainer.predict import load_ranker

        self.ranker = load_ranker(context.artifacts[SAVED_MODEL_ARTIFACT])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        """One row per candidate: the probability of every task and ``score``."""
        outputs = self.ranker.predict({name: model_input[name].to_numpy() for name in model_input.columns})
        return pd.DataFrame({name: values.reshape(-1) for name, values in outputs.items()})


def example_frame(model_dir: str | Path, rows: int = SIGNATURE_ROWS) -> pd.DataFrame:
    """A few synthetic candidates in the model's input columns (``module_name`` and every feature)."""
    from ranker_core.schema import DEFAULT_MODULE, MODULE
    from trainer.storage import load_feature_spec
    from trainer.synthetic import synthetic_columns

    spec = load_feature_spec(str(model_dir))
    modules = spec.modules or [DEFAULT_MODULE]
    columns = {MODULE: [modules[row % len(modules)] for row in range(rows)], **synthetic_columns(spec, rows)}
    return pd.DataFrame(columns)


def log_ranker_model(model_dir: str | Path, name: str = "model") -> Any:
    """Log the SavedModel in ``model_dir`` as a pyfunc model with its signature in the active MLflow run.

    ``model_dir`` may be a link (``work_dir/latest/model``) or hold links: MLflow is given the real folder
    (see :func:`artifact_source`). Returns MLflow's ``ModelInfo`` (``model_uri``, ``model_id``, ``signature``).
    """
    from mlflow.models import infer_signature

    from trainer.predict import load_ranker

    frame = example_frame(model_dir)
    outputs = load_ranker(model_dir).predict({column: frame[column].to_numpy() for column in frame.columns})
    predictions = pd.DataFrame({key: value.reshape(-1) for key, value in outputs.items()})
    with artifact_source(model_dir) as source:
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=RankerPyfunc(),
            artifacts={SAVED_MODEL_ARTIFACT: source},
            signature=infer_signature(frame, predictions),
            input_example=frame.head(2),
            pip_requirements=[],
        )


@contextlib.contextmanager
def artifact_source(model_dir: str | Path) -> Iterator[str]:
    """``model_dir`` as MLflow may copy it as an artifact: remote URIs (``gs://``) as they are; a local folder
    by its real path, or, when links inside it point elsewhere, as a temporary copy with the links followed.

    MLflow copies a local artifact from inside its parent folder and refuses any path that resolves outside
    it ("Invalid path: resolved path is outside the artifact directory"): a link such as
    ``work_dir/latest/model`` to the run's ``pipeline_root/.../model`` is one.
    """
    text = str(model_dir)
    if "://" in text and not text.startswith("file://"):
        yield text
        return
    folder = Path(text.removeprefix("file://")).resolve()
    if not any(path.is_symlink() for path in folder.rglob("*")):
        yield str(folder)
        return
    with tempfile.TemporaryDirectory(prefix="ranker-model-") as staging:
        copy = Path(staging) / folder.name
        shutil.copytree(folder, copy, symlinks=False)  # the files the links point at
        yield str(copy)


def saved_model_dir(folder: str | Path) -> Path:
    """The SavedModel inside an MLflow pyfunc model folder (from its ``MLmodel``); any other folder as it is."""
    folder = Path(folder)
    if not (folder / MLMODEL_FILE).is_file():
        return folder
    from mlflow.models import Model

    flavor = Model.load(str(folder / MLMODEL_FILE)).flavors.get("python_function", {})
    artifact = flavor.get("artifacts", {}).get(SAVED_MODEL_ARTIFACT, {}).get("path")
    return folder / artifact if artifact else folder
