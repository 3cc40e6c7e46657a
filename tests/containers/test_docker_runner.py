"""Pipeline steps in the project image with kfp.local's DockerRunner: one component, then the whole DAG."""

import json
import os
from pathlib import Path

import pytest

from tests.baseline.conftest import TINY_BASELINE
from tests.containers.conftest import CONTAINER_TEST_TIMEOUT, TINY_MODEL_CONFIG, running_in_docker

pytestmark = [pytest.mark.container, pytest.mark.slow, CONTAINER_TEST_TIMEOUT]

SMALL_RUN = {
    "n_impressions": 4000,
    "model_config": json.dumps(TINY_MODEL_CONFIG),
    "baseline_config": json.dumps(TINY_BASELINE),
    "eval_config": json.dumps({"bootstrap_samples": 100, "permutation_samples": 100}),
    "enable_caching": False,
}


def test_a_component_trains_and_exports_the_ranker_in_the_project_image(model_trained_in_image):
    exported = {path.name for path in model_trained_in_image.iterdir()}
    assert {"saved_model.pb", "feature_spec.json", "trainer_config.json"} <= exported
    # The step ran as the caller, so its outputs on the mounted pipeline root are the caller's.
    assert (model_trained_in_image / "saved_model.pb").stat().st_uid == os.getuid()


def test_the_whole_pipeline_runs_step_by_step_in_the_project_image(images, container_pipeline_root):
    """Simulate -> extract -> train MMoE and GBDT -> evaluate -> register, every step a container.

    Only the pipeline root is mounted into the steps, so the MLflow store lives under it.
    """
    pipeline = pytest.importorskip("pipelines.pipeline", reason="the pipeline DAG (pipelines/pipeline.py) is missing")
    from components.registry.core import RegistryConfig, model_digest, open_backend
    from pipelines.config import PipelineSettings

    root = container_pipeline_root / "whole_pipeline"
    root.mkdir()
    registry = RegistryConfig(work_dir=str(root), tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    settings = PipelineSettings(work_dir=str(root), registry=registry, **SMALL_RUN)
    with running_in_docker(root, enable_caching=False):
        outputs = pipeline.build_pipeline(settings)(**settings.pipeline_arguments(local=True)).outputs

    report = json.loads(Path(outputs["report_json"].path).read_text())
    models = {row["model"] for row in report["test"]["ndcg"]}
    assert {"mmoe", "gbdt_per_module"} <= models
    blessing = json.loads(Path(outputs["blessing"].path).read_text())
    assert blessing["blessed"] == outputs["blessed"]
    version = open_backend(registry).find_version(model_digest(outputs["model"].path))
    assert (version is not None) == outputs["blessed"], "a model is registered exactly when it is blessed"
