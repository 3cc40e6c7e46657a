"""Resolving the served model: local folders, remote (tf.io.gfile) folders and MLflow aliases."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.model_source import ModelSourceError, resolve_model_dir


def fake_export(folder: Path) -> Path:
    """The files the server looks for (contents do not matter to resolution)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "saved_model.pb").write_bytes(b"pb")
    (folder / "feature_spec.json").write_text("{}")
    (folder / "variables").mkdir(exist_ok=True)
    (folder / "variables" / "variables.index").write_bytes(b"index")
    return folder


def test_local_folder_and_file_uri_are_used_in_place(tmp_path):
    export = fake_export(tmp_path / "model")
    assert resolve_model_dir(str(export)) == export
    assert resolve_model_dir(f"file://{export}") == export


def test_a_nested_export_is_found(tmp_path):
    export = fake_export(tmp_path / "artifacts" / "model" / "saved")
    assert resolve_model_dir(str(tmp_path / "artifacts")) == export


@pytest.mark.parametrize(
    ("layout", "message"),
    [("missing", "does not exist"), ("empty", "no exported ranker"), ("no_spec", "no feature_spec.json beside it")],
)
def test_unusable_folders_are_explained(tmp_path, layout, message):
    folder = tmp_path / "model"
    if layout != "missing":
        folder.mkdir()
    if layout == "no_spec":
        (folder / "saved_model.pb").write_bytes(b"pb")
    with pytest.raises(ModelSourceError, match=message):
        resolve_model_dir(str(folder))
    with pytest.raises(ModelSourceError, match="no model URI"):
        resolve_model_dir("")


def test_remote_folder_is_copied_down(tmp_path):
    import tensorflow as tf

    remote = "ram://models/run-1/model"
    for name, data in {"saved_model.pb": b"pb", "feature_spec.json": b"{}", "variables/variables.index": b"i"}.items():
        tf.io.gfile.makedirs(f"{remote}/{Path(name).parent}".rstrip("/."))
        with tf.io.gfile.GFile(f"{remote}/{name}", "wb") as file:
            file.write(data)
    local = resolve_model_dir(remote, tmp_path / "cache")
    assert local.is_relative_to(tmp_path / "cache")
    assert (local / "variables" / "variables.index").read_bytes() == b"i"
    with pytest.raises(ModelSourceError, match="does not exist or cannot be read"):
        resolve_model_dir("ram://models/nothing-here", tmp_path / "cache")


def test_mlflow_alias_and_version_resolve_to_the_registered_files(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.create_experiment("mmoe-ranker", artifact_location=str(tmp_path / "artifacts"))
    run = client.create_run(experiment)
    client.log_artifacts(run.info.run_id, str(fake_export(tmp_path / "export")), "model")
    client.create_registered_model("mmoe-ranker")
    version = client.create_model_version(
        "mmoe-ranker", source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id
    )
    client.set_registered_model_alias("mmoe-ranker", "champion", version.version)

    by_alias = resolve_model_dir("models:/mmoe-ranker@champion", tmp_path / "cache")
    by_version = resolve_model_dir(f"models:/mmoe-ranker/{version.version}", tmp_path / "cache2")
    for local in (by_alias, by_version):
        assert (local / "saved_model.pb").read_bytes() == b"pb"
        assert (local / "feature_spec.json").is_file()
    with pytest.raises(ModelSourceError, match="not found in the MLflow registry"):
        resolve_model_dir("models:/mmoe-ranker@challenger", tmp_path / "cache3")
    with pytest.raises(ModelSourceError, match="is not models:/<name>@<alias>"):
        resolve_model_dir("models:/mmoe-ranker", tmp_path / "cache4")


def test_without_a_tracking_uri_an_alias_is_read_from_the_registry_ranker_run_writes(tmp_path, monkeypatch):
    """``ranker serve --model-uri models:/...@champion`` right after ``ranker run``: work_dir/mlflow.db."""
    from mlflow import MlflowClient

    registry = tmp_path / "registry"
    registry.mkdir()
    uri = f"sqlite:///{registry / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)  # not MLflow's global URI, which other tests set
    experiment = client.create_experiment("mmoe-ranker", artifact_location=str(registry / "artifacts"))
    run = client.create_run(experiment)
    client.log_artifacts(run.info.run_id, str(fake_export(tmp_path / "export")), "model")
    client.create_registered_model("mmoe-ranker")
    client.create_model_version("mmoe-ranker", source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    monkeypatch.setenv("RANKER_WORK_DIR", str(registry))
    assert (resolve_model_dir("models:/mmoe-ranker/1", tmp_path / "cache") / "saved_model.pb").is_file()

    monkeypatch.delenv("RANKER_WORK_DIR")
    monkeypatch.chdir(tmp_path)  # no work_dir here
    with pytest.raises(ModelSourceError, match=f"no MLflow registry at {tmp_path / 'work_dir' / 'mlflow.db'}"):
        resolve_model_dir("models:/mmoe-ranker/1", tmp_path / "cache2")
    assert not (tmp_path / "work_dir").exists() and not (tmp_path / "mlflow.db").exists()
