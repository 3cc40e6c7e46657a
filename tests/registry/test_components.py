"""The registry and glue components run under kfp.local's SubprocessRunner on a tiny model."""

from pathlib import Path
from typing import NamedTuple
from unittest.mock import ANY

import pytest
from kfp import dsl
from kfp.dsl import Artifact, Model

from components.pipeline_steps import blessing_verdict, deploy_model, resolve_champion, user_source
from components.registry.component import register_model
from components.registry.core import CHAMPION, RegistryConfig, register_from_artifacts
from components.registry.mlflow_store import MlflowRegistry
from tests.registry.conftest import copy_model, write_evaluation

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


def test_register_deploy_and_resolve_the_champion_as_pipeline_steps(tmp_path, capfd, kfp_local_root, model_dir):
    model = copy_model(model_dir, tmp_path / "model", "steps")
    report = write_evaluation(tmp_path / "report", blessed=True, ndcg=0.6, judged=model)
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


def test_user_source_passes_the_uri_with_its_version_and_refuses_an_empty_one(kfp_local_root, tmp_path):
    (tmp_path / "a.parquet").write_bytes(b"rows")
    task = user_source(data_uri=f" {tmp_path}/*.parquet ")
    assert task.outputs == {"data_uri": f"{tmp_path}/*.parquet", "oracle_uri": "", "data_version": ANY}
    assert len(task.outputs["data_version"]) == 16  # a digest of the matched files (components.data.versions)
    with pytest.raises(RuntimeError, match="user-source"):
        user_source(data_uri="")


class ChampionOutputs(NamedTuple):
    champion_model_uri: str
    champion_note: str


@dsl.pipeline(name="champion-step")
def champion_step(model_uri: str, tracking_uri: str, on_broken_champion: str) -> ChampionOutputs:
    model = dsl.importer(artifact_uri=model_uri, artifact_class=Model)
    champion = resolve_champion(model=model.output, tracking_uri=tracking_uri, on_broken_champion=on_broken_champion)
    return ChampionOutputs(
        champion_model_uri=champion.outputs["champion_model_uri"], champion_note=champion.outputs["champion_note"]
    )


def test_resolve_champion_notes_a_broken_champion_or_fails_on_it(tmp_path, capfd, kfp_local_root, model_dir):
    config = RegistryConfig(work_dir=str(tmp_path / "work"))
    champion = copy_model(model_dir, tmp_path / "champion", "champion")
    report = write_evaluation(tmp_path / "report", blessed=True, ndcg=0.6, judged=champion)
    registered = register_from_artifacts(str(champion), str(report), str(report), config)
    (Path(registered.model_uri) / "saved_model.pb").write_text("not a graph\n")
    candidate = str(copy_model(model_dir, tmp_path / "candidate", "candidate"))

    continued = champion_step(
        model_uri=candidate, tracking_uri=config.resolved_tracking_uri, on_broken_champion="continue"
    )
    assert continued.outputs["champion_model_uri"] == ""
    assert "champion alias of mmoe-ranker points at version 1" in continued.outputs["champion_note"]
    with pytest.raises(RuntimeError, match="resolve-champion"):
        champion_step(model_uri=candidate, tracking_uri=config.resolved_tracking_uri, on_broken_champion="stop")
    printed = capfd.readouterr()
    assert "BrokenChampionError: the champion alias of mmoe-ranker points at version 1" in printed.out + printed.err
