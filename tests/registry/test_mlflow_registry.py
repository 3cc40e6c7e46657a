"""The registration rules against a real MLflow SQLite store in a temporary folder."""

import argparse
import json
from pathlib import Path

import pytest

from components.registry import cli
from components.registry.core import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS_CHAMPION,
    ModelNotBlessedError,
    RegistryConfig,
    champion_model_uri,
    flatten_metrics,
    local_view,
    model_digest,
    register_from_artifacts,
)
from components.registry.mlflow_store import MlflowRegistry


def write_model(folder: Path, weights: bytes) -> Path:
    """A model folder as training exports it (the bytes stand in for the SavedModel)."""
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"graph")
    (folder / "variables" / "variables.data-00000-of-00001").write_bytes(weights)
    (folder / "feature_spec.json").write_text(json.dumps({"tasks": [], "source": {"uri": "gs://logs/*.parquet"}}))
    return folder


def write_evaluation(folder: Path, blessed: bool, ndcg: float) -> Path:
    folder.mkdir(parents=True)
    metrics = {"ndcg": {"search": {"click": {"mmoe": ndcg, "gbdt_per_module": 0.5}}}, "n_requests": 80}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    reasons = [] if blessed else ["mmoe ndcg@10 0.41 is below the per-module GBDT 0.50"]
    blessing = {"blessed": blessed, "reasons": reasons, "primary_metric": ndcg, "baseline_metric": 0.5}
    (folder / "blessing.json").write_text(json.dumps(blessing))
    return folder


@pytest.fixture
def config(tmp_path) -> RegistryConfig:
    return RegistryConfig(work_dir=str(tmp_path / "work"))


def register(tmp_path: Path, config: RegistryConfig, name: str, blessed: bool = True, ndcg: float = 0.6, run="run-1"):
    model = tmp_path / name / "model"
    if not model.exists():
        write_model(model, weights=name.encode())
        write_evaluation(tmp_path / name / "report", blessed, ndcg)
    report = str(tmp_path / name / "report")
    return register_from_artifacts(str(model), report, report, config, run_id=run)


def test_a_blessed_model_becomes_the_champion_with_its_metrics_and_provenance(tmp_path, config):
    registered = register(tmp_path, config, "a")

    assert (registered.version, registered.aliases, registered.created) == ("1", (CHAMPION,), True)
    assert (Path(registered.model_uri) / "saved_model.pb").read_bytes() == b"graph"
    registry = MlflowRegistry(config)
    metrics = registry.version_metrics("1")
    assert metrics["ndcg/search/click/mmoe"] == pytest.approx(0.6)
    assert metrics["headline/primary_metric"] == pytest.approx(0.6)
    version = registry.client.get_model_version(config.model_name, "1")
    assert version.tags["pipeline_run_id"] == "run-1"
    assert version.tags["model_digest"] == model_digest(str(tmp_path / "a" / "model"))
    assert version.tags["data_uri"] == "gs://logs/*.parquet"
    assert len(version.tags["feature_spec_hash"]) == 64
    assert version.tags["code_version"]
    assert version.tags["metric.primary_metric"] == "0.6"
    assert (tmp_path / "work" / "mlflow.db").is_file()
    assert (tmp_path / "work" / "mlartifacts").is_dir()


def test_retrying_a_registration_creates_no_second_version(tmp_path, config):
    first = register(tmp_path, config, "a")
    retry = register(tmp_path, config, "a", run="run-1-retry")

    assert (retry.version, retry.created) == (first.version, False)
    registry = MlflowRegistry(config)
    assert len(registry.client.search_model_versions(f"name='{config.model_name}'")) == 1


def test_a_new_champion_keeps_the_previous_one_as_a_version(tmp_path, config):
    first = register(tmp_path, config, "a")
    second = register(tmp_path, config, "b", ndcg=0.7, run="run-2")

    registry = MlflowRegistry(config)
    assert second.version == "2"
    assert registry.alias_version(CHAMPION) == "2"
    assert registry.alias_version(PREVIOUS_CHAMPION) == first.version
    assert champion_model_uri(config) == second.model_uri
    assert (Path(champion_model_uri(config)) / "variables" / "variables.data-00000-of-00001").read_bytes() == b"b"


