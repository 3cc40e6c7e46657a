"""Compile, submit and schedule: the real kfp / aiplatform clients against faked HTTP transports."""

import argparse
import json
import re

import pytest
import yaml
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform

from components.registry.core import RegistryConfig
from pipelines import compile_cli, remote, schedule_cli, submit_cli
from pipelines.config import PipelineSettings
from ranker_core.cli_support import InvalidValueError, UserError
from tests.pipelines.fake_kfp_api import FakeKfpApi
from tests.tracking.fake_metadata_api import FakeExperimentsApi

SERVING_IMAGE = "europe-west4-docker.pkg.dev/my-project/ranker/mmoe-ranker:1"
VERTEX = RegistryConfig(backend="vertex", project="my-project", location="europe-west4", serving_image=SERVING_IMAGE)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    settings = PipelineSettings(
        train_accelerator="NVIDIA_TESLA_T4", train_accelerator_count=2, registry=VERTEX, image=SERVING_IMAGE
    )
    return compile_cli.compile_pipeline(settings, tmp_path_factory.mktemp("compiled") / "pipeline.yaml")


@pytest.fixture
def vertex_api():
    with FakeExperimentsApi() as fake:
        aiplatform.init(
            project="my-project", location="europe-west4", api_transport="rest", credentials=AnonymousCredentials()
        )
        yield fake
    aiplatform.init(api_transport="grpc")


def vertex_settings(**overrides) -> PipelineSettings:
    values = {
        "pipeline_root": "gs://bucket/runs",
        "service_account": "runner@my-project.iam.gserviceaccount.com",
        "network": "projects/123/global/networks/vpc",
        "encryption_key": "projects/my-project/locations/europe-west4/keyRings/r/cryptoKeys/k",
        "labels": "team=ranking,env=test",
        "registry": VERTEX,
        **overrides,
    }
    return PipelineSettings(**values)


def dag_tasks(spec: dict) -> dict:
    """The training DAG's tasks in a compiled pipeline (inside the exit handler that closes its MLflow run)."""
    return spec["components"]["comp-mmoe-ranker"]["dag"]["tasks"]


def test_the_compiled_pipeline_declares_parameters_resources_and_the_gate(template):
    spec = yaml.safe_load(template.read_text())
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert parameters["held_out_module"]["defaultValue"] == "shop_page"
    assert parameters["registry"]["defaultValue"] == "vertex"
    assert {"data_uri", "dataset_spec", "model_config_json", "baseline_config_json", "eval_config_json"} <= set(
        parameters
    )
    executors = spec["deploymentSpec"]["executors"]
    training = executors["exec-train-mmoe"]["container"]["resources"]
    assert training["accelerator"]["resourceType"] == "NVIDIA_TESLA_T4"
    assert training["accelerator"]["resourceCount"] == "2"
    assert training["resourceCpuLimit"] == "4"
    assert executors["exec-evaluate"]["container"]["resources"]["resourceMemoryLimit"] == "8G"
    tasks = dag_tasks(spec)
    (gate,) = [task for task in tasks.values() if "blessing-verdict" in task.get("dependentTasks", [])]
    assert "blessing-verdict-Output" in gate["triggerPolicy"]["condition"]
    assert tasks["resolve-champion"]["cachingOptions"] == {}  # caching off for the registry lookup
    assert tasks["evaluate"]["cachingOptions"] == {"enableCache": True}


