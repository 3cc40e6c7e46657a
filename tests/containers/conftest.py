"""Container test fixtures: a Docker engine, the project and serving images, a model trained in the image.

Every test here carries the ``container`` marker. With no Docker engine they
skip, unless ``RANKER_REQUIRE_DOCKER=1`` (``.ci/run`` sets it after starting the
engine): then a missing engine is a failure, so CI cannot pass without them.

Images are built with ``infra/build_images.sh``, the same script as ``make
image``; Docker's layer cache makes an up-to-date image a rebuild of seconds.
"""

# No `from __future__ import annotations`: kfp reads the test pipeline's real annotations.
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.trainer.conftest import TINY_CONFIG

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "infra" / "build_images.sh"
START_DOCKERD = ROOT / "infra" / "start_dockerd.sh"
SERVING_IMAGE = os.environ.get("SERVING_IMAGE", "mmoe-ranker-serving:latest")
# The first build bootstraps a base image and installs ~3 GB of wheels; later ones hit the cache.
BUILD_TIMEOUT_S = int(os.environ.get("RANKER_IMAGE_BUILD_TIMEOUT", "2400"))
# Whichever test comes first pays for the image build in its setup: beyond the suite's 900 s default.
CONTAINER_TEST_TIMEOUT = pytest.mark.timeout(BUILD_TIMEOUT_S + 900)
# The trainer tests' tiny model, one epoch: seconds to train, every layer kind exercised.
TINY_MODEL_CONFIG = {**TINY_CONFIG, "epochs": 1, "steps_per_execution": 1}


@dataclasses.dataclass(frozen=True)
class Images:
    """The tags of the images under test."""

    ranker: str
    serving: str


def docker_unavailable(reason: str) -> None:
    """Skip, or fail where CI demands the container tests (``RANKER_REQUIRE_DOCKER=1``)."""
    if os.environ.get("RANKER_REQUIRE_DOCKER") == "1":
        pytest.fail(f"RANKER_REQUIRE_DOCKER=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode == 0


def stop_engine(pid: int, timeout_s: float = 60) -> None:
    """Stop the dockerd this session started, and only that one."""
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)
    os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def docker_client() -> Iterator:
    """A client of a running Docker engine; starts ``dockerd`` (and stops it after) when none answers."""
    started_pid = None
    if not engine_answers():
        if shutil.which("dockerd") is None or os.geteuid() != 0:
            docker_unavailable("no Docker engine answers and this session cannot start one (needs root and dockerd)")
        result = subprocess.run([str(START_DOCKERD)], capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            docker_unavailable(f"could not start dockerd: {result.stderr.strip()}")
        started_pid = int(result.stdout.strip()) if result.stdout.strip() else None
    import docker

    client = docker.from_env()
    try:
        yield client
    finally:
        client.close()
        if started_pid is not None:
            stop_engine(started_pid)


@pytest.fixture(scope="session")
def images(docker_client, tmp_path_factory) -> Images:
    """The project and serving images, built (or found up to date) by ``infra/build_images.sh``.

    The project tag is the one the components were declared with
    (``components.base.DEFAULT_IMAGE``), so DockerRunner runs them in it.
    """
    from components.base import DEFAULT_IMAGE

    built = Images(ranker=DEFAULT_IMAGE, serving=SERVING_IMAGE)
    log = tmp_path_factory.mktemp("image_build") / "build.log"
    env = {**os.environ, "RANKER_IMAGE": built.ranker, "SERVING_IMAGE": built.serving}
    with log.open("w") as output:
        result = subprocess.run(
            ["nice", str(BUILD_SCRIPT)], env=env, stdout=output, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT_S
        )
    if result.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-40:])
        pytest.fail(f"infra/build_images.sh failed (exit {result.returncode}); the log ends with:\n{tail}")
    return built


@contextlib.contextmanager
def running_in_docker(pipeline_root: Path, **init_args) -> Iterator[None]:
    """kfp.local runs steps with DockerRunner inside the block; the previous configuration is restored after.

    Steps run as the caller, so their outputs on the mounted pipeline root are the caller's.
    """
    from kfp import local
    from kfp.local import config

    previous = config.LocalExecutionConfig.instance
    runner = local.DockerRunner(user=f"{os.getuid()}:{os.getgid()}")
    local.init(runner=runner, pipeline_root=str(pipeline_root), raise_on_error=True, **init_args)
    try:
        yield
    finally:
        config.LocalExecutionConfig.instance = previous


@pytest.fixture(scope="session")
def container_pipeline_root(tmp_path_factory) -> Path:
    """The pipeline root DockerRunner mounts into every step (absolute, as kfp.local requires)."""
    return tmp_path_factory.mktemp("container_pipeline_root").resolve()


@pytest.fixture(scope="session")
def model_trained_in_image(images, synthetic_examples, container_pipeline_root) -> Path:
    """The ``train_mmoe`` component run by DockerRunner in the project image on the synthetic examples.

    Only the pipeline root is mounted into a step, so the examples are copied
    under it first and imported from there.
    """
    from kfp import dsl
    from kfp.dsl import Dataset

    from components.training.component import train_mmoe

    examples = container_pipeline_root / "inputs" / "examples"
    shutil.copytree(synthetic_examples, examples, dirs_exist_ok=True)

    @dsl.pipeline(name="train-in-image")
    def train_in_image(examples_uri: str, config_json: str) -> dsl.Model:
        imported = dsl.importer(artifact_uri=examples_uri, artifact_class=Dataset, reimport=False)
        return train_mmoe(examples=imported.output, config_json=config_json).outputs["model"]

    with running_in_docker(container_pipeline_root):
        task = train_in_image(examples_uri=str(examples), config_json=json.dumps(TINY_MODEL_CONFIG))
    return Path(task.output.path)