def test_an_unblessed_model_is_refused_with_the_reasons(tmp_path, config):
    with pytest.raises(ModelNotBlessedError, match="below the per-module GBDT"):
        register(tmp_path, config, "a", blessed=False)

    assert champion_model_uri(config) == ""
    assert MlflowRegistry(config).find_version("anything") is None


def test_a_kept_challenger_does_not_replace_the_champion(tmp_path, config):
    champion = register(tmp_path, config, "a")
    config.keep_challengers = True
    challenger = register(tmp_path, config, "b", blessed=False, run="run-2")

    assert challenger.aliases == (CHALLENGER,)
    assert MlflowRegistry(config).alias_version(CHAMPION) == champion.version


def test_config_reads_the_environment_and_flags_win(tmp_path):
    env = {"RANKER_REGISTRY": "mlflow", "RANKER_MODEL_NAME": "from-env", "RANKER_WORK_DIR": str(tmp_path)}
    config = RegistryConfig.from_env(env, model_name="from-flag", project="")

    assert config.model_name == "from-flag"
    assert config.resolved_tracking_uri == f"sqlite:///{tmp_path}/mlflow.db"
    assert config.resolved_artifact_root == (tmp_path / "mlartifacts").as_uri()
    with pytest.raises(ValueError, match="needs a project"):
        RegistryConfig.from_env(env, backend="vertex")
    with pytest.raises(ValueError, match="unknown registry backend"):
        RegistryConfig.from_env(env, backend="sagemaker")


def test_flatten_metrics_keeps_every_number_and_skips_flags():
    document = {"ndcg": {"search": [0.5, 0.25]}, "blessed": True, "name": "mmoe", "n": 3}
    assert flatten_metrics(document) == {"ndcg/search/0": 0.5, "ndcg/search/1": 0.25, "n": 3.0}


def test_flatten_metrics_names_table_rows_by_their_text_fields():
    rows = [{"model": "mmoe", "subset": "all", "value": 0.6, "lift": None}, {"model": "gbdt", "value": 0.5}]
    assert flatten_metrics({"ndcg": rows}) == {"ndcg/mmoe/all/value": 0.6, "ndcg/gbdt/value": 0.5}


def test_a_missing_blessing_field_is_named(tmp_path, config):
    write_model(tmp_path / "model", b"w")
    report = write_evaluation(tmp_path / "report", True, 0.6)
    (report / "blessing.json").write_text(json.dumps({"verdict": "yes"}))
    with pytest.raises(ValueError, match=r"blessing\.json has no 'blessed' field"):
        register_from_artifacts(str(tmp_path / "model"), str(report), str(report), config)


def test_cli_registers_and_prints_the_champion(tmp_path, capsys):
    write_model(tmp_path / "model", b"w")
    report = write_evaluation(tmp_path / "report", True, 0.6)
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    common = ["--work-dir", str(tmp_path / "work")]
    flags = ["--model", str(tmp_path / "model"), "--report", str(report), "--blessing", str(report / "blessing.json")]

    assert cli.main(parser.parse_args([*flags, *common])) == 0
    printed = capsys.readouterr().out
    assert '"version": "1"' in printed
    assert "mlflow ui --backend-store-uri sqlite:///" in printed
    assert cli.main(parser.parse_args(["--champion", *common])) == 0
    champion = capsys.readouterr().out.strip()
    assert champion == champion_model_uri(RegistryConfig(work_dir=str(tmp_path / "work")))
    assert (Path(champion) / "saved_model.pb").is_file()


def test_gs_uris_are_read_through_the_cloud_storage_fuse_mount(tmp_path, monkeypatch):
    monkeypatch.setattr("components.registry.core.GCS_FUSE_ROOT", str(tmp_path))
    write_model(tmp_path / "bucket" / "model", b"w")

    assert local_view("gs://bucket/model") == f"{tmp_path}/bucket/model"
    assert model_digest("gs://bucket/model") == model_digest(str(tmp_path / "bucket" / "model"))
    monkeypatch.setattr("components.registry.core.GCS_FUSE_ROOT", str(tmp_path / "absent"))
    assert local_view("gs://bucket/model") is None
    assert local_view("/data/model") == "/data/model"
