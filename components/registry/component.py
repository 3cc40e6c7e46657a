"""The ``register`` pipeline step: register a blessed model in MLflow or Vertex AI Model Registry."""

from kfp.dsl import Artifact, Input, Model

from components.base import ranker_component


@ranker_component
def register_model(
    model: Input[Model],
    report_json: Input[Artifact],
    blessing: Input[Artifact],
    registry: str = "mlflow",
    model_name: str = "mmoe-ranker",
    tracking_uri: str = "",
    project: str = "",
    location: str = "us-central1",
    serving_image: str = "",
    run_id: str = "",
    data_uri: str = "",
    tracking_run_id: str = "",
) -> str:
    """Register the model once (idempotent per model digest), promote it to champion when blessed.

    Returns the registered version. Fails, writing nothing, when the blessing's
    ``blessed`` is not a JSON boolean, its ``judged_model`` is not this model,
    or the model does not load and score. ``tracking_uri`` is the MLflow store
    (``sqlite:///.../mlflow.db`` locally); ``project``/``location``/``serving_image``
    are for ``registry="vertex"``. ``tracking_run_id`` is the pipeline run's MLflow
    run (``start_tracking``): the MLflow registry logs the model there.
    """
    from components.registry.core import RegistryConfig, register_from_artifacts

    config = RegistryConfig.for_step(registry, model_name, tracking_uri, project, location, serving_image=serving_image)
    # model.uri (gs:// on Vertex AI) is what the registry records; the JSON files are read via their paths.
    registered = register_from_artifacts(
        model.uri, report_json.path, blessing.path, config, run_id, data_uri, tracking_run_id
    )
    return registered.version
