"""The Vertex AI Model Registry backend.

Every registered model is one Vertex AI model (resource id from the model
name) with one version per registration, uploaded with the project's serving
container and its routes. The evaluation is recorded on the version itself:
the headline metrics (the blessing's numbers) as JSON in the version
description and the provenance as labels (``pipeline_run_id``,
``model_digest``, ``blessed``, ``code_version``). Vertex AI has no schema for
ranking metrics, so no ``ModelEvaluation`` is imported; the full report stays
in the pipeline's ``report_json`` artifact. Idempotency: versions are looked
up by their ``model_digest`` label before anything is uploaded.

Usage::

    registry = VertexRegistry(RegistryConfig(backend="vertex", project="my-project"))
    registry.alias_version("champion")   # "4" or None
"""

from __future__ import annotations

import json
import logging
import re

from components.registry.core import Candidate, RegistryConfig, blessed_tag

logger = logging.getLogger(__name__)

_LABEL_LENGTH = 63
_DESCRIPTION_LENGTH = 4000


class VertexRegistry:
    """:class:`~components.registry.core.RegistryBackend` on Vertex AI Model Registry."""

    def __init__(self, config: RegistryConfig, credentials=None) -> None:
        from google.cloud import aiplatform

        aiplatform.init(project=config.project, location=config.location, credentials=credentials)
        self.config = config
        self.credentials = credentials
        self.model_id = resource_id(config.model_name)
        self.parent = f"projects/{config.project}/locations/{config.location}/models/{self.model_id}"

    def find_version(self, digest: str) -> str | None:
        if not self.model_exists():
            return None
        versions = self._registry().list_versions(filter=f'labels.model_digest="{label_value(digest)}"')
        return str(min(int(version.version_id) for version in versions)) if versions else None

    def create_version(self, candidate: Candidate) -> str:
        from google.cloud import aiplatform

        if not candidate.model_uri.startswith("gs://"):
            raise ValueError(
                f"Vertex AI can only register a model stored in Cloud Storage, not {candidate.model_uri}: "
                "run the pipeline on Vertex AI or copy the model to gs:// first"
            )
        exists = self.model_exists()
        model = aiplatform.Model.upload(
            display_name=self.config.model_name,
            model_id=None if exists else self.model_id,
            parent_model=self.parent if exists else None,
            artifact_uri=candidate.model_uri,
            serving_container_image_uri=self.config.serving_image,
            serving_container_predict_route=self.config.predict_route,
            serving_container_health_route=self.config.health_route,
            serving_container_ports=[self.config.serving_port],
            # Only the champion is the default version: endpoints without a version serve it.
            is_default_version=candidate.blessed,
            description="MMoE multi-task ranker (mmoe-ranker)",
            version_description=version_description(candidate),
            labels=version_labels(candidate),
            credentials=self.credentials,
        )
        return str(model.version_id)

    def alias_version(self, alias: str) -> str | None:
        from google.api_core import exceptions

        if not self.model_exists():
            return None
        try:
            return str(self._registry().get_version_info(alias).version_id)
        except exceptions.NotFound:
            return None

    def set_alias(self, alias: str, version: str) -> None:
        holder = self.alias_version(alias)
        if holder == version:
            return
        registry = self._registry()
        if holder is not None:  # an alias names one version: take it from its holder first
            registry.remove_version_aliases([alias], holder)
        registry.add_version_aliases([alias], version)

    def remove_alias(self, alias: str) -> None:
        holder = self.alias_version(alias)
        if holder is not None:
            self._registry().remove_version_aliases([alias], holder)

    def version_model_uri(self, version: str) -> str:
        return str(self._registry().get_model(version).uri)

    def version_aliases(self, version: str) -> tuple[str, ...]:
        return tuple(sorted(self._registry().get_version_info(version).version_aliases))

    def version_blessed(self, version: str) -> bool | None:
        return blessed_tag((self._registry().get_model(version).labels or {}).get("blessed"))

    def record_found_version(self, candidate: Candidate, version: str) -> None:
        """Nothing to record: a Vertex AI registration tags no tracking run (:meth:`create_version` neither)."""

    def _registry(self):
        from google.cloud import aiplatform

        return aiplatform.models.ModelRegistry(self.parent, credentials=self.credentials)

    def model_exists(self) -> bool:
        from google.api_core import exceptions
        from google.cloud import aiplatform

        try:
            aiplatform.Model(self.parent, credentials=self.credentials)
        except exceptions.NotFound:
            return False
        return True


def resource_id(name: str) -> str:
    """A Vertex AI model id from a model name: ``[a-z0-9_-]``, starting with a letter, at most 63 characters."""
    cleaned = re.sub(r"[^a-z0-9_-]", "-", name.lower()).strip("-_")
    if not cleaned or not cleaned[0].isalpha():
        cleaned = f"m-{cleaned}"
    return cleaned[:_LABEL_LENGTH]


def label_value(value: str) -> str:
    """A Vertex AI label value: lowercase letters, digits, ``_`` and ``-``, at most 63 characters."""
    return re.sub(r"[^a-z0-9_-]", "-", value.lower())[:_LABEL_LENGTH]


def version_labels(candidate: Candidate) -> dict[str, str]:
    """The provenance of a version as Vertex AI labels (long values are truncated, never dropped)."""
    keys = ("pipeline_run_id", "model_digest", "blessed", "code_version", "feature_spec_hash")
    return {key: label_value(candidate.provenance[key]) for key in keys if candidate.provenance[key]}


def version_description(candidate: Candidate) -> str:
    """The headline metrics, data URI and reasons as JSON, within the description's size limit."""
    document = {
        "headline": candidate.headline,
        "data_uri": candidate.data_uri,
        "pipeline_run_id": candidate.run_id,
        "reasons": candidate.reasons,
    }
    return json.dumps(document, sort_keys=True)[:_DESCRIPTION_LENGTH]