def test_the_compiled_dag_runs_inside_an_exit_handler_that_closes_its_mlflow_run(template):
    spec = yaml.safe_load(template.read_text())

    root = spec["root"]["dag"]["tasks"]
    assert set(root) == {"close-tracking", "exit-handler-1"}
    close = root["close-tracking"]
    assert close["dependentTasks"] == ["exit-handler-1"]
    assert close["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"  # runs when a step failed too
    assert close["inputs"]["parameters"]["status"] == {"taskFinalStatus": {"producerTask": "exit-handler-1"}}
    run_name = {"runtimeValue": {"constant": "{{$.pipeline_job_name}}"}}
    assert close["inputs"]["parameters"]["pipeline_run_id"] == run_name
    assert close["cachingOptions"] == {}
    handler = spec["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    assert [task["componentRef"]["name"] for task in handler.values()] == ["comp-mmoe-ranker"]
    start = spec["components"]["comp-mmoe-ranker"]["dag"]["tasks"]["start-tracking"]
    assert start["inputs"]["parameters"]["pipeline_run_id"] == run_name  # the name the exit handler finds it by
    assert set(spec["root"]["inputDefinitions"]["parameters"]) == set(
        spec["components"]["comp-mmoe-ranker"]["inputDefinitions"]["parameters"]
    )


def test_the_tune_step_is_in_the_dag_only_with_trials_and_feeds_training_its_choice(template, tmp_path):
    tasks = dag_tasks(yaml.safe_load(template.read_text()))
    assert "tune-mmoe" not in tasks
    given = tasks["train-mmoe"]["inputs"]["parameters"]["config_json"]
    assert given == {"componentInputParameter": "model_config_json"}
    settings = PipelineSettings(tune_config='{"trials": 4, "budget_seconds": 600}', train_cpu="8", registry=VERTEX)
    spec = yaml.safe_load(compile_cli.compile_pipeline(settings, tmp_path / "p.yaml").read_text())
    tasks = dag_tasks(spec)
    assert tasks["tune-mmoe"]["inputs"]["parameters"]["tuning_json"] == {"componentInputParameter": "tune_config_json"}
    chosen = tasks["train-mmoe"]["inputs"]["parameters"]["config_json"]["taskOutputParameter"]
    assert chosen == {"outputParameterKey": "Output", "producerTask": "tune-mmoe"}
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert json.loads(parameters["tune_config_json"]["defaultValue"]) == {"trials": 4, "budget_seconds": 600.0}
    tuning = spec["deploymentSpec"]["executors"]["exec-tune-mmoe"]["container"]["resources"]
    assert tuning["resourceCpuLimit"] == "8"  # the training resources
    with pytest.raises(ValueError, match=r"--tune-config: .*space names \['lr'\]"):
        PipelineSettings(tune_config='{"trials": 2, "space": {"lr": {"log": [0.001, 0.01]}}}')


def test_training_compiles_as_a_vertex_custom_job(tmp_path):
    settings = PipelineSettings(
        training_backend="custom-job", train_machine_type="n1-highmem-16", registry=VERTEX,
        service_account="pipelines@p.iam.gserviceaccount.com",
        training_service_account="training@p.iam.gserviceaccount.com",
    )  # fmt: skip
    spec = yaml.safe_load(compile_cli.compile_pipeline(settings, tmp_path / "p.yaml").read_text())

    train = spec["components"]["comp-train-mmoe"]["inputDefinitions"]["parameters"]
    pools = train["worker_pool_specs"]["defaultValue"]
    assert pools[0]["machine_spec"]["machine_type"] == "n1-highmem-16"
    assert train["service_account"]["defaultValue"] == "training@p.iam.gserviceaccount.com"  # the job's own identity
    assert "google_cloud_pipeline_components" in str(spec["deploymentSpec"]["executors"]["exec-train-mmoe"])


def test_the_compiled_yaml_loads_and_builds_a_vertex_pipeline_job(template):
    from kfp import components

    loaded = components.load_component_from_file(str(template))
    assert loaded.name == "mmoe-ranker"
    job = aiplatform.PipelineJob(
        display_name="mmoe-ranker",
        template_path=str(template),
        pipeline_root="gs://bucket/runs",
        parameter_values=vertex_settings().pipeline_arguments(local=False),
        project="my-project",
        location="europe-west4",
        credentials=AnonymousCredentials(),
    )
    runtime = job._gca_resource.runtime_config
    assert runtime.gcs_output_directory == "gs://bucket/runs"
    assert runtime.parameter_values["registry"] == "vertex"


def test_submit_to_vertex_sends_one_create_pipeline_job_request(vertex_api, template):
    name = remote.submit_run(vertex_settings(), template, credentials=AnonymousCredentials())

    (create,) = vertex_api.calls("POST", r"/pipelineJobs$")
    body = create.json
    assert name.startswith("projects/my-project/locations/europe-west4/pipelineJobs/mmoe-ranker-")
    assert body["runtimeConfig"]["gcsOutputDirectory"] == "gs://bucket/runs"
    # the settings given (here the registry's); the rest keep the template's compiled defaults
    assert body["runtimeConfig"]["parameterValues"] == {
        "registry": "vertex", "project": "my-project", "location": "europe-west4", "serving_image": SERVING_IMAGE
    }  # fmt: skip
    assert body["serviceAccount"] == "runner@my-project.iam.gserviceaccount.com"
    assert body["network"] == "projects/123/global/networks/vpc"
    assert body["encryptionSpec"]["kmsKeyName"].endswith("cryptoKeys/k")
    assert body["labels"]["team"] == "ranking"
    assert body["pipelineSpec"]["pipelineInfo"]["name"] == "mmoe-ranker"


def test_an_unreachable_vertex_ai_is_one_line_naming_the_cause(vertex_api, template, monkeypatch, capsys):
    from google.api_core.exceptions import RetryError, ServiceUnavailable

    from pipelines.cli import main

    def unreachable(*_args, **_kwargs):  # what aiplatform raises when DNS fails for the region's endpoint
        cause = RetryError("Timeout of 120.0s exceeded", ServiceUnavailable("cannot resolve the endpoint"))
        raise RuntimeError("Experiment mmoe-ranker could not be found or created. PipelineJob not created") from cause

    monkeypatch.setattr(aiplatform.PipelineJob, "submit", unreachable)
    where = ["--project", "my-project", "--location", "europe-west4", "--pipeline-root", "gs://bucket/runs"]
    assert main(["submit", "--template", str(template), "--registry", "vertex", *where]) == 2

    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "ranker submit: Vertex AI did not take the run: Experiment mmoe-ranker could not be found or created. "
        "PipelineJob not created (Timeout of 120.0s exceeded, last exception: 503 cannot resolve the endpoint)"
    ]


def test_a_remote_run_refuses_the_local_sqlite_registry(template):
    with pytest.raises(ValueError, match="cannot reach the local MLflow SQLite store"):
        remote.submit_run(vertex_settings(registry=RegistryConfig(backend="mlflow", project="p")), template)
    with pytest.raises(ValueError, match="gs:// pipeline root"):
        remote.submit_run(vertex_settings(pipeline_root=""), template)


def test_vertex_schedules_are_created_listed_paused_resumed_and_deleted(vertex_api, template):
    settings = vertex_settings()
    created = remote.create_schedule(settings, template, "0 3 * * 1", "weekly", credentials=AnonymousCredentials())

    body = vertex_api.calls("POST", r"/schedules$")[0].json
    assert body["cron"] == "0 3 * * 1"
    assert body["displayName"] == "weekly"
    assert body["createPipelineJobRequest"]["pipelineJob"]["serviceAccount"].startswith("runner@")
    assert [info.name for info in remote.list_schedules(settings)] == [created.name]
    remote.change_schedule(settings, created.name, "pause")
    assert vertex_api.schedules[created.name]["state"] == "PAUSED"
    remote.change_schedule(settings, created.name, "resume")
    assert vertex_api.schedules[created.name]["state"] == "ACTIVE"
    remote.change_schedule(settings, created.name, "delete")
    assert vertex_api.schedules == {}
    with pytest.raises(UserError, match=f"Vertex AI did not pause schedule {created.name}: 404"):
        remote.change_schedule(settings, created.name, "pause")  # one line, not the SDK's traceback


def test_vertex_schedules_without_a_project_are_refused_in_one_line_naming_the_flag():
    settings = vertex_settings(registry=RegistryConfig())  # the default, local registry: no project
    message = "Vertex AI needs a project: set --project or GOOGLE_CLOUD_PROJECT"
    with pytest.raises(InvalidValueError, match=message):
        remote.list_schedules(settings)
    with pytest.raises(InvalidValueError, match=message):
        remote.change_schedule(settings, "projects/1/locations/us-central1/schedules/2", "pause")


def test_a_vertex_run_is_recorded_in_the_experiment_named_after_the_model(vertex_api, template):
    name = remote.submit_run(vertex_settings(), template, credentials=AnonymousCredentials())

    store = "projects/my-project/locations/europe-west4/metadataStores/default"
    experiment = vertex_api.contexts[f"{store}/contexts/mmoe-ranker"]
    assert experiment["schemaTitle"] == "system.Experiment"
    assert vertex_api.children[experiment["name"]] == [f"{store}/contexts/{name.rsplit('/', 1)[-1]}"]


def test_submit_to_a_kfp_host_creates_a_run_with_the_parameters(template):
    settings = PipelineSettings(kfp_host="http://kfp.test", registry=RegistryConfig(tracking_uri="http://mlflow:5000"))
    with FakeKfpApi() as api:
        run_id = remote.submit_run(settings, template)

    assert run_id == "run-1"
    body = api.calls("POST", r"/runs$")[0].json
    assert body["runtime_config"]["parameters"]["tracking_uri"] == "http://mlflow:5000"
    assert body["pipeline_spec"]["pipelineInfo"]["name"] == "mmoe-ranker"
    assert "enable_caching" not in str(body.get("pipeline_spec", {}).get("root", {}).get("dag", {}).get("tasks", {}))


def test_kfp_recurring_runs_use_a_six_field_cron_and_can_be_paused_and_deleted(template):
    settings = PipelineSettings(kfp_host="http://kfp.test", registry=RegistryConfig(tracking_uri="http://mlflow:5000"))
    with FakeKfpApi() as api:
        created = remote.create_schedule(settings, template, "0 3 * * 1", "weekly")
        body = api.calls("POST", r"/recurringruns$")[0].json
        assert body["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * 1"
        assert [info.name for info in remote.list_schedules(settings)] == [created.name]
        remote.change_schedule(settings, created.name, "pause")
        assert api.recurring_runs[created.name]["status"] == "DISABLED"
        remote.change_schedule(settings, created.name, "delete")
        assert api.recurring_runs == {}


def test_cron_conversion_rejects_malformed_expressions():
    assert remote.kfp_cron("0 0 3 * * 1") == "0 0 3 * * 1"
    assert remote.kfp_cron("TZ=Europe/Paris 0 3 * * 1") == "TZ=Europe/Paris 0 0 3 * * 1"  # the zone is no field
    with pytest.raises(InvalidValueError, match="must have 5 fields"):
        remote.kfp_cron("every monday")
    with pytest.raises(InvalidValueError, match="must have 5 fields"):
        remote.kfp_cron("TZ=UTC 3 * * 1")


def test_vertex_takes_a_five_field_cron_with_an_optional_time_zone():
    assert remote.vertex_cron("0 3 * * 1") == "0 3 * * 1"
    assert remote.vertex_cron(" TZ=Europe/Paris  0 3 * * MON ") == "TZ=Europe/Paris 0 3 * * MON"
    assert remote.vertex_cron("CRON_TZ=UTC */15 8-18 ? JAN-MAR 1#2") == "CRON_TZ=UTC */15 8-18 ? JAN-MAR 1#2"
    for cron in ("bad", "0 0 3 * * 1", "TZ=UTC 3 * * 1", ""):
        with pytest.raises(InvalidValueError, match="must have 5 fields"):
            remote.vertex_cron(cron)
    with pytest.raises(InvalidValueError, match="'1;' is not a cron field"):
        remote.kfp_cron("0 3 * * 1;")


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("61 3 * * 1", "minute field '61': 61 is out of range 0-59"),
        ("0 24 * * *", "hour field '24': 24 is out of range 0-23"),
        ("0 3 0 * *", "day field '0': 0 is out of range 1-31"),
        ("0 3 * 1-13 *", "month field '1-13': 13 is out of range 1-12"),
        ("0 3 * * 1,8", "weekday field '1,8': 8 is out of range 0-7"),
        ("*/0 3 * * *", "minute field '*/0': step '0' is not a positive number"),
        ("0 3 * * FRY", "weekday field 'FRY': 'FRY' is not a value it takes (SUN-SAT or 0-7)"),
        ("0 3 * * 1W", "weekday field '1W': '1W' is not a value it takes"),
        ("L 3 * * *", "minute field 'L': 'L' is not a value it takes (0-59)"),
    ],
)
def test_a_cron_value_out_of_its_field_is_refused_naming_the_field(cron, message):
    """The scheduler would refuse these only once credentials, a compile and a call had been spent."""
    with pytest.raises(InvalidValueError, match=re.escape(f"cron {cron!r}: {message}")):
        remote.vertex_cron(cron)
    with pytest.raises(InvalidValueError, match=re.escape(message)):
        remote.kfp_cron(cron)
    with pytest.raises(InvalidValueError, match=re.escape("second field '60': 60 is out of range 0-59")):
        remote.kfp_cron("60 0 3 * * 1")
    assert remote.vertex_cron("0 3 L,15W jan-mar 5L") == "0 3 L,15W jan-mar 5L"


