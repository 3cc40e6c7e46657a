"""The Vertex AI deployment of the pipeline: google-cloud-pipeline-components' ``ModelDeployOp`` between two steps.

``ModelDeployOp`` deploys and splits traffic and records the deployment in
Vertex AI's lineage (the model and endpoint artifacts), but it cannot decide the
split nor find or create the endpoint by name; so:

* :func:`plan_vertex_deploy` finds (or creates) the endpoint and computes the
  traffic split: all traffic, or ``canary_percent`` next to the version served
  now (:meth:`components.registry.deploy.VertexEndpoint.plan`); it hands
  ``ModelDeployOp`` the ``google.VertexModel`` and ``google.VertexEndpoint`` artifacts;
* :func:`mark_vertex_canary` gives the version the ``canary`` alias once it is
  deployed with less than all the traffic (the plan's split), for ``ranker promote`` / ``ranker rollback``.
"""

from typing import NamedTuple

from google_cloud_pipeline_components.types.artifact_types import VertexEndpoint, VertexModel
from kfp.dsl import Output

from components.base import ranker_component


@ranker_component
def plan_vertex_deploy(
    version: str,
    model: Output[VertexModel],
    endpoint: Output[VertexEndpoint],
    model_name: str = "mmoe-ranker",
    project: str = "",
    location: str = "us-central1",
    endpoint_name: str = "mmoe-ranker",
    canary_percent: int = 100,
) -> NamedTuple("VertexDeployPlan", [("traffic_split", dict), ("display_name", str)]):
    """The model and endpoint artifacts, the traffic split and the deployed model's name for ``ModelDeployOp``."""
    from components.registry.core import RegistryConfig
    from components.registry.deploy import VertexEndpoint as Endpoint

    config = RegistryConfig.from_env(
        backend="vertex", model_name=model_name, project=project, location=location, endpoint_name=endpoint_name
    )
    plan = Endpoint(config).plan(version, canary_percent)
    for artifact, resource in ((model, plan.model), (endpoint, plan.endpoint)):
        artifact.uri = plan.resource_uri(resource)
        artifact.metadata["resourceName"] = resource
    return (plan.traffic_split, plan.display_name)


@ranker_component
def mark_vertex_canary(
    version: str,
    traffic_split: dict,
    model_name: str = "mmoe-ranker",
    project: str = "",
    location: str = "us-central1",
) -> None:
    """Give ``version`` the ``canary`` alias when the plan's ``traffic_split`` gave it (``"0"``) less than all the
    traffic, else ``stable``: on an endpoint that served nothing a canary share still deploys it alone."""
    from components.registry.core import RegistryConfig
    from components.registry.rollout import mark_canary

    config = RegistryConfig.from_env(backend="vertex", model_name=model_name, project=project, location=location)
    mark_canary(config, version, int(traffic_split.get("0", 100)))
