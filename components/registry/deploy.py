"""Deploying a registered version: a Vertex AI endpoint on GCP, the serve command locally.

On Vertex AI the version is deployed to the endpoint named in the
configuration (created on first use), takes all of its traffic and the
versions deployed there before are undeployed; for a
canary (:mod:`components.registry.rollout`), :class:`VertexEndpoint` deploys it
next to the version served now and splits the traffic, and promotion or
rollback sends all of it to one version and undeploys the others. Deployed
models are named ``<model id>-v<version>``. A local
MLflow registry has no serving infrastructure, so nothing is started: the
step returns (and logs) the command that serves the version, which is the
honest equivalent::

    deploy_version(RegistryConfig(work_dir="work_dir"), "3")
    # "MLFLOW_TRACKING_URI=sqlite:///.../mlflow.db ranker serve --model-uri models:/mmoe-ranker/3"
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shlex
from typing import TYPE_CHECKING, Any

from components.registry.core import RegistryConfig, canary_share_problem
from components.registry.rollout import RolloutError

if TYPE_CHECKING:
    from components.registry.rollout import Release

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
    endpoint = VertexEndpoint(config, credentials)
    endpoint.serve_only(version, create=True)
    return endpoint.existing().resource_name


@dataclasses.dataclass(frozen=True)
class DeployPlan:
    """A deployment for ``ModelDeployOp``: resource names (``model`` is ``<model>@<version>``) and the split."""

    model: str
    endpoint: str
    display_name: str
    traffic_split: dict[str, int]

    def resource_uri(self, resource: str) -> str:
        """The REST URI of one of the plan's resources, as Vertex AI artifacts record it."""
        location = resource.split("/")[3]
        return f"https://{location}-aiplatform.googleapis.com/v1/{resource}"


class LocalServer:
    """The local MLflow registry has no serving infrastructure: show the command that serves a version."""

    def __init__(self, config: RegistryConfig) -> None:
        self.config = config

    def canary(self, release: Release, percent: int) -> str:
        raise RolloutError(
            "a local server has no traffic split: use --deploy-target kserve (manifests) or vertex (an endpoint)"
        )

    def serve(self, release: Release) -> str:
        return serve_command(self.config, release.version)

    switch = serve


