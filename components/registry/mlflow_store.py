"""The MLflow model registry backend (the local default: SQLite in the working folder).

Each version is an MLflow ``pyfunc`` model (:mod:`trainer.mlflow_model`: the
SavedModel with a signature) logged in an MLflow run of the experiment named
after the model: the pipeline run's own run (``start-tracking``, see
:mod:`components.tracking.mlflow_runs`) or, for ``ranker register`` alone, a
run of its own holding the provenance, the headline metrics and the
evaluation. The version carries the provenance and the headline metrics as
tags. Browse it with ``mlflow ui --backend-store-uri sqlite:///work_dir/mlflow.db``.

Usage::

    registry = MlflowRegistry(RegistryConfig(work_dir="work_dir"))
    registry.alias_version("champion")   # "3" or None
"""

from __future__ import annotations

import logging
import time
from urllib.parse import unquote, urlparse

from components.registry.core import Candidate, RegistryConfig, blessed_tag
from components.tracking.mlflow_runs import (
    EvaluationDocuments,
    experiment_id,
    fail_run,
    log_evaluation,
    record_registration,
    tracking_client,
)
from ranker_core.serving import global_tracking_uri

logger = logging.getLogger(__name__)

_MAX_TAG_VALUE = 5000


class MlflowRegistry:
    """:class:`~components.registry.core.RegistryBackend` on an MLflow tracking and registry store."""

    def __init__(self, config: RegistryConfig) -> None:
        self.config = config
        self.name = config.model_name
        self.client = tracking_client(config)

    def find_version(self, digest: str) -> str | None:
        if not self.model_exists():
            return None
        found = self.client.search_model_versions(f"name='{self.name}' and tags.model_digest='{digest}'")
        return str(min(int(version.version) for version in found)) if found else None

    def create_version(self, candidate: Candidate) -> str:
        run_id = candidate.tracking_run_id or self._log_run(candidate)
        try:
            with global_tracking_uri(self.config.resolved_tracking_uri):  # MLflow's fluent API and models:/ sources
                version = self._create_version(candidate, run_id)
        except Exception as error:
            self._record_failure(run_id, error)
            raise
        record_registration(self.config, run_id, version)
        return version

    def record_found_version(self, candidate: Candidate, version: str) -> None:
        """Tag the pipeline run's MLflow run with the version its model already is (``ranker runs`` lists it);
        a registration outside a pipeline (no ``tracking_run_id``) has no run to tag."""
        if candidate.tracking_run_id:
            record_registration(self.config, candidate.tracking_run_id, version)

    def _create_version(self, candidate: Candidate, run_id: str) -> str:
        """Log the model into ``run_id`` and make it a version of the registered model; the version."""
        import mlflow

        from trainer.mlflow_model import log_ranker_model

        with mlflow.start_run(run_id=run_id):
            logged = log_ranker_model(candidate.model_uri, name="model")
        if not self.model_exists():
            self.client.create_registered_model(self.name, description="MMoE multi-task ranker (mmoe-ranker)")
        tags = {
            **candidate.provenance,
            **{f"metric.{key}": f"{value:.6g}" for key, value in candidate.headline.items()},
        }
        version = self.client.create_model_version(
            self.name,
            source=logged.model_uri,
            run_id=run_id,
            model_id=logged.model_id,
            tags={key: value[:_MAX_TAG_VALUE] for key, value in tags.items()},
            description="blessed" if candidate.blessed else "; ".join(candidate.reasons)[:_MAX_TAG_VALUE],
        )
        return str(version.version)

    def alias_version(self, alias: str) -> str | None:
        from mlflow.exceptions import MlflowException

        if not self.model_exists():
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
        """The SavedModel folder of a version (inside its MLflow model; older versions hold it directly)."""
        from trainer.mlflow_model import saved_model_dir

        source = self.client.get_model_version(self.name, version).source
        if source.startswith("models:/"):  # an MLflow 3 logged model: models:/<model id>
            source = self.client.get_logged_model(source.removeprefix("models:/")).artifact_location
        location = _local_path(source)
        return str(saved_model_dir(location)) if "://" not in location else location

    def version_aliases(self, version: str) -> tuple[str, ...]:
        return tuple(sorted(self.client.get_model_version(self.name, version).aliases))

    def version_blessed(self, version: str) -> bool | None:
        return blessed_tag(self.client.get_model_version(self.name, version).tags.get("blessed"))

    def version_metrics(self, version: str) -> dict[str, float]:
        """Every evaluation metric logged with a version (from its run)."""
        run_id = self.client.get_model_version(self.name, version).run_id
        return dict(self.client.get_run(run_id).data.metrics)

    def _record_failure(self, run_id: str, error: Exception) -> None:
        """The run ended FAILED (``mlflow.start_run`` ends it so): tag why, so ``ranker runs --json`` says it.

        A store that cannot take the tag either is only logged: the error that matters is ``error``.
        """
        try:
            fail_run(self.client, run_id, f"registering the model failed: {type(error).__name__}: {error}")
        except Exception as tagging:
            logger.warning("could not mark MLflow run %s failed: %s", run_id, tagging)

    def model_exists(self) -> bool:
        return bool(self.client.search_registered_models(f"name='{self.name}'"))

    def _log_run(self, candidate: Candidate) -> str:
        """A run of its own for a registration outside a pipeline: provenance, headline metrics, evaluation."""
        run = self.client.create_run(
            experiment_id(self.client, self.config), run_name=candidate.run_id, tags=candidate.provenance
        )
        if candidate.evaluation:
            documents = EvaluationDocuments(candidate.evaluation["report"], candidate.evaluation["blessing"])
            log_evaluation(self.client, run.info.run_id, documents, params=candidate.provenance)
        else:  # registered from code, without the evaluation's files: provenance and headline metrics only
            from mlflow.entities import Metric, Param

            now = int(time.time() * 1000)
            metrics = [Metric(key, float(value), now, 0) for key, value in candidate.headline.items()]
            params = [Param(key, str(value)) for key, value in candidate.provenance.items()]
            self.client.log_batch(run.info.run_id, metrics=metrics, params=params)
        return run.info.run_id


def _local_path(uri: str) -> str:
    """``file:///a/b`` -> ``/a/b``; other schemes (gs://, s3://) are returned as they are."""
    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme == "file" else uri