VERTEX_CRON = "must have 5 fields (minute hour day month weekday), optionally after a time zone, e.g. '0 3 * * 1'"
KFP_CRON = "must have 5 fields (minute hour day month weekday) or 6 (seconds first)"


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (["--registry", "vertex", "--project", "my-project", "--pipeline-root", "gs://b/runs"], VERTEX_CRON),
        (["--kfp-host", "http://127.0.0.1:9", "--tracking-uri", "http://mlflow:5000"], KFP_CRON),
    ],
)
def test_a_bad_cron_is_refused_before_compiling_or_asking_for_credentials(target, message, monkeypatch, capsys):
    from pipelines.cli import main

    def no_call(*_args, **_kwargs):
        raise AssertionError("compiled or called the scheduler before checking the cron")

    monkeypatch.setattr(submit_cli, "template_path", no_call)
    monkeypatch.setattr(remote, "_vertex_job", no_call)
    monkeypatch.setattr(remote, "_kfp_client", no_call)
    image = ["--image", "europe-west4-docker.pkg.dev/p/r/mmoe-ranker:1"]
    assert main(["schedule", "create", "--cron", "bad", *image, *target]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ranker schedule: cron 'bad' {message}") and err.count("\n") == 1


def test_a_kfp_host_that_does_not_answer_or_a_bad_cron_is_one_line_before_any_call(tmp_path, template, capsys):
    from pipelines.cli import main

    host = ["--kfp-host", "http://127.0.0.1:9", "--tracking-uri", "http://mlflow:5000"]
    assert main(["schedule", "list", *host]) == 2
    assert "--kfp-host http://127.0.0.1:9: no Kubeflow Pipelines API answers" in capsys.readouterr().err
    create = ["schedule", "create", "--image", "europe-west4-docker.pkg.dev/p/r/mmoe-ranker:1", *host]
    assert main([*create, "--cron", "every monday"]) == 2  # refused before the host is asked anything
    assert "cron 'every monday' must have 5 fields" in capsys.readouterr().err
    assert main(["submit", "--template", str(tmp_path / "nosuch.yaml"), *host]) == 2
    assert f"--template {tmp_path / 'nosuch.yaml'}: no such file" in capsys.readouterr().err


def test_the_clis_parse_their_flags_and_env(monkeypatch, tmp_path, template, vertex_api, capsys):
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "my-project")
    monkeypatch.setenv("RANKER_PIPELINE_ROOT", "gs://bucket/runs")
    monkeypatch.setenv("RANKER_IMAGE", "europe-west4-docker.pkg.dev/my-project/ranker/mmoe-ranker:1")
    parser = argparse.ArgumentParser()
    submit_cli.add_arguments(parser)
    args = parser.parse_args(["--template", str(template), "--registry", "vertex", "--location", "europe-west4"])
    assert submit_cli.main(args) == 0
    assert "submitted projects/my-project/locations/europe-west4/pipelineJobs/" in capsys.readouterr().out

    parser = argparse.ArgumentParser()
    schedule_cli.add_arguments(parser)
    args = parser.parse_args(["list", "--location", "europe-west4"])
    assert schedule_cli.main(args) == 0

    parser = argparse.ArgumentParser()
    compile_cli.add_arguments(parser)
    out = tmp_path / "out.yaml"
    assert compile_cli.main(parser.parse_args(["--out", str(out), "--n-impressions", "1234"])) == 0
    parameters = yaml.safe_load(out.read_text())["root"]["inputDefinitions"]["parameters"]
    assert parameters["n_impressions"]["defaultValue"] == 1234


