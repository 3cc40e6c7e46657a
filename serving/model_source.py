"""Where the served model comes from: a local folder, a gs:// folder or a registry alias.

::

    resolve_model_dir("work_dir/model")                        # a local export, used in place
    resolve_model_dir("gs://bucket/models/42", cache_dir)      # copied down with tf.io.gfile
    resolve_model_dir("models:/mmoe-ranker@champion")          # MLflow alias (MLFLOW_TRACKING_URI, else
                                                               # the registry `ranker run` writes in work_dir)
    resolve_model_dir("models:/mmoe-ranker/3")                 # MLflow version

The result is a local folder holding the SavedModel (``saved_model.pb``) with
``feature_spec.json`` beside it; registry artifacts may nest it one or more
folders deep, so the folder is searched for.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path

from ranker_core.cli_support import UserError
from ranker_core.schema import FEATURE_SPEC_FILE
from ranker_core.serving import MODEL_NAME, global_tracking_uri, local_registry_uri, local_store_path

logger = logging.getLogger(__name__)

SAVED_MODEL_FILE = "saved_model.pb"
DEFAULT_REGISTERED_MODEL = MODEL_NAME
_MLFLOW_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


class ModelSourceError(UserError, RuntimeError):
    """The model URI cannot be resolved to an exported ranker; the message says why (one line from ``ranker``)."""


def resolve_model_dir(uri: str, cache_dir: str | Path | None = None) -> Path:
    """A local folder with the exported ranker behind ``uri`` (see the module docstring for the forms)."""
    if not uri:
        raise ModelSourceError("no model URI: pass --model-uri, or set MODEL_URI or AIP_STORAGE_URI")
    cache = Path(cache_dir) if cache_dir else Path(tempfile.mkdtemp(prefix="ranker-model-"))
    if uri.startswith("models:/"):
        folder = _download_mlflow(uri, cache)
    elif "://" in uri and not uri.startswith("file://"):
        folder = _copy_down(uri, cache / "model")
    else:
        folder = Path(uri.removeprefix("file://"))
    return find_export(folder, uri)


def find_export(folder: Path, uri: str) -> Path:
    """The folder under ``folder`` (itself first) that holds ``saved_model.pb`` and ``feature_spec.json``."""
    if not folder.is_dir():
        raise ModelSourceError(f"model folder {folder} (from {uri}) does not exist")
    candidates = sorted((path.parent for path in folder.rglob(SAVED_MODEL_FILE)), key=lambda p: len(p.parts))
    for candidate in candidates:
        if (candidate / FEATURE_SPEC_FILE).is_file():
            return candidate
    if candidates:
        raise ModelSourceError(f"{candidates[0]} (from {uri}) has a SavedModel but no {FEATURE_SPEC_FILE} beside it")
    raise ModelSourceError(f"no exported ranker ({SAVED_MODEL_FILE}) under {folder} (from {uri})")


def _copy_down(uri: str, destination: Path) -> Path:
    """Copy a remote folder (gs://, or any tf.io.gfile filesystem) to ``destination``."""
    import tensorflow as tf

    if not tf.io.gfile.isdir(uri):
        raise ModelSourceError(f"model folder {uri} does not exist or cannot be read")
    logger.info("copying model %s to %s", uri, destination)
    for root, _, files in tf.io.gfile.walk(uri):
        relative = root[len(uri.rstrip("/")) :].lstrip("/")
        target = destination / relative
        target.mkdir(parents=True, exist_ok=True)
        for name in files:
            tf.io.gfile.copy(f"{root.rstrip('/')}/{name}", str(target / name), overwrite=True)
    return destination


def registry_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI``, else the local registry ``ranker run`` writes: ``<RANKER_WORK_DIR>/mlflow.db``
    (``work_dir`` by default), as ``ranker register``, ``deploy`` and ``batch-rank`` read it.

    A local store that does not exist is an error: MLflow would create an empty one and find nothing in it.
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri is None:
        uri = local_registry_uri(os.environ.get("RANKER_WORK_DIR") or "work_dir")
    database = local_store_path(uri)
    if database is not None and not database.is_file():
        raise ModelSourceError(
            f"no MLflow registry at {database}: run `ranker run` first, or point MLFLOW_TRACKING_URI "
            "(or RANKER_WORK_DIR) at the registry that holds the model"
        )
    return uri


def _download_mlflow(uri: str, cache: Path) -> Path:
    """Resolve ``models:/<name>@<alias>`` or ``models:/<name>/<version>`` and download its files."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    match = _MLFLOW_URI.match(uri)
    if not match:
        raise ModelSourceError(f"{uri} is not models:/<name>@<alias> or models:/<name>/<version>")
    name, alias, version = match["name"], match["alias"], match["version"]
    tracking_uri = registry_tracking_uri()
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        found = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
    except MlflowException as error:
        raise ModelSourceError(f"{uri} not found in the MLflow registry at {tracking_uri}: {error.message}") from None
    logger.info("%s is version %s of %s (%s)", uri, found.version, name, found.source)
    destination = cache / f"{name}-v{found.version}"
    destination.mkdir(parents=True, exist_ok=True)
    # a version's source is models:/m-<id> (a logged model), which MLflow looks up in the process-wide store
    with global_tracking_uri(tracking_uri):
        local = mlflow.artifacts.download_artifacts(artifact_uri=found.source, dst_path=str(destination))
    from trainer.mlflow_model import saved_model_dir

    return saved_model_dir(local)  # a version is an MLflow pyfunc model holding the SavedModel
