"""The serving contract: what the prediction server listens on and what Vertex AI / KServe call.

Vertex AI sends ``AIP_PREDICT_ROUTE``, ``AIP_HEALTH_ROUTE`` and ``AIP_HTTP_PORT``
to the container; these are the defaults of the server (``serving/config.py``)
and of a model registered in Vertex AI Model Registry (``components/registry``).
"""

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

PREDICT_ROUTE = "/predict"
HEALTH_ROUTE = "/health"
HTTP_PORT = 8080
# The registered model the server loads by default (models:/<name>@champion).
MODEL_NAME = "mmoe-ranker"
TRACKING_VARIABLE = "MLFLOW_TRACKING_URI"


def local_registry_uri(work_dir: str) -> str:
    """The MLflow store ``ranker run`` writes in ``work_dir``, which the server and the registry commands read
    when no tracking URI is given: ``sqlite:///<work_dir, absolute>/mlflow.db``."""
    return f"sqlite:///{Path(work_dir).resolve() / 'mlflow.db'}"


def local_store_path(uri: str) -> Path | None:
    """The SQLite file of a ``sqlite:///`` tracking URI (``None`` for any other store): what must exist before
    reading, since MLflow would create an empty store and find nothing in it."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


@contextlib.contextmanager
def global_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's process-wide tracking URI (the registry follows it) at ``uri`` for a block, then restore it.

    ``mlflow.set_tracking_uri`` also sets ``MLFLOW_TRACKING_URI`` in the environment: that is restored too.
    """
    import mlflow

    previous, variable = mlflow.get_tracking_uri(), os.environ.get(TRACKING_VARIABLE)
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)
        if variable is None:
            os.environ.pop(TRACKING_VARIABLE, None)
        else:
            os.environ[TRACKING_VARIABLE] = variable
