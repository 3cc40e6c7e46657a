"""One MLflow run per pipeline run, blessed or refused: settings, curves, report, verdict, model.

The ``start-tracking`` step opens the run when the pipeline starts and hands
its id to the steps that add to it (the pattern of Kubeflow's and ZenML's
MLflow integrations: a run id passed as an input, never a run held open in one
process). The run lives in the experiment named after the model, the same one
the MLflow registry uses::

    config = RegistryConfig(work_dir="work_dir")
    run_id = start_pipeline_run(config, "mmoe-ranker-2024-01-01", {"data_uri": "gs://logs/*.parquet"})
    record_training(config, run_id, "model/", "tensorboard/")      # curves, gate-usage plot, TensorBoard logs
    record_evaluation(config, run_id, EvaluationDocuments.read("metrics.json", "blessing.json", "report.html"))

``start_pipeline_run`` is idempotent: a retried step finds the run by its
``pipeline_run_id`` tag. Only a compact set of headline metrics is logged as
metrics; the long per-module table is the ``evaluation/metrics.csv`` artifact.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from components.registry.core import RegistryConfig, flatten_metrics, headline_metrics
from trainer.digest import read_json

PIPELINE_RUN_TAG = "pipeline_run_id"
DATA_TAG = "data_uri"
VERDICT_TAG = "verdict"
REASONS_TAG = "refusal_reasons"
VERSION_TAG = "registered_version"
FAILURE_TAG = "failure"
LIFT_METRIC = "headline/lift"
_MAX_PARAM = 6000
_MAX_TAG = 5000
_BATCH = 1000


@dataclasses.dataclass(frozen=True)
class EvaluationDocuments:
    """The evaluation's outputs: the report (``metrics.json``), the blessing and the HTML report's path."""

    report: dict[str, Any]
    blessing: dict[str, Any]
    report_html: str = ""

    @classmethod
    def read(
        cls, report_json: str | Path, blessing_json: str | Path, report_html: str | Path = ""
    ) -> EvaluationDocuments:
        """Read ``metrics.json`` and ``blessing.json`` (the files the evaluation wrote)."""
        return cls(read_json(str(report_json)), read_json(str(blessing_json)), str(report_html))

    @property
    def blessed(self) -> bool:
        return self.blessing.get("blessed") is True


def tracking_client(config: RegistryConfig) -> Any:
    """An ``MlflowClient`` on the configured store (the SQLite file's folder is created)."""
    from mlflow import MlflowClient

    uri = config.resolved_tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def experiment_id(client: Any, config: RegistryConfig) -> str:
    """The id of the experiment named after the model, created on first use."""
    experiment = client.get_experiment_by_name(config.model_name)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(config.model_name, artifact_location=config.resolved_artifact_root)


def start_pipeline_run(config: RegistryConfig, pipeline_run_id: str, params: Mapping[str, str]) -> str:
    """The MLflow run of a pipeline run (created with ``params`` on the first call); its id."""
    client = tracking_client(config)
    found = find_pipeline_run(client, config, pipeline_run_id)
    if found:
        return found
    tags = {PIPELINE_RUN_TAG: pipeline_run_id, DATA_TAG: str(params.get("data_uri", ""))}
    run = client.create_run(experiment_id(client, config), run_name=pipeline_run_id, tags=tags)
    from mlflow.entities import Param

    params = [Param(key, str(value)[:_MAX_PARAM]) for key, value in sorted(params.items())]
    for start in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
        client.log_batch(run.info.run_id, params=params[start : start + 100])
    return run.info.run_id


def fail_unfinished_runs(config: RegistryConfig, since_ms: int, reason: str, status: str = "FAILED") -> list[str]:
    """End with ``status`` (``FAILED``; ``KILLED`` for an interrupted run), ``reason`` as a tag, the pipeline runs
    still RUNNING that started at ``since_ms`` or later.

    A pipeline that fails before ``record_run`` leaves its MLflow run open; the local runner calls this
    when a step fails, so ``ranker runs`` says ``failed`` and why. Returns the ids it closed.
    """
    client = tracking_client(config)
    experiment = client.get_experiment_by_name(config.model_name)
    if experiment is None:
        return []
    query = f"attributes.status = 'RUNNING' and attributes.start_time >= {int(since_ms)}"
    closed = []
    for run in client.search_runs([experiment.experiment_id], query):
        if PIPELINE_RUN_TAG in run.data.tags:
            fail_run(client, run.info.run_id, reason, status)
            closed.append(run.info.run_id)
    return closed


def is_tracked(registry: str, tracking_uri: str) -> bool:
    """Whether a pipeline run has an MLflow run: not on Vertex AI without ``tracking_uri`` (Experiments records it)."""
    return not (registry == "vertex" and not tracking_uri)


def end_unsuccessful_run(config: RegistryConfig, pipeline_run_id: str, state: str, error: str) -> str:
    """After a pipeline run ended in ``state`` (``SUCCEEDED``, ``FAILED`` or ``CANCELLED``, as kfp's
    ``PipelineTaskFinalStatus`` says): unless it succeeded, its MLflow run ends FAILED (KILLED when
    cancelled) with the error; the id of the run ended, else ``""``."""
    if state == "SUCCEEDED":
        return ""
    reason = f"pipeline {state.lower()}: {error or 'no error message'}"
    return fail_pipeline_run(config, pipeline_run_id, reason, "KILLED" if state == "CANCELLED" else "FAILED")


def fail_pipeline_run(config: RegistryConfig, pipeline_run_id: str, reason: str, status: str = "FAILED") -> str:
    """End the MLflow run of this pipeline run with ``status`` (``FAILED`` or ``KILLED``) and ``reason`` as a tag,
    if it is still RUNNING; its id, else ``""``.

    The exit handler of a remote pipeline calls this when the pipeline did not succeed
    (:func:`components.tracking.component.close_tracking`): ``record_run`` never ran to end it.
    """
    client = tracking_client(config)
    run_id = find_pipeline_run(client, config, pipeline_run_id)
    if not run_id or client.get_run(run_id).info.status != "RUNNING":
        return ""
    fail_run(client, run_id, reason, status)
    return run_id


def fail_run(client: Any, run_id: str, reason: str, status: str = "FAILED") -> None:
    """End a run with ``status`` (``FAILED`` or ``KILLED``) and ``reason`` as its ``failure`` tag."""
    client.set_tag(run_id, FAILURE_TAG, reason[:_MAX_TAG])
    client.set_terminated(run_id, status=status)


def find_pipeline_run(client: Any, config: RegistryConfig, pipeline_run_id: str) -> str:
    """The id of the MLflow run already tagged with this pipeline run id, else ``""``."""
    experiment = client.get_experiment_by_name(config.model_name)
    if experiment is None:
        return ""
    found = client.search_runs([experiment.experiment_id], f"tags.{PIPELINE_RUN_TAG} = '{pipeline_run_id}'")
    return found[0].info.run_id if found else ""


def record_training(config: RegistryConfig, run_id: str, model_dir: str, tensorboard_dir: str = "") -> None:
    """Per-epoch curves (``train/<metric>`` at step = epoch), the gate-usage plot and the TensorBoard logs."""
    import matplotlib.pyplot as plt
    from mlflow.entities import Metric

    from components.evaluation.report import gate_usage_figure

    client = tracking_client(config)
    result = read_json(f"{model_dir.rstrip('/')}/metrics.json")
    now = int(time.time() * 1000)
    curves = [
        Metric(f"train/{name}", float(value), now, epoch)
        for name, values in sorted(result.get("history", {}).items())
        for epoch, value in enumerate(values, start=1)
    ]
    curves += [Metric(f"train/best_{name}", float(value), now, 0) for name, value in result["eval_metrics"].items()]
    curves.append(Metric("train/best_epoch", float(result["best_epoch"]), now, 0))
    _log_metrics(client, run_id, curves)
    figure = gate_usage_figure(result.get("gate_usage"))
    if figure is not None:
        figure.tight_layout()
        client.log_figure(run_id, figure, "training/gate_usage.png")
        plt.close(figure)
    if tensorboard_dir and Path(tensorboard_dir).is_dir():
        client.log_artifacts(run_id, tensorboard_dir, "tensorboard")


def record_evaluation(config: RegistryConfig, run_id: str, documents: EvaluationDocuments) -> bool:
    """Log the evaluation into the pipeline's run and end it (blessed or refused); the verdict."""
    client = tracking_client(config)
    log_evaluation(client, run_id, documents)
    client.set_terminated(run_id)
    return documents.blessed


def log_evaluation(
    client: Any, run_id: str, documents: EvaluationDocuments, params: Mapping[str, str] | None = None
) -> None:
    """Headline metrics, the verdict and refusal reasons as tags, the report, blessing and per-module table."""
    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    headline = [Metric(f"headline/{key}", value, now, 0) for key, value in headline_metrics(documents.blessing).items()]
    reasons = "; ".join(str(reason) for reason in documents.blessing.get("reasons", []))
    tags = [RunTag(VERDICT_TAG, "blessed" if documents.blessed else "refused")]
    if not documents.blessed:
        tags.append(RunTag(REASONS_TAG, (reasons or "no reason given")[:_MAX_TAG]))
    params = [Param(key, str(value)[:_MAX_PARAM]) for key, value in (params or {}).items()]
    client.log_batch(run_id, metrics=headline, params=params, tags=tags)
    if documents.report_html:
        client.log_text(run_id, Path(documents.report_html).read_text(), "evaluation/report.html")
    client.log_dict(run_id, documents.blessing, "evaluation/blessing.json")
    client.log_dict(run_id, documents.report, "evaluation/metrics.json")
    client.log_text(run_id, metrics_csv(documents.report), "evaluation/metrics.csv")


def record_registration(config: RegistryConfig, run_id: str, version: str) -> None:
    """Tag the run with the registry version its model became."""
    tracking_client(config).set_tag(run_id, VERSION_TAG, version)


def metrics_csv(report: Any) -> str:
    """Every number of the evaluation report as ``metric,value`` rows (the long per-module table)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["metric", "value"])
    writer.writerows(sorted(flatten_metrics(report).items()))
    return buffer.getvalue()


def _log_metrics(client: Any, run_id: str, metrics: list) -> None:
    for start in range(0, len(metrics), _BATCH):
        client.log_batch(run_id, metrics=metrics[start : start + _BATCH])


def params_json(prefix: str, config_json: str) -> dict[str, str]:
    """A config's JSON as flat ``<prefix>.<field>`` params (nested values as JSON)."""
    data = json.loads(config_json)
    return {f"{prefix}.{key}": value if isinstance(value, str) else json.dumps(value) for key, value in data.items()}


def pipeline_params(
    settings: Mapping[str, Any], model_config_json: str, baseline_config_json: str, eval_config_json: str
) -> dict[str, str]:
    """A pipeline run's params: its plain settings, the code version and the three resolved step configs."""
    from components.evaluation.config import EvaluationConfig
    from components.registry.core import code_version
    from ranker_core.step_configs import BaselineConfig, TrainerConfig

    params = {key: str(value) for key, value in settings.items()}
    params["code_version"] = code_version()
    params.update(params_json("model", TrainerConfig.from_sources(model_config_json).to_json()))
    params.update(params_json("baseline", BaselineConfig.from_sources(baseline_config_json).to_json()))
    params.update(params_json("evaluation", EvaluationConfig.from_sources(eval_config_json).to_json()))
    return params
