"""The serving image, run the way Vertex AI runs a custom container, answers predictions over HTTP."""

import contextlib
import math
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.containers.conftest import CONTAINER_TEST_TIMEOUT, Images

pytestmark = [pytest.mark.container, pytest.mark.slow, CONTAINER_TEST_TIMEOUT]

MODEL_MOUNT = "/model"
# Vertex AI picks the routes per deployment and passes them in the environment.
VERTEX_ENV = {
    "AIP_STORAGE_URI": MODEL_MOUNT,
    "AIP_HTTP_PORT": "7080",
    "AIP_PREDICT_ROUTE": "/v1/endpoints/1/deployedModels/2:predict",
    "AIP_HEALTH_ROUTE": "/v1/endpoints/1/deployedModels/2",
}
READY_TIMEOUT_S = 180


def wait_until_ready(client: httpx.Client, container, route: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        container.reload()
        if container.status == "exited":
            pytest.fail(f"the serving container exited at start:\n{container.logs().decode()[-3000:]}")
        try:
            if client.get(route).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(1)
    pytest.fail(f"the server was not ready in {READY_TIMEOUT_S}s:\n{container.logs().decode()[-3000:]}")


@contextlib.contextmanager
def serving_container(
    docker_client, image: str, mounts: dict[Path, str], **env: str
) -> Iterator[tuple[httpx.Client, object]]:
    """The serving image on a random loopback port, folders mounted read-only: a client once ready, the container."""
    container = docker_client.containers.run(
        image,
        detach=True,
        environment={**VERTEX_ENV, **env},
        volumes={str(host): {"bind": mount, "mode": "ro"} for host, mount in mounts.items()},
        ports={f"{VERTEX_ENV['AIP_HTTP_PORT']}/tcp": ("127.0.0.1", None)},
    )
    try:
        container.reload()
        host_port = container.ports[f"{VERTEX_ENV['AIP_HTTP_PORT']}/tcp"][0]["HostPort"]
        with httpx.Client(base_url=f"http://127.0.0.1:{host_port}", timeout=30) as client:
            wait_until_ready(client, container, VERTEX_ENV["AIP_HEALTH_ROUTE"])
            yield client, container
    finally:
        container.remove(force=True)


@pytest.fixture(scope="module")
def served(docker_client, images: Images, model_trained_in_image) -> Iterator[tuple[httpx.Client, object]]:
    """The serving image with the model trained in the project image mounted."""
    with serving_container(docker_client, images.serving, {model_trained_in_image: MODEL_MOUNT}) as served:
        yield served


def ranking_request(module: str) -> dict:
    candidates = [
        {"listing_id": f"l{index}", "category": "toys", "tags": ["gift"], "price": 5.0 * (index + 1)}
        for index in range(4)
    ]
    return {"instances": [{"context": {"module_name": module, "user_id": "u1"}, "candidates": candidates}]}


@pytest.mark.parametrize("module", ["search", "a_module_never_seen_in_training"])
def test_the_vertex_predict_route_ranks_every_candidate(served, module):
    client, _ = served
    response = client.post(VERTEX_ENV["AIP_PREDICT_ROUTE"], json=ranking_request(module))
    assert response.status_code == 200, response.text
    [prediction] = response.json()["predictions"]
    assert len(prediction["score"]) == 4
    assert all(math.isfinite(score) for score in prediction["score"])
    for task, probabilities in prediction["tasks"].items():
        assert len(probabilities) == 4 and all(0.0 <= p <= 1.0 for p in probabilities), task


def test_the_kserve_v1_route_answers_the_same_as_the_vertex_route(served):
    client, _ = served
    body = ranking_request("item_page")
    kserve = client.post("/v1/models/mmoe-ranker:predict", json=body)
    vertex = client.post(VERTEX_ENV["AIP_PREDICT_ROUTE"], json=body)
    assert kserve.status_code == 200, kserve.text
    assert kserve.json() == vertex.json()


def test_a_bad_request_is_refused_with_a_message_naming_the_field(served):
    client, _ = served
    body = ranking_request("search")
    body["instances"][0]["candidates"][1]["price"] = "expensive"
    response = client.post(VERTEX_ENV["AIP_PREDICT_ROUTE"], json=body)
    assert response.status_code == 400
    assert "price" in response.text


def test_the_container_stops_cleanly_on_sigterm(served):
    _, container = served
    container.stop(timeout=60)  # SIGTERM, then SIGKILL after 60 s
    assert container.wait(timeout=60)["StatusCode"] == 0


FEATURE_REPO_MOUNT = "/feature_repo"


@pytest.fixture(scope="module")
def served_with_store(docker_client, images: Images, tmp_path_factory) -> Iterator[tuple[httpx.Client, dict]]:
    """The serving image with a model and its Feast repo (``ranker materialize``) mounted: requests send ids only."""
    from tests.serving.online_store import materialized_store

    store = materialized_store(tmp_path_factory.mktemp("container_store"))
    mounts = {store["model"]: MODEL_MOUNT, store["repo"]: FEATURE_REPO_MOUNT}
    with serving_container(docker_client, images.serving, mounts, RANKER_FEATURE_STORE=FEATURE_REPO_MOUNT) as served:
        yield served[0], store


def test_the_serving_image_joins_the_feature_store_into_ids_only_requests(served_with_store):
    """The online path in the image: ids in, the extraction's features joined, the offline predictions out."""
    import numpy as np

    from serving.feature_store import OnlineFeatures
    from tests.serving.online_store import extraction_requests
    from trainer.predict import Ranker

    client, store = served_with_store
    features = OnlineFeatures(str(store["repo"]), "listing_id", cache_seconds=0)
    ids_only, explicit = extraction_requests(store["examples"], features, count=3)
    assert ids_only, "some test requests have entities unchanged since the cutoff"
    response = client.post(VERTEX_ENV["AIP_PREDICT_ROUTE"], json={"instances": ids_only})
    assert response.status_code == 200, response.text
    ranker = Ranker(store["model"])
    for prediction, request in zip(response.json()["predictions"], explicit, strict=True):
        rows = len(next(iter(request["candidates"].values())))
        columns = {**{name: [value] * rows for name, value in request["context"].items()}, **request["candidates"]}
        np.testing.assert_allclose(prediction["score"], ranker.predict(columns)["score"], rtol=0, atol=1e-5)
    refused = client.post(VERTEX_ENV["AIP_PREDICT_ROUTE"], json={"instances": explicit[:1]})
    assert refused.status_code == 400 and "send ids only" in refused.text
