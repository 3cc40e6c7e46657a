"""The ``ranker`` front door: help on every flag, renamed flags and variables, "did you mean", no traceback."""

import argparse
import importlib
import logging
import re

import pytest
import yaml

from components.data.simulator_cli import config_from_args
from pipelines.cli import COMMANDS, _available_commands, command_parser, main, rename_flags
from pipelines.config import PipelineSettings
from tests.pipelines.test_config import parse_run_flags

REGISTRY_IMAGE = "europe-west4-docker.pkg.dev/my-project/ranker/mmoe-ranker:1"


def _parsers(parser: argparse.ArgumentParser):
    """``parser`` and every parser below it (subcommands, ``schedule``'s actions)."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def _parse(command: str, argv: list[str]) -> argparse.Namespace:
    module = importlib.import_module(COMMANDS[command][0])
    renamed = getattr(module, "RENAMED_FLAGS", {})
    return command_parser(command, module).parse_args([command, *rename_flags(argv, renamed)])


@pytest.mark.parametrize("command", sorted(_available_commands()))
def test_every_option_of_every_subcommand_has_help(command):
    parser = command_parser(command, importlib.import_module(COMMANDS[command][0]))
    missing = [
        (sub.prog, action.option_strings or action.dest)
        for sub in _parsers(parser)
        for action in sub._actions
        if not isinstance(action, argparse._SubParsersAction) and not (action.help or "").strip()
    ]
    assert missing == []


@pytest.mark.parametrize("command", ["run", "compile", "submit", "schedule"])
def test_the_help_of_a_pipeline_command_names_only_its_own_flags(command):
    parser = command_parser(command, importlib.import_module(COMMANDS[command][0]))
    subs = list(_parsers(parser))[1:]  # the command and its actions, not `ranker` itself
    text = "\n".join(sub.format_help() for sub in subs)
    known = {flag for sub in subs for flag in sub._option_string_actions}
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]+", text))
    assert sorted(named - known) == []


def test_old_flag_spellings_still_work_with_a_deprecation_warning(capsys):
    required = ["--examples", "e", "--model", "m", "--baseline", "b", "--out", "o"]
    args = _parse("evaluate", [*required, "--config-json", '{"seed": 1}', "--fail-unless-blessed"])
    assert (args.config, args.fail_if_not_blessed) == ('{"seed": 1}', True)
    assert _parse("extract-features", ["--data=d", "--spec", "s", "--out", "o"]).dataset_spec == "s"
    assert _parse("simulate", ["--out", "o", "--impressions", "10"]).n_impressions == 10
    warnings = capsys.readouterr().err.splitlines()
    assert "ranker: warning: --config-json is deprecated, use --config" in warnings
    assert "ranker: warning: --data is deprecated, use --data-uri" in warnings
    assert len(warnings) == 5


def test_old_environment_names_are_read_with_a_warning(capsys):
    old = {"RANKER_TRAINING_CPU": "8", "RANKER_SIM_IMPRESSIONS": "5000", "RANKER_CACHE": "false"}
    settings = PipelineSettings.from_env(old)
    assert (settings.train_cpu, settings.n_impressions, settings.enable_caching) == ("8", 5000, False)
    assert "RANKER_TRAINING_CPU is deprecated, use RANKER_TRAIN_CPU" in capsys.readouterr().err
    assert PipelineSettings.from_env({**old, "RANKER_TRAIN_CPU": "16"}).train_cpu == "16"


def test_simulate_and_run_share_their_defaults():
    simulated = config_from_args(_parse("simulate", ["--out", "o"]))
    assert (simulated.n_impressions, simulated.seed) == (PipelineSettings().n_impressions, PipelineSettings().seed)


@pytest.mark.parametrize(
    ("argv", "suggestion"),
    [
        (["trian"], "did you mean train?"),
        (["validate-spec", "--dataset-spec", "simulator", "--dta-uri", "d"], "did you mean --data-uri?"),
        (["train", "--exmaples", "x", "--model-dir", "m"], "required: --examples (did you mean --examples?)"),
        (["train", "--model-dir=m", "--examples_dir=x"], "(did you mean --examples?)"),
    ],
)
def test_typos_get_a_suggestion_and_status_2(argv, suggestion, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert suggestion in err and "Traceback" not in err


@pytest.mark.parametrize("verbose", [False, True])
def test_beams_progress_lines_are_left_out_unless_verbose(tmp_path, capsys, verbose):
    beam = logging.getLogger("apache_beam")
    before = beam.level
    beam.setLevel(logging.NOTSET)
    try:
        argv = ["-v"] if verbose else []
        assert main([*argv, "train", "--examples", "/no/such/dir", "--model-dir", str(tmp_path / "m")]) == 2
        assert beam.level == (logging.NOTSET if verbose else logging.WARNING)
    finally:
        beam.setLevel(before)


def test_train_on_a_missing_folder_is_one_line(tmp_path, capsys):
    assert main(["train", "--examples", "/no/such/dir", "--model-dir", str(tmp_path / "m")]) == 2
    assert capsys.readouterr().err == "ranker train: --examples /no/such/dir: no such file or folder\n"


@pytest.mark.parametrize(("command", "out_flag"), [("train", "--model-dir"), ("train-baseline", "--out")])
def test_training_on_a_folder_without_examples_is_one_line(tmp_path, capsys, command, out_flag):
    assert main([command, "--examples", str(tmp_path), out_flag, str(tmp_path / "out")]) == 2
    spec = tmp_path / "feature_spec.json"
    assert (
        capsys.readouterr().err == f"ranker {command}: no feature spec at {spec}: run `ranker extract-features` first\n"
    )


@pytest.mark.parametrize("argv", [["compile", "--help"], ["compile", "--out", "x.yaml"]])
def test_a_bad_setting_in_the_environment_is_one_line_even_for_help(monkeypatch, capsys, argv):
    monkeypatch.setenv("RANKER_TRAIN_EPOCHS", "abc")  # the help shows the settings' values: building it reads them
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("ranker compile: ") and "epochs (env RANKER_TRAIN_EPOCHS)" in err and "Traceback" not in err


def test_register_with_a_missing_or_broken_json_file_is_one_line(tmp_path, capsys):
    (tmp_path / "blessing.json").write_text('{"blessed": tr')
    argv = ["register", "--work-dir", str(tmp_path / "wd"), "--model", str(tmp_path), "--blessing"]
    assert main([*argv, str(tmp_path / "blessing.json"), "--report", str(tmp_path / "nosuch.json")]) == 2
    assert capsys.readouterr().err == f"ranker register: --report {tmp_path / 'nosuch.json'}: no such file or folder\n"
    assert main([*argv, str(tmp_path / "blessing.json"), "--report", str(tmp_path / "blessing.json")]) == 2
    assert capsys.readouterr().err.startswith(f"ranker register: {tmp_path / 'blessing.json'} is not valid JSON: ")
    assert not (tmp_path / "wd").exists()


def test_register_champion_does_not_create_a_registry(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RANKER_REGISTRY", raising=False)
    work_dir = tmp_path / "new"
    assert main(["register", "--champion", "--work-dir", str(work_dir)]) == 2
    assert "there is no model registry in" in capsys.readouterr().err
    assert not (work_dir / "mlflow.db").exists()


def test_submit_without_credentials_is_one_line(tmp_path, monkeypatch, capsys):
    from google.cloud.aiplatform import initializer

    monkeypatch.setattr(initializer.global_config, "_credentials", None)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "no-such-key.json"))
    template = tmp_path / "pipeline.yaml"
    template.write_text('{"root": {}}')
    argv = ["submit", "--template", str(template), "--registry", "vertex", "--project", "p"]
    assert main([*argv, "--pipeline-root", "gs://bucket/runs"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ranker submit: ") and err.count("\n") == 1 and "no-such-key.json" in err


def test_compile_sets_the_image_of_every_step(tmp_path, monkeypatch):
    monkeypatch.setenv("RANKER_IMAGE", "europe-west4-docker.pkg.dev/my-project/ranker/mmoe-ranker:old")  # --image wins
    monkeypatch.delenv("RANKER_SERVING_IMAGE", raising=False)
    out = tmp_path / "pipeline.yaml"
    assert (
        main(["compile", "--out", str(out), "--registry", "vertex", "--project", "p", "--image", REGISTRY_IMAGE]) == 0
    )
    executors = yaml.safe_load(out.read_text())["deploymentSpec"]["executors"]
    images = {executor["container"]["image"] for executor in executors.values() if "container" in executor}
    # google-cloud-pipeline-components' ModelDeployOp (the Vertex AI deployment) runs in its own image
    assert images - {REGISTRY_IMAGE} == {executors["exec-model-deploy"]["container"]["image"]}
    assert "google-cloud-pipeline-components" in executors["exec-model-deploy"]["container"]["image"]
    # the model is registered with the image it serves in: --image, unless --serving-image names another
    parameters = yaml.safe_load(out.read_text())["root"]["inputDefinitions"]["parameters"]
    assert parameters["serving_image"]["defaultValue"] == REGISTRY_IMAGE
    serving = "europe-west4-docker.pkg.dev/my-project/ranker/serving:2"
    monkeypatch.setenv("RANKER_SERVING_IMAGE", serving)
    assert (
        main(["compile", "--out", str(out), "--registry", "vertex", "--project", "p", "--image", REGISTRY_IMAGE]) == 0
    )
    parameters = yaml.safe_load(out.read_text())["root"]["inputDefinitions"]["parameters"]
    assert parameters["serving_image"]["defaultValue"] == serving


@pytest.mark.parametrize(
    ("flags", "refused"),
    [
        (["--data-uri", "/tmp/logs/*.parquet"], "--data-uri '/tmp/logs/*.parquet' is a path of this machine"),
        (["--data-uri", "gs://b/logs/*.parquet", "--oracle", "truth/"], "--oracle 'truth/' is a path of this machine"),
        (["--dataset-spec", "my_spec.yaml"], "--dataset-spec 'my_spec.yaml' is a path of this machine"),
        (["--data-uri", "bq://p.d.t", "--dataset-spec", "gs://b/spec.yaml"], None),
        (["--data-uri", "/gcs/b/logs/", "--dataset-spec", "kuairand"], None),  # Cloud Storage FUSE on Vertex AI
    ],
)
def test_a_vertex_pipeline_refuses_inputs_its_steps_cannot_read(flags, refused, tmp_path, monkeypatch, capsys):
    def unreadable(reference: str) -> None:  # a gs:// spec, without credentials here: the steps will read it
        raise OSError(f"cannot read {reference} here")

    monkeypatch.setattr("components.data.spec.load_dataset_spec", unreadable)
    vertex = ["--registry", "vertex", "--project", "p", "--image", REGISTRY_IMAGE]
    status = main(["compile", "--out", str(tmp_path / "p.yaml"), *vertex, *flags])
    if refused is None:
        assert status == 0
    else:
        assert status == 2 and capsys.readouterr().err.startswith(f"ranker compile: {refused}, which Vertex AI")


@pytest.mark.parametrize(
    ("serving_image", "refused"),
    [
        ("serve:1", True),
        ("me/serve:1", True),  # Docker Hub: a pipeline step may pull it, a Vertex AI endpoint cannot
        ("ghcr.io/me/serve:1", True),
        ("eu.gcr.io/p/serve:1", False),
        ("us-docker.pkg.dev/p/r/serve:1", False),
    ],
)
def test_a_vertex_serving_image_must_be_in_a_google_registry(serving_image, refused, tmp_path, capsys):
    flags = ["--registry", "vertex", "--project", "p", "--image", REGISTRY_IMAGE, "--serving-image", serving_image]
    status = main(["compile", "--out", str(tmp_path / "p.yaml"), *flags])
    if refused:
        assert status == 2 and capsys.readouterr().err.startswith(
            f"ranker compile: --serving-image {serving_image!r} is not in Artifact Registry or Container Registry"
        )
    else:
        assert status == 0


@pytest.mark.parametrize("command", ["compile", "submit"])
def test_an_image_without_a_registry_is_refused_for_vertex(command, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("RANKER_IMAGE", raising=False)
    # refused before the spec is read: a gs:// spec without credentials retries for minutes
    specs_read = []
    monkeypatch.setattr("components.data.spec.load_dataset_spec", specs_read.append)
    argv = [command, "--registry", "vertex", "--project", "p", "--dataset-spec", "gs://bucket/spec.yaml"]
    where = ["--out", str(tmp_path / "p.yaml")] if command == "compile" else ["--pipeline-root", "gs://bucket/runs"]
    assert main([*argv, *where]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ranker {command}: --image 'mmoe-ranker:latest' names no registry")
    assert "europe-west4-docker.pkg.dev/PROJECT/REPOSITORY/mmoe-ranker:TAG" in err
    assert specs_read == []


def _no_step_may_run(*_args, **_kwargs):
    raise AssertionError("a step ran although a setting was wrong")


@pytest.mark.parametrize("command", ["run", "compile", "submit"])
@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--model-config", '{"gate_temprature": 2}', "TrainerConfig: unknown key 'gate_temprature'"),
        ("--model-config", '{"epochs": "two"}', "TrainerConfig: epochs: Input should be a valid integer"),
        ("--baseline-config", '{"num_leafs": 7}', "BaselineConfig: unknown key 'num_leafs'"),
        ("--eval-config", '{"tolerance": "high"}', "EvaluationConfig: tolerance: Input should be a valid number"),
    ],
)
def test_a_wrong_step_setting_is_refused_before_any_step_runs(
    command, flag, value, message, tmp_path, monkeypatch, capsys
):
    import pipelines.compile_cli
    import pipelines.local_run
    import pipelines.remote

    monkeypatch.setattr(pipelines.local_run, "run_locally", _no_step_may_run)
    monkeypatch.setattr(pipelines.compile_cli, "compile_pipeline", _no_step_may_run)
    monkeypatch.setattr(pipelines.remote, "submit_run", _no_step_may_run)
    where = {"run": ["--work-dir", str(tmp_path)], "compile": ["--out", str(tmp_path / "p.yaml")], "submit": []}
    with pytest.raises(SystemExit) as exited:
        main([command, *where[command], flag, value])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ranker {command}: {flag}: {message}") and err.count("\n") == 1


def test_a_settings_file_sits_under_the_environment_and_the_flags(tmp_path, monkeypatch):
    file = tmp_path / "run.yaml"
    file.write_text("n_impressions: 20000\nseed: 3\ndocker: true\nmodel_config: {epochs: 1}\n")
    from_file = PipelineSettings.from_env({}, settings_file=str(file))
    assert (from_file.n_impressions, from_file.seed, from_file.docker, from_file.trainer.epochs) == (20000, 3, True, 1)
    environ = {"RANKER_SEED": "5", "RANKER_SETTINGS": str(file)}
    assert PipelineSettings.from_env(environ).seed == 5  # the environment wins over the file
    assert PipelineSettings.from_env(environ, seed=9).seed == 9  # a flag wins over both
    monkeypatch.setenv("RANKER_SEED", "5")
    args = _parse("run", ["--settings", str(file), "--n-impressions", "1000"])
    settings = PipelineSettings.from_args(args)
    assert (settings.n_impressions, settings.seed, settings.docker) == (1000, 5, True)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("n_impresions: 5\n", "unknown key 'n_impresions' (did you mean 'n_impressions'?)"),
        ("model_name: foo\n", "'model_name' is a registry setting, which is not read from --settings"),
        ("- 1\n- 2\n", "must map settings to values, not a list"),
        ("seed: [1\n", "not valid YAML or JSON"),
        ("docker: maybe\n", "run.yaml: docker='maybe' is not a boolean"),
        ("n_impressions: many\n", "run.yaml: n_impressions='many' is not a valid int"),
        (
            'model_config: {"gate_temprature": 2}\n',
            "run.yaml: model_config: TrainerConfig: unknown key 'gate_temprature'",
        ),
        ("model_config: {epochs: abc}\n", "run.yaml: model_config: TrainerConfig: epochs: Input should be"),
        ("eval_config: {primary_task: nope}\n", "run.yaml: eval_config: primary_task 'nope' is not a target"),
        ("seed: -1\n", "run.yaml: seed: seed must be 0 or more (it seeds the simulator), not -1"),
        ("step_memory: lots\n", "run.yaml: step_memory: step_memory 'lots' is not a memory quantity"),
        ("labels: Team=x\n", "run.yaml: labels: label 'Team=x': the key 'Team' must start with a lowercase letter"),
    ],
)
def test_a_bad_settings_file_is_refused_before_any_step_runs(text, message, tmp_path, monkeypatch, capsys):
    import pipelines.local_run

    monkeypatch.setattr(pipelines.local_run, "run_locally", _no_step_may_run)
    file = tmp_path / "run.yaml"
    file.write_text(text)
    with pytest.raises(SystemExit) as exited:
        main(["run", "--work-dir", str(tmp_path), "--settings", str(file)])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ranker run: --settings {file}: ") and message in err and err.count("\n") == 1


def test_a_step_configuration_in_the_settings_file_is_merged_key_by_key(tmp_path, monkeypatch):
    """The file's mapping beat a step variable (RANKER_TRAIN_LEARNING_RATE), and a flag replaced it whole: its
    other keys were dropped without a word."""
    file = tmp_path / "run.yaml"
    file.write_text("model_config: {epochs: 2, learning_rate: 0.005, dropout: 0.2}\n")
    (tmp_path / "mc.json").write_text('{"epochs": 4, "learning_rate": 0.009}')
    monkeypatch.setenv("RANKER_TRAIN_LEARNING_RATE", "0.007")

    def trainer(*flags: str):
        args = parse_run_flags(["--work-dir", str(tmp_path), "--settings", str(file), *flags])
        config = PipelineSettings.from_args(args).trainer
        return config.epochs, config.learning_rate, config.dropout

    assert trainer() == (2, 0.007, 0.2)  # the variable over the file
    assert trainer("--model-config", '{"epochs": 1}') == (1, 0.007, 0.2)  # the flag over both, key by key
    assert trainer("--model-config", '{"learning_rate": 0.001}') == (2, 0.001, 0.2)
    assert trainer("--model-config", f"@{tmp_path / 'mc.json'}") == (4, 0.007, 0.2)  # a file flag: a file
    file.write_text("model_config: {epochs: many}\n")  # an error about the file's key names the file too
    with pytest.raises(ValueError, match=re.escape(f"--model-config (over --settings {file}: model_config): ")):
        trainer("--model-config", '{"seed": 1}')


def test_a_bad_step_config_names_where_it_came_from(tmp_path, monkeypatch, capsys):
    import pipelines.local_run

    monkeypatch.setattr(pipelines.local_run, "run_locally", _no_step_may_run)
    file = tmp_path / "run.yaml"
    file.write_text("model_config: {epochs: 2}\n")
    monkeypatch.setenv("RANKER_MODEL_CONFIG", '{"epochs": "abc"}')  # the environment wins over the file
    with pytest.raises(SystemExit):
        main(["run", "--work-dir", str(tmp_path), "--settings", str(file)])
    over_file = f"(over --settings {file}: model_config): TrainerConfig: epochs: "
    assert capsys.readouterr().err.startswith(f"ranker run: RANKER_MODEL_CONFIG {over_file}")
    with pytest.raises(SystemExit):  # and the flag over both
        main(["run", "--work-dir", str(tmp_path), "--settings", str(file), "--model-config", '{"epochs": "x"}'])
    assert capsys.readouterr().err.startswith(f"ranker run: --model-config {over_file}")


def test_a_missing_settings_file_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["compile", "--out", str(tmp_path / "p.yaml"), "--settings", str(tmp_path / "nope.yaml")])
    assert exited.value.code == 2
    assert capsys.readouterr().err == f"ranker compile: --settings {tmp_path / 'nope.yaml'}: no such file\n"


def test_materialize_refuses_a_remote_feast_repo_and_creates_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["materialize", "--examples", str(tmp_path), "--feature-store", "gs://bucket/repo"]) == 2
    assert "gs://bucket/repo: the Feast repo is a local folder" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no folder named "gs:"
    assert main(["materialize", "--examples", str(tmp_path), "--feature-store", str(tmp_path / "repo")]) == 2
    assert f"no entity snapshot at {tmp_path}/entities/snapshot.json" in capsys.readouterr().err


def test_compile_takes_the_identity_network_and_key_a_custom_training_job_is_compiled_with(tmp_path):
    flags = ["--registry", "vertex", "--project", "p", "--image", REGISTRY_IMAGE, "--training-backend", "custom-job"]
    where = {
        "--service-account": "pipelines@p.iam.gserviceaccount.com",
        "--network": "projects/1/global/networks/ranker",
        "--encryption-key": "projects/p/locations/europe-west4/keyRings/r/cryptoKeys/k",
    }
    out = tmp_path / "p.yaml"
    assert main(["compile", "--out", str(out), *flags, *[word for pair in where.items() for word in pair]]) == 0

    job = yaml.safe_load(out.read_text())["components"]["comp-train-mmoe"]["inputDefinitions"]["parameters"]
    assert job["service_account"]["defaultValue"] == where["--service-account"]  # no --training-service-account
    assert job["network"]["defaultValue"] == where["--network"]
    assert job["encryption_spec_key_name"]["defaultValue"] == where["--encryption-key"]


def test_compile_refuses_custom_job_flags_without_a_custom_training_job(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RANKER_NETWORK", "projects/1/global/networks/n")  # a submit's variable: not compile's to refuse
    out = ["--out", str(tmp_path / "p.yaml")]
    assert main(["compile", *out]) == 0
    assert main(["compile", *out, "--network", "projects/1/global/networks/n", "--service-account", "a@b"]) == 2
    assert capsys.readouterr().err.startswith(
        "ranker compile: --service-account, --network: compiled into a Vertex AI custom training job only"
    )


@pytest.mark.parametrize(
    ("flags", "refused"),
    [
        (["--labels", "team=ranking"], "--labels"),
        (["--network", "projects/1/global/networks/n"], "--network"),
        (["--encryption-key", "k", "--labels", "a=b"], "--encryption-key, --labels"),
    ],
)
def test_a_kfp_host_refuses_the_vertex_settings_it_would_drop(flags, refused, capsys, monkeypatch):
    monkeypatch.setattr("pipelines.remote._kfp_client", _no_step_may_run)  # refused before any call to the host
    argv = ["submit", "--kfp-host", "http://kfp:8888", "--image", REGISTRY_IMAGE, "--tracking-uri", "http://mlflow"]
    with pytest.raises(SystemExit) as exited:
        main([*argv, *flags])
    assert exited.value.code == 2
    assert capsys.readouterr().err.startswith(
        f"ranker submit: {refused}: Vertex AI settings, which a Kubeflow Pipelines host (--kfp-host) does not take"
    )
    # a Vertex AI custom training job launched from the KFP run takes the network and key it is compiled with
    custom_job = PipelineSettings(
        kfp_host="http://kfp:8888", training_backend="custom-job", network="n", encryption_key="k"
    )
    assert custom_job.network == "n"