class VertexEndpoint:
    """The traffic split of the configured Vertex AI endpoint (a :class:`~components.registry.rollout.ServingTarget`).

    Example::

        VertexEndpoint(config).canary(Release("4", "gs://b/model"), 10)
        # {"endpoint": "projects/.../endpoints/1", "traffic": {"mmoe-ranker-v3": 90, "mmoe-ranker-v4": 10}}
    """

    def __init__(self, config: RegistryConfig, credentials=None) -> None:
        from components.registry.vertex import VertexRegistry

        self.config = config
        self.credentials = credentials
        self.registry = VertexRegistry(config, credentials=credentials)

    def canary(self, release: Release, percent: int) -> str:
        endpoint = self.existing()
        self.deploy(endpoint, release.version, self.canary_split(endpoint, release.version, percent))
        return self.describe(endpoint)

    def canary_split(self, endpoint: Any, version: str, percent: int) -> dict[str, int]:
        """The traffic split that gives ``version`` (``"0"``, to be deployed) ``percent``% next to the one served."""
        deployed = self.deployed_versions(endpoint)
        if version in deployed.values():
            raise RolloutError(f"version {version} is already deployed on {endpoint.resource_name}")
        if len(deployed) != 1:
            raise RolloutError(
                f"endpoint {self.config.endpoint_name} serves {len(deployed)} versions, not one: "
                + ("promote or roll back first" if deployed else "deploy a version without --canary first")
            )
        (stable_id,) = deployed
        return {"0": percent, stable_id: 100 - percent}

    def plan(self, version: str, percent: int = 100) -> DeployPlan:
        """What the pipeline's ``ModelDeployOp`` needs to deploy ``version`` with ``percent``% of the traffic.

        The endpoint is created when missing; on an endpoint that serves nothing the version takes all traffic.
        ``percent`` is 1 to 100 (:func:`~components.registry.core.canary_share_problem`), else :class:`RolloutError`.
        """
        if problem := canary_share_problem(percent):
            raise RolloutError(problem)
        endpoint = self.find_or_create()
        alone = percent == 100 or not self.deployed_versions(endpoint)
        split = {"0": 100} if alone else self.canary_split(endpoint, version, percent)
        model = f"{self.registry.parent}@{version}"
        return DeployPlan(model, endpoint.resource_name, deployed_name(self.registry.model_id, version), split)

    def serve(self, release: Release) -> str:
        return self.serve_only(release.version, create=True)

    def switch(self, release: Release) -> str:
        return self.serve_only(release.version)

    def serve_only(self, version: str, create: bool = False) -> str:
        """Send all traffic to ``version`` (deploying it when it is not) and undeploy every other version.

        The endpoint must exist, unless ``create``.
        """
        endpoint = self.find_or_create() if create else self.existing()
        kept = self.deployed_id(endpoint, version)
        if kept is None:
            self.deploy(endpoint, version, {"0": 100})
            kept = self.deployed_id(endpoint, version)
        for deployed_id in [other for other in self.deployed_versions(endpoint) if other != kept]:
            endpoint.undeploy(deployed_id, traffic_split={kept: 100})
        return self.describe(endpoint)

    def deploy(self, endpoint: Any, version: str, traffic_split: dict[str, int]) -> None:
        """Deploy ``version`` with the configured machines; ``"0"`` in ``traffic_split`` is the new model."""
        from google.cloud import aiplatform

        model = aiplatform.Model(self.registry.parent, version=version, credentials=self.credentials)
        model.deploy(
            endpoint=endpoint,
            deployed_model_display_name=deployed_name(self.registry.model_id, version),
            machine_type=self.config.machine_type,
            min_replica_count=self.config.min_replicas,
            max_replica_count=self.config.max_replicas,
            traffic_split=traffic_split,
            service_account=self.config.serving_service_account or None,
        )
        logger.info("deployed %s version %s to %s", self.config.model_name, version, endpoint.resource_name)

    def find(self) -> Any:
        """The endpoint named in the configuration, or ``None``."""
        from google.cloud import aiplatform

        name = self.config.endpoint_name
        found = aiplatform.Endpoint.list(filter=f'display_name="{name}"', credentials=self.credentials)
        return found[0] if found else None

    def find_or_create(self) -> Any:
        """The endpoint named in the configuration, created when there is none."""
        from google.cloud import aiplatform

        endpoint = self.find()
        if endpoint is None:
            endpoint = aiplatform.Endpoint.create(display_name=self.config.endpoint_name, credentials=self.credentials)
        return endpoint

    def existing(self) -> Any:
        """The endpoint named in the configuration; :class:`RolloutError` when there is none."""
        endpoint = self.find()
        if endpoint is None:
            raise RolloutError(
                f"no Vertex AI endpoint named {self.config.endpoint_name!r} in "
                f"{self.config.project}/{self.config.location}: check --endpoint, or deploy without --canary first"
            )
        return endpoint

    def deployed_versions(self, endpoint: Any) -> dict[str, str]:
        """Deployed model id -> model version, for the versions of this model on the endpoint."""
        versions = {}
        for deployed in endpoint.list_models():
            model, _, version = deployed.model.partition("@")
            if model == self.registry.parent:
                versions[deployed.id] = deployed.model_version_id or version
        return versions

    def deployed_id(self, endpoint: Any, version: str) -> str | None:
        """The deployed model id of ``version`` on the endpoint, if it is deployed."""
        return next((key for key, value in self.deployed_versions(endpoint).items() if value == version), None)

    def describe(self, endpoint: Any) -> str:
        """The endpoint and its traffic split by version, as JSON."""
        endpoint = endpoint.__class__(endpoint.resource_name, credentials=self.credentials)  # fresh state
        versions = self.deployed_versions(endpoint)
        traffic = {f"v{versions[key]}": share for key, share in endpoint.traffic_split.items() if key in versions}
        return json.dumps({"endpoint": endpoint.resource_name, "traffic": traffic}, sort_keys=True)


def deployed_name(model_id: str, version: str) -> str:
    """The display name of a deployed version: ``<model id>-v<version>``."""
    return f"{model_id}-v{version}"
