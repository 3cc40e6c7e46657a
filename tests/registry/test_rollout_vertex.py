"""Canary, promote and rollback on a Vertex AI endpoint: the real SDK and backend against a fake HTTP transport."""

import json

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform

from components.registry.core import CANARY, CHAMPION, PREVIOUS_CHAMPION, STABLE, RegistryConfig, register_model
from components.registry.deploy import VertexEndpoint, deploy_version
from components.registry.rollout import RolloutError, deploy, promote_canary, roll_back, start_canary
from components.registry.vertex import VertexRegistry
from ranker_core.cli_support import UserError
from tests.registry.fake_vertex_endpoints import FakeVertexEndpoints
from tests.registry.test_vertex_registry import candidate

ENDPOINT = "projects/my-project/locations/europe-west4/endpoints/1"


@pytest.fixture
def api():
    with FakeVertexEndpoints() as fake:
        aiplatform.init(project="my-project", location="europe-west4", api_transport="rest")
        yield fake
    aiplatform.init(api_transport="grpc")


@pytest.fixture
def config() -> RegistryConfig:
    return RegistryConfig(backend="vertex", project="my-project", location="europe-west4", serving_image="img:1")


@pytest.fixture
def registry(api, config) -> VertexRegistry:
    return VertexRegistry(config, credentials=AnonymousCredentials())


@pytest.fixture
def endpoint(api, config) -> VertexEndpoint:
    return VertexEndpoint(config, credentials=AnonymousCredentials())


@pytest.fixture
def two_champions(api, config, registry, endpoint) -> VertexRegistry:
    """Version 1 serves all traffic; version 2 was blessed after it (champion, 1 is previous-champion)."""
    register_model(candidate("a"), config, registry)
    deploy(config, backend=registry, target=endpoint)
    register_model(candidate("b"), config, registry)
    return registry


def test_a_canary_is_deployed_next_to_the_champion_with_its_share(api, config, two_champions, endpoint):
    shown = start_canary(config.replace(canary_percent=10), backend=two_champions, target=endpoint)

    deployed = api.calls("POST", r":deployModel$")[-1].json
    assert deployed["deployedModel"]["model"].endswith("/models/mmoe-ranker@2")
    assert deployed["deployedModel"]["displayName"] == "mmoe-ranker-v2"
    assert sorted(deployed["trafficSplit"].values()) == [10, 90] and deployed["trafficSplit"]["0"] == 10
    assert api.traffic(ENDPOINT) == {"1": 90, "2": 10}
    assert json.loads(shown) == {"endpoint": ENDPOINT, "traffic": {"v1": 90, "v2": 10}}
    assert two_champions.alias_version(CANARY) == "2"


def test_promote_sends_all_traffic_to_the_canary_and_undeploys_the_old_version(api, config, two_champions, endpoint):
    start_canary(config, percent=25, backend=two_champions, target=endpoint)

    promote_canary(config, backend=two_champions, target=endpoint)

    undeploy = api.calls("POST", r":undeployModel$")[-1].json
    assert list(undeploy["trafficSplit"].values()) == [100]
    assert api.traffic(ENDPOINT) == {"2": 100}
    assert len(api.endpoints[ENDPOINT]["deployedModels"]) == 1
    assert (two_champions.alias_version(CHAMPION), two_champions.alias_version(PREVIOUS_CHAMPION)) == ("2", "1")
    assert two_champions.alias_version(CANARY) is None


def test_rollback_sends_all_traffic_to_the_previous_champion_and_undeploys_the_canary(
    api, config, two_champions, endpoint
):
    start_canary(config, percent=25, backend=two_champions, target=endpoint)

    roll_back(config, backend=two_champions, target=endpoint)

    assert api.traffic(ENDPOINT) == {"1": 100}
    assert [m["modelVersionId"] for m in api.endpoints[ENDPOINT]["deployedModels"]] == ["1"]
    assert two_champions.alias_version(CHAMPION) == "1"
    assert two_champions.alias_version(PREVIOUS_CHAMPION) is None
    assert two_champions.alias_version(CANARY) is None
    with pytest.raises(RolloutError, match="no previous champion of mmoe-ranker to roll back to"):
        roll_back(config, backend=two_champions, target=endpoint)


