"""The registry and glue components run under kfp.local's SubprocessRunner on a tiny model."""

import pytest
from kfp import dsl
from kfp.dsl import Artifact, Model

from components.pipeline_steps import blessing_verdict, deploy_model, resolve_champion, user_source
from components.registry.component import register_model
from components.registry.core import CHAMPION, RegistryConfig
from components.registry.mlflow_store import MlflowRegistry
from tests.registry.test_mlflow_registry import write_evaluation, write_model

pytestmark = pytest.mark.slow


@dsl.pipeline(name="registry-steps")
def registry_steps(model_uri: str, metrics_uri: str, blessing_uri: str, tracking_uri: str):
    model = dsl.importer(artifact_uri=model_uri, artifact_class=Model)
    metrics = dsl.importer(artifact_uri=metrics_uri, artifact_class=Artifact)
    blessing = dsl.importer(artifact_uri=blessing_uri, artifact_class=Artifact)
    verdict = blessing_verdict(blessing=blessing.output)
    with dsl.If(verdict.output == True):  # noqa: E712
        registered = register_model(
            model=model.output,
            report_json=metrics.output,
            blessing=blessing.output,
            tracking_uri=tracking_uri,
            run_id="run-7",
        )
        deploy_model(version=registered.output, tracking_uri=tracking_uri)
        resolve_champion(model=model.output, tracking_uri=tracking_uri).after(registered)


def test_register_deploy_and_resolve_the_champion_as_pipeline_steps(tmp_path, capfd, kfp_local_root):
    model = write_model(tmp_path / "model", b"w")
    report = write_evaluation(tmp_path / "report", blessed=True, ndcg=0.6)
    config = RegistryConfig(work_dir=str(tmp_path / "work"))

    registry_steps(
        model_uri=str(model),
        metrics_uri=str(report / "metrics.json"),
        blessing_uri=str(report / "blessing.json"),
        tracking_uri=config.resolved_tracking_uri,
    )

    registry = MlflowRegistry(config)
    assert registry.alias_version(CHAMPION) == "1"
    assert registry.client.get_model_version("mmoe-ranker", "1").tags["pipeline_run_id"] == "run-7"
    printed = capfd.readouterr().out
    assert "ranker serve --model-uri models:/mmoe-ranker/1" in printed
    # the champion is this very model, so there is nothing to compare it against
    assert "the champion holds this very model" in printed


def test_user_source_passes_the_uri_and_refuses_an_empty_one(kfp_local_root):
    task = user_source(data_uri=" gs://bucket/logs/*.parquet ")
    assert task.outputs == {"data_uri": "gs://bucket/logs/*.parquet", "oracle_uri": ""}
    with pytest.raises(RuntimeError, match="user-source"):
        user_source(data_uri="")
