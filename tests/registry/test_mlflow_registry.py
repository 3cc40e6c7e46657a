"""The registration rules against a real MLflow SQLite store in a temporary folder."""

import argparse
import json
import re
from pathlib import Path

import pytest

from components.registry import cli
from components.registry.core import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS_CHAMPION,
    BrokenChampionError,
    Champion,
    ModelNotBlessedError,
    RegistrationRefusedError,
    RegistryConfig,
    champion_model_uri,
    champion_to_beat,
    flatten_metrics,
    is_blessed,
    register_from_artifacts,
)
from components.registry.mlflow_store import MlflowRegistry
from tests.registry.conftest import copy_model, edit_blessing, write_evaluation, write_fake_model
from trainer.digest import json_sha256, judged_model, local_view, model_digest


def register(tmp_path: Path, config: RegistryConfig, exported: Path, name: str, blessed=True, ndcg=0.6, run="run-1"):
    """Register a copy of the exported model (its own digest per ``name``) with an evaluation that judged it."""
    model = tmp_path / name / "model"
    if not model.exists():
        copy_model(exported, model, name)
        write_evaluation(tmp_path / name / "report", blessed, ndcg, judged=model)
    report = str(tmp_path / name / "report")
    return register_from_artifacts(str(model), report, report, config, run_id=run)


def refused(config: RegistryConfig, model: Path, report: Path, match: str) -> None:
    """Registering ``model`` with ``report``'s blessing is refused, and nothing is written to the registry."""
    with pytest.raises(RegistrationRefusedError, match=match):
        register_from_artifacts(str(model), str(report), str(report), config)
    assert not Path(config.work_dir).exists(), "a refused registration must not create the registry"


@pytest.mark.slow
def test_a_blessed_model_becomes_the_champion_with_its_metrics_and_provenance(tmp_path, config, model_dir):
    registered = register(tmp_path, config, model_dir, "a")

    assert (registered.version, registered.aliases, registered.created) == ("1", (CHAMPION,), True)
    assert model_digest(registered.model_uri) == model_digest(str(tmp_path / "a" / "model"))
    registry = MlflowRegistry(config)
    metrics = registry.version_metrics("1")
    assert metrics["headline/primary_metric"] == pytest.approx(0.6)
    assert "ndcg/search/click/mmoe" not in metrics, "the long table is the evaluation/metrics.csv artifact"
    version = registry.client.get_model_version(config.model_name, "1")
    assert version.tags["pipeline_run_id"] == "run-1"
    assert version.tags["model_digest"] == model_digest(str(tmp_path / "a" / "model"))
    assert version.tags["data_uri"] == "gs://logs/a/*.parquet"
    assert version.tags["feature_spec_hash"] == judged_model(str(tmp_path / "a" / "model"))["feature_spec_sha256"]
    assert version.tags["code_version"]
    assert version.tags["metric.primary_metric"] == "0.6"
    assert (tmp_path / "work" / "mlflow.db").is_file()
    assert (tmp_path / "work" / "mlartifacts").is_dir()


@pytest.mark.slow
def test_retrying_a_registration_creates_no_second_version(tmp_path, config, model_dir):
    first = register(tmp_path, config, model_dir, "a")
    retry = register(tmp_path, config, model_dir, "a", run="run-1-retry")

    assert (retry.version, retry.created) == (first.version, False)
    registry = MlflowRegistry(config)
    assert len(registry.client.search_model_versions(f"name='{config.model_name}'")) == 1


@pytest.mark.slow
def test_a_new_champion_keeps_the_previous_one_as_a_version(tmp_path, config, model_dir):
    first = register(tmp_path, config, model_dir, "a")
    second = register(tmp_path, config, model_dir, "b", ndcg=0.7, run="run-2")

    registry = MlflowRegistry(config)
    assert second.version == "2"
    assert registry.alias_version(CHAMPION) == "2"
    assert registry.alias_version(PREVIOUS_CHAMPION) == first.version
    assert champion_model_uri(config) == second.model_uri
    assert model_digest(champion_model_uri(config)) == model_digest(str(tmp_path / "b" / "model"))