def test_rollback_after_a_promotion_redeploys_the_previous_champion(api, config, two_champions, endpoint):
    start_canary(config, percent=25, backend=two_champions, target=endpoint)
    promote_canary(config, backend=two_champions, target=endpoint)

    roll_back(config, backend=two_champions, target=endpoint)

    assert api.traffic(ENDPOINT) == {"1": 100}
    assert two_champions.alias_version(CHAMPION) == "1"


def test_a_second_canary_before_promote_or_rollback_is_refused(api, config, two_champions, endpoint):
    register_model(candidate("c"), config, two_champions)
    start_canary(config, version="2", percent=10, backend=two_champions, target=endpoint)

    with pytest.raises(RolloutError, match="version 2 is already the canary: finish it with `ranker promote` or"):
        start_canary(config, version="3", percent=10, backend=two_champions, target=endpoint)
    two_champions.remove_alias(CANARY)  # the registry lost track: the endpoint still refuses
    with pytest.raises(RolloutError, match="serves 2 versions, not one: promote or roll back first"):
        start_canary(config, version="3", percent=10, backend=two_champions, target=endpoint)


def test_an_unknown_endpoint_is_named(api, config, registry):
    register_model(candidate("a"), config, registry)
    register_model(candidate("b"), config, registry)
    target = VertexEndpoint(config.replace(endpoint_name="nope"), credentials=AnonymousCredentials())

    with pytest.raises(RolloutError, match="no Vertex AI endpoint named 'nope' in my-project/europe-west4"):
        start_canary(config, percent=10, backend=registry, target=target)
    with pytest.raises(RolloutError, match="no Vertex AI endpoint named 'nope'"):
        roll_back(config, backend=registry, target=target)
    assert registry.alias_version(CANARY) is None  # the registry is left as it was


def test_a_full_deploy_leaves_only_the_new_version_on_the_endpoint(api, config, two_champions):
    deploy_version(config, "2", credentials=AnonymousCredentials())

    assert api.traffic(ENDPOINT) == {"2": 100}
    assert len(api.endpoints[ENDPOINT]["deployedModels"]) == 1


def test_the_pipeline_plan_gives_model_deploy_op_the_canary_split_and_artifacts(api, config, two_champions):
    from google_cloud_pipeline_components.types.artifact_types import VertexEndpoint as EndpointArtifact
    from google_cloud_pipeline_components.types.artifact_types import VertexModel

    from components.registry.deploy_component import mark_vertex_canary, plan_vertex_deploy

    aiplatform.init(credentials=AnonymousCredentials())
    model, endpoint = VertexModel(name="model"), EndpointArtifact(name="endpoint")
    where = {"project": "my-project", "location": "europe-west4"}

    split, name = plan_vertex_deploy.python_func("2", model, endpoint, canary_percent=10, **where)

    (stable_id,) = api.endpoints[ENDPOINT]["trafficSplit"]
    assert (split, name) == ({"0": 10, stable_id: 90}, "mmoe-ranker-v2")
    assert model.metadata["resourceName"] == "projects/my-project/locations/europe-west4/models/mmoe-ranker@2"
    assert endpoint.metadata["resourceName"] == ENDPOINT
    assert endpoint.uri == f"https://europe-west4-aiplatform.googleapis.com/v1/{ENDPOINT}"
    assert plan_vertex_deploy.python_func("2", model, endpoint, canary_percent=100, **where)[0] == {"0": 100}
    mark_vertex_canary.python_func("2", {"0": 100}, **where)
    assert two_champions.alias_version(CANARY) is None and two_champions.alias_version(STABLE) == "2"
    mark_vertex_canary.python_func("2", split, **where)
    assert two_champions.alias_version(CANARY) == "2"


def test_a_canary_share_deployed_alone_on_an_empty_endpoint_is_stable_not_a_canary(api, config, registry, endpoint):
    """It was marked the canary, so the next scheduled run's registration was refused though nothing was split."""
    from components.registry.deploy_component import mark_vertex_canary

    register_model(candidate("a"), config, registry)
    split = endpoint.plan("1", percent=10).traffic_split
    mark_vertex_canary.python_func("1", split, project="my-project", location="europe-west4")

    assert registry.alias_version(CANARY) is None and registry.alias_version(STABLE) == "1"
    register_model(candidate("b"), config, registry)  # refused while a canary is live
    assert registry.alias_version(CHAMPION) == "2"