def test_a_template_keeps_its_compiled_settings_where_submit_and_schedule_are_not_given_them(
    vertex_api, tmp_path, monkeypatch
):
    """``submit --template`` / ``schedule create --template`` (as infra/roll_schedule.sh runs them) in an environment
    without the compile's settings: the run must read the compiled data, spec and step configurations."""
    for variable in ("RANKER_DATA_URI", "RANKER_DATASET_SPEC", "RANKER_SEED", "RANKER_TUNE_CONFIG", "RANKER_SETTINGS"):
        monkeypatch.delenv(variable, raising=False)
    compiled = tmp_path / "pipeline.yaml"
    parser = argparse.ArgumentParser()
    compile_cli.add_arguments(parser)
    compile_flags = [
        "--out", str(compiled), "--data-uri", "gs://bucket/logs/*.parquet", "--dataset-spec", "kuairand",
        "--tune-config", '{"trials": 4}', "--registry", "vertex", "--project", "my-project",
        "--serving-image", "europe-west4-docker.pkg.dev/my-project/ranker/serve:1",
        "--image", "europe-west4-docker.pkg.dev/my-project/ranker/mmoe-ranker:1",
    ]  # fmt: skip
    assert compile_cli.main(parser.parse_args(compile_flags)) == 0
    parser = argparse.ArgumentParser()
    submit_cli.add_arguments(parser)
    where = ["--registry", "vertex", "--project", "my-project", "--location", "europe-west4", "--seed", "3"]
    args = parser.parse_args(["--template", str(compiled), "--pipeline-root", "gs://bucket/runs", *where])

    assert submit_cli.main(args) == 0

    (create,) = vertex_api.calls("POST", r"/pipelineJobs$")
    sent = create.json["runtimeConfig"]["parameterValues"]
    assert sent == {"seed": 3, "registry": "vertex", "project": "my-project", "location": "europe-west4"}
    defaults = create.json["pipelineSpec"]["root"]["inputDefinitions"]["parameters"]
    assert defaults["dataset_spec"]["defaultValue"] == "kuairand"
    assert json.loads(defaults["tune_config_json"]["defaultValue"]) == {"trials": 4}


