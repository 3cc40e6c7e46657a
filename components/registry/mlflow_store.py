"""The MLflow model registry backend (the local default: SQLite in the working folder).

Each version is backed by an MLflow run in the experiment named after the
model: the run holds every evaluation metric, the provenance as parameters,
the evaluation report as artifacts and the model files under ``model/``; the
version carries the provenance and the headline metrics as tags. Browse it
with ``mlflow ui --backend-store-uri sqlite:///work_dir/mlflow.db``.

Usage::

    registry = MlflowRegistry(RegistryConfig(work_dir="work_dir"))
    registry.alias_version("champion")   # "3" or None
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

from components.registry.core import Candidate, RegistryConfig

logger = logging.getLogger(__name__)

# MLflow accepts at most 1000 metrics in one log_batch call.
_METRIC_BATCH = 1000
_MAX_TAG_VALUE = 5000


class MlflowRegistry:
    """:class:`~components.registry.core.RegistryBackend` on an MLflow tracking and registry store."""

    def __init__(self, config: RegistryConfig) -> None:
        from mlflow import MlflowClient

        self.config = config
        self.name = config.model_name
        uri = config.resolved_tracking_uri
        if uri.startswith("sqlite:///"):
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)

    def find_version(self, digest: str) -> str | None:
        if not self._model_exists():
            return None
        found = self.client.search_model_versions(f"name='{self.name}' and tags.model_digest='{digest}'")
        return str(min(int(version.version) for version in found)) if found else None

    def create_version(self, candidate: Candidate) -> str:
        run_id = self._log_run(candidate)
        if not self._model_exists():
            self.client.create_registered_model(self.name, description="MMoE multi-task ranker (mmoe-ranker)")
        tags = {
            **candidate.provenance,
            **{f"metric.{key}": f"{value:.6g}" for key, value in candidate.headline.items()},
        }
        version = self.client.create_model_version(
            self.name,
            source=f"{self.client.get_run(run_id).info.artifact_uri}/model",
            run_id=run_id,
            tags={key: value[:_MAX_TAG_VALUE] for key, value in tags.items()},
            description="blessed" if candidate.blessed else "; ".join(candidate.reasons)[:_MAX_TAG_VALUE],
        )
        return str(version.version)

    def alias_version(self, alias: str) -> str | None:
        from mlflow.exceptions import MlflowException

        if not self._model_exists():
            return None
        try:
            return str(self.client.get_model_version_by_alias(self.name, alias).version)
        except MlflowException:
            return None

    def set_alias(self, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(self.name, alias, version)

    def remove_alias(self, alias: str) -> None:
        if self.alias_version(alias) is not None:
            self.client.delete_registered_model_alias(self.name, alias)

    def version_model_uri(self, version: str) -> str:
        source = self.client.get_model_version(self.name, version).source
        return _local_path(source)

    def version_aliases(self, version: str) -> tuple[str, ...]:
        return tuple(sorted(self.client.get_model_version(self.name, version).aliases))

    def version_metrics(self, version: str) -> dict[str, float]:
        """Every evaluation metric logged with a version (from its run)."""
        run_id = self.client.get_model_version(self.name, version).run_id
        return dict(self.client.get_run(run_id).data.metrics)

    def _model_exists(self) -> bool:
        return bool(self.client.search_registered_models(f"name='{self.name}'"))

    def _experiment_id(self) -> str:
        experiment = self.client.get_experiment_by_name(self.name)
        if experiment is not None:
            return experiment.experiment_id
        return self.client.create_experiment(self.name, artifact_location=self.config.resolved_artifact_root)

    def _log_run(self, candidate: Candidate) -> str:
        from mlflow.entities import Metric, Param

        run = self.client.create_run(self._experiment_id(), run_name=candidate.run_id, tags=candidate.provenance)
        run_id = run.info.run_id
        params = [Param(key, value[:6000]) for key, value in candidate.provenance.items()]
        self.client.log_batch(run_id, params=params)
        metrics = [Metric(_metric_key(key), value, 0, 0) for key, value in candidate.metrics.items()]
        metrics += [Metric(_metric_key(f"headline/{key}"), value, 0, 0) for key, value in candidate.headline.items()]
        for start in range(0, len(metrics), _METRIC_BATCH):
            self.client.log_batch(run_id, metrics=metrics[start : start + _METRIC_BATCH])
        self.client.log_artifacts(run_id, candidate.model_uri, "model")
        with tempfile.TemporaryDirectory() as folder:
            for name, document in candidate.evaluation.items():
                (Path(folder) / f"{name}.json").write_text(json.dumps(document, indent=2, sort_keys=True))
            self.client.log_artifacts(run_id, folder, "evaluation")
        self.client.set_terminated(run_id)
        return run_id


def _metric_key(key: str) -> str:
    """MLflow metric names allow letters, digits and ``_-./ ``; anything else becomes ``_``."""
    return "".join(char if char.isalnum() or char in "_-./ " else "_" for char in key)


def _local_path(uri: str) -> str:
    """``file:///a/b`` -> ``/a/b``; other schemes (gs://, s3://) are returned as they are."""
    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme == "file" else uri
