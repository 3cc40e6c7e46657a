"""Vertex AI Model Registry: the real SDK and backend against a fake HTTP transport."""

import json

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform

from components.registry.core import CHAMPION, PREVIOUS_CHAMPION, Candidate, RegistryConfig, register_model
from components.registry.deploy import deploy_version
from components.registry.vertex import VertexRegistry, label_value, resource_id
from tests.registry.fake_google_api import FakeVertexApi

PARENT = "projects/my-project/locations/europe-west4/models/mmoe-ranker"


@pytest.fixture
def api():
    with FakeVertexApi() as fake:
        aiplatform.init(project="my-project", location="europe-west4", api_transport="rest")
        yield fake
    aiplatform.init(api_transport="grpc")


@pytest.fixture
def registry(api) -> VertexRegistry:
    config = RegistryConfig(backend="vertex", project="my-project", location="europe-west4", serving_image="img:1")
    return VertexRegistry(config, credentials=AnonymousCredentials())


def candidate(name: str, blessed: bool = True) -> Candidate:
    return Candidate(
        model_uri=f"gs://bucket/runs/{name}/model",
        blessed=blessed,
        reasons=[] if blessed else ["worse than the baseline"],
        metrics={"ndcg/search/click": 0.6},
        headline={"primary_metric": 0.6},
        run_id=f"Ranker-Run_{name}",
        digest=(name * 64)[:64],
        data_uri="bq://p.d.t",
        feature_spec_hash="f" * 64,
        code_version="abc123",
    )


def test_the_first_upload_creates_the_model_with_the_serving_contract(api, registry):
    registered = register_model(candidate("a"), registry.config, registry)

    assert (registered.version, registered.created, registered.model_uri) == ("1", True, "gs://bucket/runs/a/model")
    upload = api.calls("POST", r"/models:upload$")[0].json
    assert upload["modelId"] == "mmoe-ranker"
    assert "parentModel" not in upload
    model = upload["model"]
    assert model["artifactUri"] == "gs://bucket/runs/a/model"
    container = model["containerSpec"]
    assert container["imageUri"] == "img:1"
    assert (container["predictRoute"], container["healthRoute"]) == (
        registry.config.predict_route,
        registry.config.health_route,
    )
    assert container["ports"] == [{"containerPort": 8080}]
    assert model["labels"]["pipeline_run_id"] == "ranker-run_a"
    assert model["labels"]["model_digest"] == "a" * 63
    assert json.loads(model["versionDescription"])["headline"] == {"primary_metric": 0.6}
    merge = api.calls("POST", r"@1:mergeVersionAliases$")[-1].json
    assert merge["versionAliases"] == [CHAMPION]


def test_a_new_version_is_uploaded_under_the_parent_and_takes_the_champion_alias(api, registry):
    register_model(candidate("a"), registry.config, registry)
    second = register_model(candidate("b"), registry.config, registry)

    upload = api.calls("POST", r"/models:upload$")[-1].json
    assert upload["parentModel"] == PARENT
    assert second.version == "2"
    assert registry.alias_version(CHAMPION) == "2"
    assert registry.alias_version(PREVIOUS_CHAMPION) == "1"
    assert [r.json["versionAliases"] for r in api.calls("POST", r"@1:mergeVersionAliases$")][-2:] == [
        [PREVIOUS_CHAMPION],
        [f"-{CHAMPION}"],
    ]


def test_a_retried_registration_finds_the_version_by_its_digest_label(api, registry):
    register_model(candidate("a"), registry.config, registry)
    retry = register_model(candidate("a"), registry.config, registry)

    assert (retry.version, retry.created) == ("1", False)
    assert len(api.calls("POST", r"/models:upload$")) == 1
    listing = api.calls("GET", r":listVersions$")[-1]
    assert listing.query["filter"] == [f'labels.model_digest="{"a" * 63}"']


def test_deploying_a_version_creates_the_endpoint_and_sends_all_traffic(api, registry):
    register_model(candidate("a"), registry.config, registry)

    endpoint = deploy_version(registry.config, "1", credentials=AnonymousCredentials())

    (create,) = api.calls("POST", r"/endpoints$")
    assert create.json["displayName"] == "mmoe-ranker"
    assert endpoint == "projects/my-project/locations/europe-west4/endpoints/1"
    deployed = api.calls("POST", r":deployModel$")[0].json
    assert deployed["deployedModel"]["model"] == f"{PARENT}@1"
    assert deployed["deployedModel"]["dedicatedResources"]["machineSpec"]["machineType"] == "n1-standard-4"
    assert deployed["trafficSplit"] == {"0": 100}
    deploy_version(registry.config, "1", credentials=AnonymousCredentials())
    assert len(api.calls("POST", r"/endpoints$")) == 1  # the endpoint is reused


def test_a_local_model_cannot_be_uploaded(registry):
    local = candidate("a")
    local.model_uri = "/tmp/model"
    with pytest.raises(ValueError, match="only register a model stored in Cloud Storage"):
        register_model(local, registry.config, registry)


def test_names_become_valid_vertex_ids_and_labels():
    assert resource_id("My Ranker!") == "my-ranker"
    assert resource_id("2024-ranker") == "m-2024-ranker"
    assert label_value("Run/ID:42" + "x" * 80) == ("run-id-42" + "x" * 80)[:63]