def _compiled(tmp_path, *flags: str):
    """A training pipeline compiled for Vertex AI with ``flags`` by ``ranker compile``'s own code."""
    compiled = tmp_path / "pipeline.yaml"
    parser = argparse.ArgumentParser()
    compile_cli.add_arguments(parser)
    vertex = ["--registry", "vertex", "--project", "my-project", "--image", SERVING_IMAGE]
    assert compile_cli.main(parser.parse_args(["--out", str(compiled), *vertex, *flags])) == 0
    return compiled


def _submitted_settings(template, *flags: str) -> PipelineSettings:
    parser = argparse.ArgumentParser()
    submit_cli.add_arguments(parser)
    where = ["--pipeline-root", "gs://bucket/runs", "--registry", "vertex", "--project", "my-project"]
    return PipelineSettings.from_args_or_exit(
        parser.parse_args(["--template", str(template), *where, *flags]), "submit"
    )


def test_settings_given_with_a_template_are_checked_against_its_compiled_spec(tmp_path, monkeypatch, capsys):
    for variable in ("RANKER_DATA_URI", "RANKER_DATASET_SPEC", "RANKER_HELD_OUT_MODULE", "RANKER_SETTINGS"):
        monkeypatch.delenv(variable, raising=False)
    kuairand = _compiled(tmp_path, "--data-uri", "gs://bucket/kuairand/*.csv", "--dataset-spec", "kuairand")

    # long_view is a KuaiRand task, and tab 2 a module the simulator does not have: both fine for this template
    settings = _submitted_settings(kuairand, "--eval-config", '{"primary_task": "long_view"}', "--held-out-module", "2")
    assert settings.remote_arguments(remote.compiled_defaults(kuairand)).keys() == {
        "eval_config_json", "held_out_module", "registry", "project"
    }  # fmt: skip
    with pytest.raises(SystemExit):
        _submitted_settings(kuairand, "--eval-config", '{"primary_task": "favorite"}')
    assert "primary_task 'favorite' is not a target of this data: click, long_view" in capsys.readouterr().err