def test_an_unblessed_model_is_refused_with_the_reasons(tmp_path, config):
    model = write_fake_model(tmp_path / "model", b"w")
    report = write_evaluation(tmp_path / "report", blessed=False, ndcg=0.41, judged=model)

    with pytest.raises(ModelNotBlessedError, match="below the per-module GBDT"):
        register_from_artifacts(str(model), str(report), str(report), config)
    assert champion_model_uri(config) == ""
    assert MlflowRegistry(config).find_version("anything") is None


@pytest.mark.slow
def test_a_kept_challenger_does_not_replace_the_champion(tmp_path, config, model_dir):
    champion = register(tmp_path, config, model_dir, "a")
    config.keep_challengers = True
    challenger = register(tmp_path, config, model_dir, "b", blessed=False, run="run-2")

    assert challenger.aliases == (CHALLENGER,)
    assert MlflowRegistry(config).alias_version(CHAMPION) == champion.version


@pytest.mark.parametrize("value", ["false", "true", 1, None])
def test_a_blessed_value_that_is_not_a_json_boolean_is_refused(tmp_path, config, value):
    model = write_fake_model(tmp_path / "model", b"w")
    report = write_evaluation(tmp_path / "report", blessed=True, ndcg=0.6, judged=model)
    path = edit_blessing(report, blessed=value)

    shown = json.dumps(value)
    refused(config, model, report, match=rf"{re.escape(str(path))}: 'blessed' is {shown} .*not the JSON boolean true")
    with pytest.raises(RegistrationRefusedError, match=rf"'blessed' is {shown}"):
        is_blessed(str(report))  # the pipeline's gate refuses it too


def test_a_missing_blessing_field_is_named(tmp_path, config):
    model = write_fake_model(tmp_path / "model", b"w")
    report = write_evaluation(tmp_path / "report", True, 0.6, judged=model)
    (report / "blessing.json").write_text(json.dumps({"verdict": "yes"}))

    refused(config, model, report, match=r"blessing\.json has no 'blessed' field")


def test_a_blessing_of_other_model_files_is_refused_naming_both_digests(tmp_path, config):
    judged = write_fake_model(tmp_path / "judged", b"judged weights")
    model = write_fake_model(tmp_path / "model", b"other weights")
    report = write_evaluation(tmp_path / "report", blessed=True, ndcg=0.6, judged=judged)

    digests = f"digest {model_digest(str(judged))}, but {re.escape(str(model))} has digest {model_digest(str(model))}"
    refused(config, model, report, match=digests)


def test_a_blessing_that_does_not_name_its_model_is_refused(tmp_path, config):
    model = write_fake_model(tmp_path / "model", b"w")
    report = write_evaluation(tmp_path / "report", blessed=True, ndcg=0.6)  # no judged_model

    refused(config, model, report, match=r"does not say which model it judged.*re-run evaluate")


def test_a_report_that_is_not_the_blessings_evaluation_is_refused(tmp_path, config):
    """Any JSON (``{"foo": 1}``, another run's metrics.json) was registered as the version's evaluation."""
    model = write_fake_model(tmp_path / "model", b"w")
    report = write_evaluation(tmp_path / "report", blessed=True, ndcg=0.6, judged=model)
    other = write_evaluation(tmp_path / "other", blessed=True, ndcg=0.7, judged=model)
    garbage = tmp_path / "garbage.json"
    garbage.write_text('{"foo": 1}')

    for metrics, problem in (
        (garbage, "is not an evaluation's metrics.json (it has no 'blessing')"),
        (other / "metrics.json", f"is the report of another evaluation than {report / 'blessing.json'}"),
    ):
        with pytest.raises(RegistrationRefusedError, match=re.escape(f"{metrics} {problem}")):
            register_from_artifacts(str(model), str(metrics), str(report / "blessing.json"), config)
    assert not Path(config.work_dir).exists(), "a refused registration must not create the registry"


@pytest.mark.slow
def test_a_model_whose_graph_is_a_line_of_text_is_refused(tmp_path, config, model_dir):
    model = copy_model(model_dir, tmp_path / "model", "text")
    (model / "saved_model.pb").write_text("this is not a graph\n")
    report = write_evaluation(tmp_path / "report", blessed=True, ndcg=0.6, judged=model)

    refused(config, model, report, match=f"not registering it: {re.escape(str(model))} is not a loadable ranker")


