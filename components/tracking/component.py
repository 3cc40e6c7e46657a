"""The tracking steps: open the pipeline run's MLflow run first, record the judged run after evaluation.

``start_tracking`` runs first and returns the MLflow run id (``""`` when the
run has no MLflow store it can reach: Vertex AI without ``tracking_uri``, where
Vertex AI Experiments records the run); every later step that adds to the run
takes that id as an input. ``record_run`` runs after ``evaluate`` whatever the
verdict, so refused runs are recorded too; ``register_model`` then logs the
MLflow model into the same run. ``close_tracking`` is the pipeline's exit
handler: when a step fails (or the run is cancelled) it ends the MLflow run
FAILED (KILLED) with the error, if nothing ended it.
"""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Model

from components.base import ranker_component


@ranker_component
def start_tracking(
    pipeline_run_id: str,
    data_uri: str = "",
    dataset_spec: str = "",
    held_out_module: str = "",
    n_impressions: int = 0,
    seed: int = 0,
    model_config_json: str = "{}",
    baseline_config_json: str = "{}",
    eval_config_json: str = "{}",
    registry: str = "mlflow",
    model_name: str = "mmoe-ranker",
    tracking_uri: str = "",
    project: str = "",
    location: str = "us-central1",
) -> str:
    """Open (or, on a retry, find) the MLflow run of this pipeline run with its settings as params; its id."""
    from components.registry.core import RegistryConfig
    from components.tracking.mlflow_runs import is_tracked, pipeline_params, start_pipeline_run

    if not is_tracked(registry, tracking_uri):
        return ""
    config = RegistryConfig.for_step(registry, model_name, tracking_uri, project, location)
    settings = {
        "pipeline_run_id": pipeline_run_id,
        "data_uri": data_uri or f"simulated ({n_impressions} impressions, seed {seed})",
        "dataset_spec": dataset_spec,
        "held_out_module": held_out_module,
        "registry": registry,
    }
    params = pipeline_params(settings, model_config_json, baseline_config_json, eval_config_json)
    return start_pipeline_run(config, pipeline_run_id, params)


@ranker_component
def record_run(
    tracking_run_id: str,
    model: Input[Model],
    tensorboard: Input[Artifact],
    report: Input[HTML],
    report_json: Input[Artifact],
    blessing: Input[Artifact],
    registry: str = "mlflow",
    model_name: str = "mmoe-ranker",
    tracking_uri: str = "",
    project: str = "",
    location: str = "us-central1",
) -> str:
    """Training curves, gate-usage plot, TensorBoard logs, report, blessing and verdict; the verdict."""
    from components.registry.core import RegistryConfig
    from components.tracking.mlflow_runs import EvaluationDocuments, record_evaluation, record_training

    if not tracking_run_id:
        return "not tracked"
    config = RegistryConfig.for_step(registry, model_name, tracking_uri, project, location)
    record_training(config, tracking_run_id, model.path, tensorboard.path)
    documents = EvaluationDocuments.read(report_json.path, blessing.path, report.path)
    return "blessed" if record_evaluation(config, tracking_run_id, documents) else "refused"


@ranker_component
def close_tracking(
    status: dsl.PipelineTaskFinalStatus,
    pipeline_run_id: str,
    registry: str = "mlflow",
    model_name: str = "mmoe-ranker",
    tracking_uri: str = "",
    project: str = "",
    location: str = "us-central1",
) -> str:
    """The exit handler: a pipeline run that did not succeed ends its MLflow run FAILED (or KILLED when cancelled)
    with the failed task's error; the run id it ended, else ``""``."""
    from components.registry.core import RegistryConfig
    from components.tracking.mlflow_runs import end_unsuccessful_run, is_tracked

    if not is_tracked(registry, tracking_uri):
        return ""
    config = RegistryConfig.for_step(registry, model_name, tracking_uri, project, location)
    return end_unsuccessful_run(config, pipeline_run_id, status.state, status.error_message or "")