def test_new_data_for_a_simulated_template_is_not_held_out_the_simulators_module_and_must_be_readable(tmp_path):
    simulated = _compiled(tmp_path)
    compiled = remote.compiled_defaults(simulated)
    assert compiled["held_out_module"] == "shop_page"

    sent = _submitted_settings(simulated, "--data-uri", "gs://bucket/logs/*.parquet").remote_arguments(compiled)
    assert (sent["data_uri"], sent["held_out_module"]) == ("gs://bucket/logs/*.parquet", "")
    held_out = _submitted_settings(simulated, "--data-uri", "gs://b/logs/", "--held-out-module", "search")
    assert held_out.remote_arguments(compiled)["held_out_module"] == "search"

    local = _submitted_settings(simulated, "--data-uri", "./logs.parquet")
    with pytest.raises(UserError, match=r"--data-uri '\./logs\.parquet' is a path of this machine"):
        local.remote_arguments(compiled)
    with pytest.raises(UserError, match="--serving-image 'me/serve:1' is not in Artifact Registry"):
        _submitted_settings(simulated, "--serving-image", "me/serve:1").remote_arguments(compiled)


def test_a_templates_own_spec_is_the_runs_to_read_and_a_malformed_template_is_one_line(tmp_path, capsys):
    compiled = tmp_path / "mounted.yaml"
    spec = yaml.safe_load(_compiled(tmp_path).read_text())
    spec["root"]["inputDefinitions"]["parameters"]["dataset_spec"]["defaultValue"] = "/mnt/specs/kuairand.yaml"
    compiled.write_text(yaml.safe_dump(spec))
    # a spec the cluster mounts (or a gs:// one, which would retry for minutes without credentials) is not read here
    assert _submitted_settings(compiled).dataset_spec == "/mnt/specs/kuairand.yaml"

    for text in ("root: [", "- a list\n- not a pipeline\n"):
        (tmp_path / "bad.yaml").write_text(text)
        with pytest.raises(SystemExit):
            _submitted_settings(tmp_path / "bad.yaml")
        err = capsys.readouterr().err
        assert err.startswith(f"ranker submit: --template {tmp_path / 'bad.yaml'}: not") and err.count("\n") == 1