def test_cli_refuses_a_bad_blessing_with_exit_status_1(tmp_path, caplog):
    model = write_fake_model(tmp_path / "model", b"w")
    report = write_evaluation(tmp_path / "report", blessed=True, ndcg=0.6, judged=model)
    edit_blessing(report, blessed="false")
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    flags = ["--model", str(model), "--report", str(report), "--blessing", str(report)]

    assert cli.main(parser.parse_args([*flags, "--work-dir", str(tmp_path / "w")])) == 1
    assert """'blessed' is "false" (str)""" in caplog.text
    assert not (tmp_path / "w").exists()


@pytest.mark.slow
def test_a_broken_champion_is_left_out_with_a_note_or_stops_the_run(tmp_path, config, model_dir):
    champion = register(tmp_path, config, model_dir, "a")
    candidate = copy_model(model_dir, tmp_path / "b" / "model", "b")
    assert champion_to_beat(config, str(candidate)).model_uri == champion.model_uri  # a healthy champion is used
    (Path(champion.model_uri) / "saved_model.pb").write_text("not a graph\n")

    left_out = champion_to_beat(config, str(candidate))
    assert left_out.model_uri == ""
    assert "champion alias of mmoe-ranker points at version 1" in left_out.note
    assert "is not a loadable ranker" in left_out.note and "without the champion comparison" in left_out.note
    config.on_broken_champion = "stop"
    with pytest.raises(BrokenChampionError, match=r"champion alias of mmoe-ranker points at version 1, .*stop"):
        champion_to_beat(config, str(candidate))


def edit_spec(model: Path, **fields) -> Path:
    """Overwrite fields of ``model/feature_spec.json`` (the examples' spec, as the candidate carries it)."""
    path = model / "feature_spec.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))
    return model


@pytest.mark.slow
def test_a_champion_of_another_schema_is_left_out_with_a_note_or_stops_the_run(tmp_path, config, model_dir):
    register(tmp_path, config, model_dir, "a")
    spec = json.loads((model_dir / "feature_spec.json").read_text())
    tasks, features = spec["tasks"], spec["features"]
    other_tasks = edit_spec(copy_model(model_dir, tmp_path / "b" / "model", "b"), tasks=tasks[:1])
    fewer_features = edit_spec(copy_model(model_dir, tmp_path / "c" / "model", "c"), features=features[1:])

    left_out = champion_to_beat(config, str(other_tasks))
    assert left_out.model_uri == ""
    assert "champion alias of mmoe-ranker points at version 1" in left_out.note
    task_names = ", ".join(task["name"] for task in tasks)
    assert f"has other tasks than the examples: {task_names} vs {tasks[0]['name']}" in left_out.note
    assert "without the champion comparison" in left_out.note
    missing = champion_to_beat(config, str(fewer_features))
    assert missing.model_uri == "" and "has other features than the examples" in missing.note
    config.on_broken_champion = "stop"
    with pytest.raises(BrokenChampionError, match=r"version 1, .*has other tasks than the examples.*stop"):
        champion_to_beat(config, str(other_tasks))


@pytest.mark.slow
def test_a_champion_without_a_feature_the_examples_gained_is_still_compared(tmp_path, config, model_dir):
    champion = register(tmp_path, config, model_dir, "a")
    spec = json.loads((model_dir / "feature_spec.json").read_text())
    extra = {**spec["features"][0], "name": "added_later"}
    candidate = edit_spec(copy_model(model_dir, tmp_path / "b" / "model", "b"), features=[*spec["features"], extra])

    assert champion_to_beat(config, str(candidate)) == Champion(model_uri=champion.model_uri)


@pytest.mark.slow
def test_judged_model_names_the_files_the_saved_model_and_the_feature_spec(model_dir):
    judged = judged_model(str(model_dir))

    assert judged["model_digest"] == model_digest(str(model_dir))
    assert judged["saved_model_fingerprint"]  # TensorFlow writes fingerprint.pb beside the graph
    assert judged["feature_spec_sha256"] == json_sha256(json.loads((model_dir / "feature_spec.json").read_text()))


