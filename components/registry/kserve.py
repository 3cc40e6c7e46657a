"""KServe ``InferenceService`` manifests for a version, a canary, its promotion and its rollback.

KServe keeps the last revision that took all the traffic; applying a spec with
``canaryTrafficPercent`` starts a new revision that gets that share, and a spec
without it sends all traffic to the revision it describes. So:

* canary: the new version's spec with ``canaryTrafficPercent: P``;
* promote: the same version's spec without it (100%);
* rollback: the previous champion's spec without it (the canary's revision is replaced).

The predictor is the project's serving container (``ranker serve``) with the
version's model files in ``MODEL_URI``, the routes of ``ranker_core.serving``,
and the version in the ``ranker.io/model-version`` annotation. Apply the YAML
with ``kubectl apply -f``::

    print(KServeManifests(config).canary(Release("4", "gs://bucket/runs/42/model"), 10))
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import yaml

from components.registry.core import RegistryConfig
from ranker_core.cli_support import InvalidValueError

if TYPE_CHECKING:
    from components.registry.rollout import Release

API_VERSION = "serving.kserve.io/v1beta1"
KIND = "InferenceService"
CONTAINER_NAME = "kserve-container"  # the name KServe expects of a custom predictor's container
VERSION_ANNOTATION = "ranker.io/model-version"
# An RFC 1123 DNS label (a namespace); an InferenceService name must also start with a letter (KServe's check).
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


class KServeManifests:
    """A :class:`~components.registry.rollout.ServingTarget` that writes manifests instead of calling a cluster."""

    def __init__(self, config: RegistryConfig) -> None:
        check_names(config)
        self.config = config

    def canary(self, release: Release, percent: int) -> str:
        return to_yaml(inference_service(self.config, release, canary_percent=percent))

    def serve(self, release: Release) -> str:
        return to_yaml(inference_service(self.config, release))

    switch = serve  # without canaryTrafficPercent the spec's revision takes all traffic


def check_names(config: RegistryConfig) -> None:
    """Raise :class:`InvalidValueError` for an ``InferenceService`` name or namespace Kubernetes would refuse."""
    name = config.endpoint_name
    if not DNS_LABEL.fullmatch(name) or not name[0].isalpha():
        raise InvalidValueError(
            f"--endpoint {name!r} (RANKER_ENDPOINT) is not a valid InferenceService name: an RFC 1123 DNS label "
            "(at most 63 lowercase letters, digits and '-', ending with a letter or digit) that starts with a letter"
        )
    namespace = config.kserve_namespace
    if namespace and not DNS_LABEL.fullmatch(namespace):
        raise InvalidValueError(
            f"--kserve-namespace {namespace!r} (RANKER_KSERVE_NAMESPACE) is not a Kubernetes namespace: an RFC 1123 "
            "DNS label (at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit)"
        )


def inference_service(config: RegistryConfig, release: Release, canary_percent: int | None = None) -> dict[str, Any]:
    """The ``InferenceService`` serving ``release``; with ``canary_percent``, as a canary of that share."""
    metadata: dict[str, Any] = {
        "name": config.endpoint_name,
        "annotations": {VERSION_ANNOTATION: release.version},
    }
    if config.kserve_namespace:
        metadata["namespace"] = config.kserve_namespace
    predictor: dict[str, Any] = {
        "minReplicas": config.min_replicas,
        "maxReplicas": config.max_replicas,
        "containers": [predictor_container(config, release)],
    }
    if canary_percent is not None:
        predictor["canaryTrafficPercent"] = canary_percent
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": {"predictor": predictor}}


def predictor_container(config: RegistryConfig, release: Release) -> dict[str, Any]:
    """The serving container: ``ranker serve`` on the version's model files, with KServe's probes."""
    port = config.serving_port
    return {
        "name": CONTAINER_NAME,
        "image": config.serving_image,
        "command": ["ranker", "serve"],
        "env": [
            {"name": "MODEL_URI", "value": release.model_uri},
            {"name": "MODEL_NAME", "value": config.model_name},
        ],
        "ports": [{"containerPort": port, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": f"/v1/models/{config.model_name}", "port": port}},
        "livenessProbe": {"httpGet": {"path": "/", "port": port}},
        "resources": {"requests": {"cpu": "2", "memory": "2Gi"}},
    }


def to_yaml(manifest: dict[str, Any]) -> str:
    """The manifest as YAML, keys in the order written."""
    return yaml.safe_dump(manifest, sort_keys=False)
