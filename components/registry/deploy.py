"""Deploying a registered version: a Vertex AI endpoint on GCP, the serve command locally.

On Vertex AI the version is deployed to the endpoint named in the
configuration (created on first use) and takes all of its traffic. A local
MLflow registry has no serving infrastructure, so nothing is started: the
step returns (and logs) the command that serves the version, which is the
honest equivalent::

    deploy_version(RegistryConfig(work_dir="work_dir"), "3")
    # "MLFLOW_TRACKING_URI=sqlite:///.../mlflow.db ranker serve --model-uri models:/mmoe-ranker/3"
"""

from __future__ import annotations

import logging
import shlex

from components.registry.core import RegistryConfig

logger = logging.getLogger(__name__)


def deploy_version(config: RegistryConfig, version: str, credentials=None) -> str:
    """Deploy ``version``; returns the endpoint resource name (vertex) or the serve command (mlflow)."""
    if not version:
        raise ValueError("no model version to deploy: the register step returned none")
    if config.backend == "vertex":
        return _deploy_to_vertex(config, version, credentials)
    command = serve_command(config, version)
    logger.info("the local registry has no endpoint; serve version %s with:\n  %s", version, command)
    return command


def serve_command(config: RegistryConfig, version: str) -> str:
    """The shell command that serves a version of a local MLflow registry."""
    uri = f"models:/{config.model_name}/{version}"
    return f"MLFLOW_TRACKING_URI={shlex.quote(config.resolved_tracking_uri)} ranker serve --model-uri {uri}"


def _deploy_to_vertex(config: RegistryConfig, version: str, credentials) -> str:
    from google.cloud import aiplatform

    from components.registry.vertex import VertexRegistry

    registry = VertexRegistry(config, credentials=credentials)
    model = aiplatform.Model(registry.parent, version=version, credentials=credentials)
    found = aiplatform.Endpoint.list(filter=f'display_name="{config.endpoint_name}"', credentials=credentials)
    endpoint = (
        found[0] if found else aiplatform.Endpoint.create(display_name=config.endpoint_name, credentials=credentials)
    )
    model.deploy(
        endpoint=endpoint,
        deployed_model_display_name=f"{registry.model_id}-v{version}",
        machine_type=config.machine_type,
        min_replica_count=config.min_replicas,
        max_replica_count=config.max_replicas,
        traffic_percentage=100,
    )
    logger.info("deployed %s version %s to %s", config.model_name, version, endpoint.resource_name)
    return endpoint.resource_name