def test_config_reads_the_environment_and_flags_win(tmp_path):
    env = {"RANKER_REGISTRY": "mlflow", "RANKER_MODEL_NAME": "from-env", "RANKER_WORK_DIR": str(tmp_path)}
    config = RegistryConfig.from_env(env, model_name="from-flag", project="")

    assert config.model_name == "from-flag"
    assert config.resolved_tracking_uri == f"sqlite:///{tmp_path}/mlflow.db"
    assert config.resolved_artifact_root == (tmp_path / "mlartifacts").as_uri()
    assert config.on_broken_champion == "continue"
    assert RegistryConfig.from_env({**env, "RANKER_ON_BROKEN_CHAMPION": "stop"}).on_broken_champion == "stop"
    with pytest.raises(ValueError, match="needs a project"):
        RegistryConfig.from_env(env, backend="vertex")
    with pytest.raises(ValueError, match="backend: Input should be 'mlflow' or 'vertex'"):
        RegistryConfig.from_env(env, backend="sagemaker")
    with pytest.raises(ValueError, match="on_broken_champion: Input should be 'continue' or 'stop'"):
        RegistryConfig.from_env(env, on_broken_champion="ignore")


@pytest.mark.parametrize(("text", "expected"), [("on", True), ("YES", True), ("1", True), ("off", False)])
def test_keep_challengers_reads_every_boolean_spelling(text, expected):
    assert RegistryConfig.from_env({"RANKER_KEEP_CHALLENGERS": text}).keep_challengers is expected
    with pytest.raises(ValueError, match="RANKER_KEEP_CHALLENGERS='maybe' is not a boolean"):
        RegistryConfig.from_env({"RANKER_KEEP_CHALLENGERS": "maybe"})


def test_flatten_metrics_keeps_every_number_and_skips_flags():
    document = {"ndcg": {"search": [0.5, 0.25]}, "blessed": True, "name": "mmoe", "n": 3}
    assert flatten_metrics(document) == {"ndcg/search/0": 0.5, "ndcg/search/1": 0.25, "n": 3.0}


def test_flatten_metrics_names_table_rows_by_their_text_fields():
    rows = [{"model": "mmoe", "subset": "all", "value": 0.6, "lift": None}, {"model": "gbdt", "value": 0.5}]
    assert flatten_metrics({"ndcg": rows}) == {"ndcg/mmoe/all/value": 0.6, "ndcg/gbdt/value": 0.5}


@pytest.mark.slow
def test_cli_registers_and_prints_the_champion(tmp_path, capsys, model_dir, monkeypatch):
    model = copy_model(model_dir, tmp_path / "model", "cli")
    report = write_evaluation(tmp_path / "report", True, 0.6, judged=model)
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    common = ["--work-dir", str(tmp_path / "work")]
    flags = ["--model", str(model), "--report", str(report), "--blessing", str(report / "blessing.json")]

    assert cli.main(parser.parse_args([*flags, *common])) == 0
    printed = capsys.readouterr().out
    assert '"version": "1"' in printed
    assert "mlflow ui --backend-store-uri sqlite:///" in printed
    assert cli.main(parser.parse_args(["--champion", *common])) == 0
    champion = capsys.readouterr().out.strip()
    assert champion == champion_model_uri(RegistryConfig(work_dir=str(tmp_path / "work")))
    assert (Path(champion) / "saved_model.pb").is_file()

    # `ranker serve --model-uri models:/mmoe-ranker@champion` with no MLFLOW_TRACKING_URI: the version's source is a
    # logged model (models:/m-<id>), which must be read from the work dir's store, not a new ./mlflow.db
    from serving.model_source import resolve_model_dir

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("RANKER_WORK_DIR", str(tmp_path / "work"))
    monkeypatch.chdir(tmp_path / "model")
    served = resolve_model_dir("models:/mmoe-ranker@champion", tmp_path / "cache")
    assert (served / "saved_model.pb").read_bytes() == (model / "saved_model.pb").read_bytes()
    assert not (tmp_path / "model" / "mlflow.db").exists()