def test_a_first_deployment_takes_all_traffic_whatever_the_canary_share(api, config, registry, endpoint):
    register_model(candidate("a"), config, registry)

    plan = endpoint.plan("1", percent=10)

    assert plan.traffic_split == {"0": 100}
    assert len(api.calls("POST", r"/endpoints$")) == 1  # created for it


def test_the_vertex_pipeline_deploys_with_model_deploy_op_and_the_canary_parameter(tmp_path, config):
    import yaml

    from pipelines import compile_cli
    from pipelines.config import PipelineSettings

    serving = "serving@p.iam.gserviceaccount.com"
    registry = config.replace(canary_percent=10, serving_service_account=serving)
    settings = PipelineSettings(registry=registry, deploy=True)
    spec = yaml.safe_load(compile_cli.compile_pipeline(settings, tmp_path / "p.yaml").read_text())

    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert parameters["canary_percent"]["defaultValue"] == 10
    (deploy_dag,) = [
        c["dag"]["tasks"] for c in spec["components"].values() if "model-deploy" in c.get("dag", {}).get("tasks", {})
    ]
    model_deploy = deploy_dag["model-deploy"]
    assert model_deploy["componentRef"]["name"] == "comp-model-deploy"
    inputs = model_deploy["inputs"]
    assert inputs["parameters"]["traffic_split"]["taskOutputParameter"] == {
        "outputParameterKey": "traffic_split",
        "producerTask": "plan-vertex-deploy",
    }
    assert inputs["artifacts"]["model"]["taskOutputArtifact"]["producerTask"] == "plan-vertex-deploy"
    assert inputs["artifacts"]["endpoint"]["taskOutputArtifact"]["outputArtifactKey"] == "endpoint"
    mark = deploy_dag["mark-vertex-canary"]
    assert sorted(mark["dependentTasks"]) == ["model-deploy", "plan-vertex-deploy"]  # after the deploy, by its split
    assert mark["inputs"]["parameters"]["traffic_split"]["taskOutputParameter"]["producerTask"] == "plan-vertex-deploy"
    assert inputs["parameters"]["service_account"]["runtimeValue"]["constant"] == serving  # the server's identity
    executor = spec["deploymentSpec"]["executors"]["exec-model-deploy"]["container"]
    assert executor["image"].startswith("gcr.io/ml-pipeline/google-cloud-pipeline-components")
    assert executor["args"][:2] == ["--type", "DeployModel"]


def test_a_canary_with_no_traffic_is_refused_before_the_endpoint_is_touched(api, config, two_champions, endpoint):
    calls = len(api.calls("POST", r"."))

    with pytest.raises(RolloutError, match=r"canary 0 \(--canary, RANKER_CANARY\) would be a canary that gets no"):
        endpoint.plan("2", percent=0)  # what the pipeline's plan step does with canary_percent 0
    with pytest.raises(RolloutError, match="give it 1 to 99 percent"):
        start_canary(config, percent=0, backend=two_champions, target=endpoint)

    assert len(api.calls("POST", r".")) == calls
    assert two_champions.alias_version(CANARY) is None


def test_what_a_rollout_shows_is_published_before_any_alias_moves(api, config, two_champions, endpoint):
    """`ranker deploy --out` writes there: a file that cannot be written leaves the aliases as they were."""
    published = []

    def refuse(shown: str) -> None:
        published.append(json.loads(shown)["traffic"])
        raise UserError("--out isvc.json: cannot be written (Permission denied); no registry alias was moved")

    with pytest.raises(UserError, match="no registry alias was moved"):
        start_canary(config.replace(canary_percent=10), backend=two_champions, target=endpoint, publish=refuse)

    assert published == [{"v1": 90, "v2": 10}]
    assert (two_champions.alias_version(CHAMPION), two_champions.alias_version(CANARY)) == ("2", None)