def test_a_template_compiled_for_a_reachable_mlflow_needs_no_tracking_uri_at_submit(tmp_path):
    settings = PipelineSettings(registry=RegistryConfig(tracking_uri="http://mlflow:5000"))
    compiled = compile_cli.compile_pipeline(settings, tmp_path / "pipeline.yaml")
    assert PipelineSettings().remote_arguments(remote.compiled_defaults(compiled)) == {}
    with pytest.raises(InvalidValueError, match="cannot reach the local MLflow SQLite store"):
        PipelineSettings().remote_arguments({"registry": "mlflow", "tracking_uri": ""})


BATCH_PARAMETERS = {"candidates_uri": "bq://my-project.crm.email_candidates", "campaign": "email_digest"}


def batch_submit_args(*flags: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    submit_cli.add_arguments(parser)
    return parser.parse_args(
        ["--pipeline", "batch", "--parameters", json.dumps(BATCH_PARAMETERS), *flags,
         "--image", "europe-west4-docker.pkg.dev/my-project/ranker/mmoe-ranker:1"]
    )  # fmt: skip


def test_the_batch_pipeline_is_submitted_to_vertex_with_its_own_parameters(vertex_api, capsys):
    args = batch_submit_args(
        "--registry", "vertex", "--project", "my-project", "--location", "europe-west4",
        "--pipeline-root", "gs://bucket/runs",
    )  # fmt: skip

    assert submit_cli.main(args) == 0

    (create,) = vertex_api.calls("POST", r"/pipelineJobs$")
    body = create.json
    # the registry flags given reach the batch run's registry parameters (--parameters would win over them)
    registry = {"registry": "vertex", "project": "my-project", "location": "europe-west4"}
    assert body["runtimeConfig"]["parameterValues"] == BATCH_PARAMETERS | registry
    assert body["pipelineSpec"]["pipelineInfo"]["name"] == "mmoe-ranker-batch"
    assert body["displayName"] == "mmoe-ranker-batch"
    assert set(body["pipelineSpec"]["root"]["dag"]["tasks"]) == {"resolve-batch-model", "batch-rank"}
    assert "pipelineJobs/mmoe-ranker-batch-" in capsys.readouterr().out


def test_the_batch_pipeline_is_submitted_to_a_kfp_host(capsys):
    args = batch_submit_args("--kfp-host", "http://kfp.test", "--tracking-uri", "http://mlflow:5000")
    with FakeKfpApi() as api:
        assert submit_cli.main(args) == 0
        body = api.calls("POST", r"/runs$")[0].json

    assert body["runtime_config"]["parameters"] == BATCH_PARAMETERS | {"tracking_uri": "http://mlflow:5000"}
    assert body["pipeline_spec"]["pipelineInfo"]["name"] == "mmoe-ranker-batch"
    assert body["display_name"].startswith("mmoe-ranker-batch-")
    assert "submitted run-1" in capsys.readouterr().out


def test_a_batch_template_takes_the_registry_flags_given_and_its_parameters_win(tmp_path, vertex_api):
    batch = tmp_path / "batch.yaml"
    compile_cli.compile_named("batch", PipelineSettings(image=SERVING_IMAGE), batch)  # the local registry's defaults
    flags = ["--registry", "vertex", "--project", "my-project", "--location", "europe-west4"]
    parameters = json.dumps(BATCH_PARAMETERS | {"location": "us-central1"})
    parser = argparse.ArgumentParser()
    submit_cli.add_arguments(parser)
    where = ["--template", str(batch), "--pipeline-root", "gs://bucket/runs"]
    args = parser.parse_args(["--pipeline", "batch", "--parameters", parameters, *where, *flags])  # its own location

    assert (
        submit_cli.main(args) == 0
    )  # was refused: "cannot reach the local MLflow SQLite store: use --registry vertex"
    sent = vertex_api.calls("POST", r"/pipelineJobs$")[0].json["runtimeConfig"]["parameterValues"]
    assert sent == BATCH_PARAMETERS | {"registry": "vertex", "project": "my-project", "location": "us-central1"}


def test_a_template_of_the_other_pipeline_is_refused_before_any_call(tmp_path, template, vertex_api):
    """The batch pipeline's parameters sent to the training template (or the reverse) would be refused by the
    host at best; where they overlap (registry, model_name) the run would start with the wrong pipeline."""
    batch = tmp_path / "batch.yaml"
    compile_cli.compile_named("batch", PipelineSettings(image=SERVING_IMAGE), batch)
    settings = vertex_settings()
    with pytest.raises(InvalidValueError, match=r"is the 'mmoe-ranker' pipeline, not 'mmoe-ranker-batch': pass a"):
        remote.submit_run(
            settings, template, AnonymousCredentials(), BATCH_PARAMETERS, pipeline_name="mmoe-ranker-batch"
        )
    with pytest.raises(InvalidValueError, match=r"is the 'mmoe-ranker-batch' pipeline, not 'mmoe-ranker': submit it"):
        remote.create_schedule(settings, batch, "0 3 * * 1", "weekly", credentials=AnonymousCredentials())
    assert not vertex_api.calls("POST", r"/pipelineJobs$") and not vertex_api.calls("POST", r"/schedules$")


def test_submit_refuses_compile_time_flags_with_a_template_and_a_template_of_local_images(tmp_path, template, capsys):
    for flags in (["--image", SERVING_IMAGE], ["--train-cpu", "16", "--training-backend", "custom-job"]):
        with pytest.raises(SystemExit):
            _submitted_settings(template, *flags)
        assert "fixed when --template was compiled, so not taken with it" in capsys.readouterr().err
    local = compile_cli.compile_pipeline(PipelineSettings(), tmp_path / "local.yaml")  # for a local Docker engine
    args = argparse.Namespace(template=str(local), pipeline="training")
    with pytest.raises(InvalidValueError, match=r"its steps run 'mmoe-ranker:latest', which names no registry"):
        submit_cli.template_path(args, PipelineSettings(), str(tmp_path))


def test_a_vertex_schedule_refuses_an_experiment_it_could_not_record(template):
    settings = vertex_settings(experiment="weekly-runs")
    with pytest.raises(InvalidValueError, match="--experiment: a Vertex AI schedule's runs are not recorded"):
        remote.create_schedule(settings, template, "0 3 * * 1", "weekly", credentials=AnonymousCredentials())


def test_a_batch_run_that_would_read_the_local_mlflow_store_is_refused_unless_it_names_its_model(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with FakeKfpApi() as api:
        with pytest.raises(InvalidValueError, match="cannot reach the local MLflow SQLite store"):
            submit_cli.main(batch_submit_args("--kfp-host", "http://kfp.test"))
        assert not api.calls("POST", r"/runs$")

        parser = argparse.ArgumentParser()
        submit_cli.add_arguments(parser)
        named = {**BATCH_PARAMETERS, "model_uri": "gs://bucket/models/7"}
        image = "europe-west4-docker.pkg.dev/my-project/ranker/mmoe-ranker:1"
        flags = ["--parameters", json.dumps(named), "--kfp-host", "http://kfp.test", "--image", image]
        assert submit_cli.main(parser.parse_args(["--pipeline", "batch", *flags])) == 0
        assert api.calls("POST", r"/runs$")[0].json["runtime_config"]["parameters"] == named


def test_parameters_are_refused_for_the_training_pipeline(template):
    parser = argparse.ArgumentParser()
    submit_cli.add_arguments(parser)
    args = parser.parse_args(["--template", str(template), "--parameters", "{}", "--kfp-host", "http://kfp.test"])
    with pytest.raises(UserError, match="--parameters is for --pipeline batch"):
        submit_cli.main(args)