def test_run_flags_set_the_broken_champion_policy_and_only_judging_commands_take_it(tmp_path):
    parser = argparse.ArgumentParser()
    cli.add_registry_arguments(parser, judging=True)

    assert cli.registry_config(parser.parse_args(["--on-broken-champion", "stop"])).on_broken_champion == "stop"
    assert cli.registry_config(parser.parse_args([])).on_broken_champion == "continue"
    register = argparse.ArgumentParser()
    cli.add_arguments(register)  # register judges nothing: the flag would do nothing there
    assert "--on-broken-champion" not in register.format_help()
    assert cli.registry_config(register.parse_args([])).on_broken_champion == "continue"


def test_gs_uris_are_read_through_the_cloud_storage_fuse_mount(tmp_path, monkeypatch):
    monkeypatch.setattr("trainer.digest.GCS_FUSE_ROOT", str(tmp_path))
    write_fake_model(tmp_path / "bucket" / "model", b"w")

    assert local_view("gs://bucket/model") == f"{tmp_path}/bucket/model"
    assert model_digest("gs://bucket/model") == model_digest(str(tmp_path / "bucket" / "model"))
    monkeypatch.setattr("trainer.digest.GCS_FUSE_ROOT", str(tmp_path / "absent"))
    assert local_view("gs://bucket/model") is None
    assert local_view("/data/model") == "/data/model"


def latest_layout(tmp_path: Path, exported: Path) -> Path:
    """A finished run's folder as `ranker run` leaves it: ``latest/model`` links to the model in ``pipeline_root``
    (relative link, as a user may make one too), next to the evaluation's files; ``latest``."""
    model = copy_model(exported, tmp_path / "wd" / "pipeline_root" / "run-1" / "train-mmoe" / "model", "latest")
    latest = write_evaluation(tmp_path / "wd" / "latest", True, 0.6, judged=model)
    (latest / "model").symlink_to(Path("..") / "pipeline_root" / "run-1" / "train-mmoe" / "model")
    return latest


@pytest.mark.slow
def test_ranker_register_takes_the_latest_model_link_the_docs_show(tmp_path, capsys, model_dir):
    """MLflow refuses an artifact path that resolves outside its folder: the link is resolved first."""
    from mlflow.pyfunc import load_model

    from pipelines.cli import main as ranker
    from ranker_core.serving import global_tracking_uri
    from trainer.mlflow_model import example_frame

    latest = latest_layout(tmp_path, model_dir)
    work = tmp_path / "registry"
    flags = ["--model", str(latest / "model"), "--report", str(latest / "metrics.json")]

    assert ranker(["register", "--work-dir", str(work), *flags, "--blessing", str(latest / "blessing.json")]) == 0

    assert json.loads(capsys.readouterr().out.split("\nbrowse it")[0])["aliases"] == [CHAMPION]
    with global_tracking_uri(RegistryConfig(work_dir=str(work)).resolved_tracking_uri):
        scored = load_model(f"models:/mmoe-ranker@{CHAMPION}").predict(example_frame(latest / "model"))
    assert "score" in scored.columns


@pytest.mark.slow
def test_a_model_folder_holding_links_is_registered_with_the_files_they_point_at(tmp_path, config, model_dir):
    model = copy_model(model_dir, tmp_path / "model", "links")
    kept = tmp_path / "elsewhere" / "feature_spec.json"
    kept.parent.mkdir()
    (model / "feature_spec.json").rename(kept)
    (model / "feature_spec.json").symlink_to(kept)
    report = write_evaluation(tmp_path / "report", True, 0.6, judged=model)

    registered = register_from_artifacts(str(model), str(report), str(report), config)

    copied = Path(registered.model_uri) / "feature_spec.json"
    assert not copied.is_symlink() and copied.read_text() == kept.read_text()


def test_cli_user_errors_are_one_line_and_exit_status_2(tmp_path, capsys):
    from pipelines.cli import main as ranker

    work = ["--work-dir", str(tmp_path / "w")]
    assert ranker(["register", *work]) == 2
    assert capsys.readouterr().err == (
        "ranker register: missing --model, --report, --blessing: give the model folder and its evaluation's "
        "metrics.json and blessing.json (or --champion to print the champion's model location)\n"
    )
    missing = tmp_path / "no" / "model"
    assert ranker(["register", *work, "--model", str(missing), "--report", ".", "--blessing", "."]) == 2
    assert capsys.readouterr().err == f"ranker register: --model {missing}: no such file or folder\n"
    assert not (tmp_path / "w").exists()
