"""The serving contract: what the prediction server listens on and what Vertex AI / KServe call.

Vertex AI sends ``AIP_PREDICT_ROUTE``, ``AIP_HEALTH_ROUTE`` and ``AIP_HTTP_PORT``
to the container; these are the defaults of the server (``serving/config.py``)
and of a model registered in Vertex AI Model Registry (``components/registry``).
"""

from pathlib import Path

PREDICT_ROUTE = "/predict"
HEALTH_ROUTE = "/health"
HTTP_PORT = 8080
# The registered model the server loads by default (models:/<name>@champion).
MODEL_NAME = "mmoe-ranker"


def local_registry_uri(work_dir: str) -> str:
    """The MLflow store ``ranker run`` writes in ``work_dir``, which the server and the registry commands read
    when no tracking URI is given: ``sqlite:///<work_dir, absolute>/mlflow.db``."""
    return f"sqlite:///{Path(work_dir).resolve() / 'mlflow.db'}"


def local_store_path(uri: str) -> Path | None:
    """The SQLite file of a ``sqlite:///`` tracking URI (``None`` for any other store): what must exist before
    reading, since MLflow would create an empty store and find nothing in it."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
