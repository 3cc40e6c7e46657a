"""Pipeline settings: environment, flags, validation and the run's parameters."""

import argparse
import json
import re

import pytest

from pipelines import run_cli
from pipelines.config import GROUPS, OPTIONS, PipelineSettings, config_json, parse_labels


def parse_run_flags(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    run_cli.add_arguments(parser)
    return parser.parse_args(argv)


def test_defaults_simulate_with_a_held_out_module_and_a_local_registry(tmp_path):
    settings = PipelineSettings.from_env({"RANKER_WORK_DIR": str(tmp_path)})
    arguments = settings.pipeline_arguments()

    assert arguments["data_uri"] == ""
    assert arguments["held_out_module"] == "shop_page"
    assert arguments["registry"] == "mlflow"
    assert arguments["tracking_uri"] == f"sqlite:///{tmp_path}/mlflow.db"
    assert settings.pipeline_root_local == tmp_path / "pipeline_root"


def test_in_docker_the_local_registry_lives_in_the_mounted_pipeline_root(tmp_path):
    settings = PipelineSettings.from_env({"RANKER_WORK_DIR": str(tmp_path), "RANKER_DOCKER": "1"})
    assert settings.pipeline_arguments()["tracking_uri"] == f"sqlite:///{tmp_path}/pipeline_root/mlflow.db"
    explicit = PipelineSettings.from_env(
        {"RANKER_WORK_DIR": str(tmp_path), "RANKER_DOCKER": "1", "MLFLOW_TRACKING_URI": "http://mlflow:5000"}
    )
    assert explicit.pipeline_arguments()["tracking_uri"] == "http://mlflow:5000"


def test_a_users_data_holds_out_nothing_unless_asked():
    assert PipelineSettings(data_uri="logs/*.csv").effective_held_out_module == ""
    assert PipelineSettings(data_uri="logs/*.csv", held_out_module="search").effective_held_out_module == "search"
    assert PipelineSettings(held_out_module="").effective_held_out_module == ""


def test_flags_override_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RANKER_N_IMPRESSIONS", "5000")
    monkeypatch.setenv("RANKER_ENABLE_CACHING", "false")
    monkeypatch.setenv("RANKER_MODEL_NAME", "from-env")
    args = parse_run_flags(
        ["--n-impressions", "7000", "--work-dir", str(tmp_path), "--model-config", '{"epochs": 1}', "--deploy"]
    )
    settings = PipelineSettings.from_args(args)

    assert settings.n_impressions == 7000
    assert settings.enable_caching is False
    assert settings.deploy is True
    assert settings.registry.model_name == "from-env"
    assert settings.registry.work_dir == str(tmp_path)
    assert json.loads(settings.pipeline_arguments()["model_config_json"]) == {"epochs": 1}


def test_step_configurations_are_typed_and_name_the_bad_setting(tmp_path):
    path = tmp_path / "model.json"
    path.write_text('{"epochs": 3}')
    settings = PipelineSettings(model_config=f"@{path}", eval_config='{"ks": [5]}')
    assert (settings.trainer.epochs, settings.evaluation.ks, settings.baseline.num_leaves) == (3, (5,), 31)
    assert config_json(settings.trainer) == '{"epochs": 3}'
    with pytest.raises(ValueError, match="--model-config: TrainerConfig is not valid JSON"):
        PipelineSettings(model_config="{epochs: 3}")
    with pytest.raises(ValueError, match="--eval-config: EvaluationConfig must be a JSON object"):
        PipelineSettings(eval_config="[1, 2]")
    with pytest.raises(ValueError, match="--baseline-config: BaselineConfig: no JSON file at"):
        PipelineSettings(baseline_config="@/nowhere.json")


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("model_config", '{"gate_temprature": 2}', "--model-config: TrainerConfig: unknown key 'gate_temprature'"),
        ("model_config", '{"epochs": "many"}', "TrainerConfig: epochs: Input should be a valid integer"),
        ("baseline_config", '{"leaves": 3}', "--baseline-config: BaselineConfig: unknown key 'leaves'"),
        ("eval_config", '{"tolerence": 0.1}', "--eval-config: EvaluationConfig: unknown key 'tolerence'"),
    ],
)
def test_an_unknown_or_mistyped_step_setting_is_refused_when_built(flag, value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        PipelineSettings(**{flag: value})


def test_the_steps_get_what_was_checked_at_the_front_door(monkeypatch):
    monkeypatch.setenv("RANKER_TRAIN_EPOCHS", "4")
    arguments = PipelineSettings(model_config='{"seed": 1}').pipeline_arguments()
    assert json.loads(arguments["model_config_json"]) == {"epochs": 4, "seed": 1}


def test_a_tuning_space_value_the_model_config_refuses_is_refused_before_any_step():
    """ranker tune checked it before its first trial, but ranker run only when its tune step started."""
    space = '{"trials": 2, "space": {"dropout": {"uniform": [0, 1.5]}}}'
    with pytest.raises(ValueError, match=re.escape("--tune-config: tuning space['dropout'] value 1.5: TrainerConfig")):
        PipelineSettings(tune_config=space)
    with pytest.raises(ValueError, match=re.escape("tuning space['epochs'] value 0: ")):
        PipelineSettings(tune_config='{"trials": 2, "space": {"epochs": {"choice": [0, 2]}}}')
    PipelineSettings(tune_config='{"trials": 0, "space": {"epochs": {"choice": [0]}}}')  # no tuning: not checked


def test_an_eval_candidate_the_pipeline_does_not_have_is_refused_before_any_step():
    """It failed at the evaluate step, after extraction, training and the baseline."""
    with pytest.raises(ValueError, match=re.escape("--eval-config: candidate 'mmoee' is not a model of the pipeline")):
        PipelineSettings(eval_config='{"candidate": "mmoee"}')
    assert PipelineSettings(eval_config='{"candidate": "mmoe"}').evaluation.candidate == "mmoe"


def test_labels_and_other_values_are_checked():
    assert parse_labels("team=ranking, env=prod") == {"team": "ranking", "env": "prod"}
    assert parse_labels("équipe=café,empty=") == {"équipe": "café", "empty": ""}  # Google Cloud takes both
    assert parse_labels("日本=東京") == {"日本": "東京"}  # a caseless letter (\\p{Lo}) may start a key too
    with pytest.raises(ValueError, match="--labels: label 'team' is not key=value"):
        PipelineSettings(labels="team")
    with pytest.raises(ValueError, match="the key 'Team' must start with a lowercase letter"):
        PipelineSettings.from_env({"RANKER_LABELS": "Team=ranking"})
    for labels, problem in (
        ("team=X Y", "the value 'X Y' has 'X': only lowercase letters, digits, '_' and '-'"),
        ("team=a,team=b", "label 'team' is given twice"),
        ("k=" + "v" * 64, "the value is 64 characters, more than 63"),
        (",".join(f"k{i}=v" for i in range(65)), "65 labels, more than the 64"),
    ):
        with pytest.raises(ValueError, match=re.escape(problem)):
            parse_labels(labels)
    with pytest.raises(ValueError, match="training_backend"):
        PipelineSettings(training_backend="kubernetes")
    with pytest.raises(ValueError, match="not a boolean"):
        PipelineSettings.from_env({"RANKER_DOCKER": "maybe"})


def test_every_option_documents_its_environment_variable_in_help():
    parser = argparse.ArgumentParser()
    run_cli.add_arguments(parser)
    text = parser.format_help()
    for field in ("data_uri", "oracle_uri", "n_impressions", "work_dir", "enable_caching", "fail_if_not_blessed"):
        assert OPTIONS[field].env in text
    assert "RANKER_REGISTRY" in text and "MLFLOW_TRACKING_URI" in text


def test_every_option_is_a_flag_of_the_commands_that_take_its_group():
    # --tune-config was an option of no group: documented, yet `ranker run --tune-config` was an unknown flag
    grouped = {field for fields in GROUPS.values() for field in fields}
    assert sorted(set(OPTIONS) - grouped) == []
    args = parse_run_flags(["--tune-config", '{"trials": 2}'])
    assert json.loads(PipelineSettings.from_args(args).pipeline_arguments()["tune_config_json"])["trials"] == 2


def test_a_bad_flag_value_is_one_line_and_exit_status_2(capsys):
    args = parse_run_flags(["--model-config", "{epochs: 1}"])
    with pytest.raises(SystemExit) as exit_info:
        PipelineSettings.from_args_or_exit(args, "run")
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("ranker run: --model-config: TrainerConfig is not valid JSON")


def test_ranker_run_refuses_a_custom_training_job_before_running_anything(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("RANKER_TRAINING_BACKEND", "custom-job")
    assert run_cli.main(parse_run_flags(["--work-dir", str(tmp_path)])) == 2
    assert "cannot run locally" in capsys.readouterr().err


def test_the_step_cache_is_forgotten_when_the_steps_code_changes(tmp_path):
    from pipelines.kfp_local import forget_cache_of_other_code
    from pipelines.local_run import steps_code_digest

    cache = tmp_path / ".kfp_cache"
    assert forget_cache_of_other_code(cache, steps_code_digest()) is False  # a new cache, stamped with this code
    (cache / "entry.json").write_text("{}")
    assert forget_cache_of_other_code(cache, steps_code_digest()) is False and (cache / "entry.json").exists()
    (cache / "CODE_DIGEST").write_text("code of another day\n")
    assert forget_cache_of_other_code(cache, steps_code_digest()) is True and not (cache / "entry.json").exists()
    assert (cache / "CODE_DIGEST").read_text().strip() == steps_code_digest()


def test_ranker_run_oracle_reaches_the_pipeline_and_the_user_source(monkeypatch):
    from google.protobuf import json_format

    from components.pipeline_steps import user_source
    from pipelines.pipeline import build_pipeline

    settings = PipelineSettings.from_args(parse_run_flags(["--data-uri", "logs/*.parquet", "--oracle", "truth/"]))
    assert settings.pipeline_arguments()["oracle_uri"] == "truth/"
    monkeypatch.setenv("RANKER_ORACLE", "gs://bucket/truth")
    assert PipelineSettings.from_env(data_uri="logs/*.parquet").oracle_uri == "gs://bucket/truth"

    spec = build_pipeline(settings).pipeline_spec
    assert spec.root.input_definitions.parameters["oracle_uri"].default_value.string_value == "truth/"
    tasks = [
        task
        for component in json_format.MessageToDict(spec)["components"].values()
        for name, task in component.get("dag", {}).get("tasks", {}).items()
        if name == "user-source"
    ]
    assert tasks[0]["inputs"]["parameters"]["oracle_uri"] == {"componentInputParameter": "pipelinechannel--oracle_uri"}
    assert user_source.python_func(data_uri=" logs ", oracle_uri=" truth/ ")[:2] == ("logs", "truth/")


def test_extraction_runs_on_the_beam_runner_the_settings_name(monkeypatch):
    from google.protobuf import json_format

    from pipelines.pipeline import build_pipeline

    # `ranker extract-features`' variables are not read into the pipeline's setting (nor refused in its name)
    monkeypatch.setenv("RANKER_BEAM_RUNNER", "DataflowRunner")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "ambient")
    dataflow = {"runner": "DataflowRunner", "project": "p", "region": "europe-west4", "temp_location": "gs://b/tmp",
                "service_account_email": "dataflow@p.iam.gserviceaccount.com"}  # fmt: skip
    settings = PipelineSettings.from_args(parse_run_flags(["--beam-options", json.dumps(dataflow)]))
    assert json.loads(settings.pipeline_arguments()["beam_options_json"]) == dataflow
    assert "--service_account_email=dataflow@p.iam.gserviceaccount.com" in settings.beam.flags()
    spec = json_format.MessageToDict(build_pipeline(settings).pipeline_spec)
    assert json.loads(spec["root"]["inputDefinitions"]["parameters"]["beam_options_json"]["defaultValue"]) == dataflow
    extract = spec["root"]["dag"]["tasks"]["extract-features"]["inputs"]["parameters"]["beam_options_json"]
    assert extract == {"componentInputParameter": "beam_options_json"}
    assert PipelineSettings().pipeline_arguments()["beam_options_json"] == "{}"  # the local runner's defaults

    with pytest.raises(ValueError, match="--beam-options: the DataflowRunner needs --temp-location"):
        PipelineSettings.from_args(
            parse_run_flags(["--beam-options", '{"runner": "DataflowRunner", "project": "p", "region": "r"}'])
        )
    with pytest.raises(ValueError, match="--beam-options: BeamOptions: unknown key 'runer'"):
        PipelineSettings.from_args(parse_run_flags(["--beam-options", '{"runer": "DataflowRunner"}']))


def test_new_data_under_the_same_uri_reruns_the_extraction():
    """The never-cached user-source step hands the data's version to extract-features, whose cache key it is."""
    from google.protobuf import json_format

    from pipelines.pipeline import build_pipeline

    settings = PipelineSettings.from_args(parse_run_flags(["--data-uri", "logs/*.parquet"]))
    spec = json_format.MessageToDict(build_pipeline(settings).pipeline_spec)
    dags = [spec["root"]["dag"], *(component["dag"] for component in spec["components"].values() if "dag" in component)]
    tasks = {name: task for dag in dags for name, task in dag["tasks"].items()}
    assert tasks["user-source"].get("cachingOptions", {}).get("enableCache") is not True
    assert tasks["extract-features"]["cachingOptions"]["enableCache"] is True
    version = tasks["extract-features"]["inputs"]["parameters"]["data_version"]
    assert version["taskOutputParameter"]["outputParameterKey"] == "pipelinechannel--condition-branches-1-oneof-3"


def test_extractions_shard_count_reaches_the_extract_features_step(monkeypatch):
    from google.protobuf import json_format

    from pipelines.pipeline import build_pipeline

    settings = PipelineSettings.from_args(parse_run_flags(["--num-shards", "12"]))
    spec = json_format.MessageToDict(build_pipeline(settings).pipeline_spec)
    assert spec["root"]["inputDefinitions"]["parameters"]["num_shards"]["defaultValue"] == 12
    extract = spec["root"]["dag"]["tasks"]["extract-features"]["inputs"]["parameters"]
    assert extract["num_shards"] == {"componentInputParameter": "num_shards"}
    monkeypatch.setenv("RANKER_NUM_SHARDS", "40")
    assert PipelineSettings.from_env().num_shards == 40
    assert PipelineSettings().num_shards == 0  # sized by the data
    with pytest.raises(ValueError, match=r"--num-shards: num_shards must be 0 \(sized by the data\) or more, not -1"):
        PipelineSettings(num_shards=-1)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"dead_letter_threshold": 5.0},
            "--dead-letter-threshold: dead_letter_threshold is a share of rows, 0 to 1, not 5.0",
        ),
        ({"seed": -1}, "--seed: seed must be 0 or more (it seeds the simulator), not -1"),
        ({"step_cpu": "abc"}, "--step-cpu: step_cpu 'abc' is not a CPU quantity"),
        ({"train_cpu": "-4"}, "--train-cpu: train_cpu '-4' is not a CPU quantity"),
        ({"step_memory": "lots"}, "--step-memory: step_memory 'lots' is not a memory quantity"),
        (
            {"train_accelerator_count": -1},
            "--train-accelerator-count: train_accelerator_count must be 0 or more, not -1",
        ),
        (
            {"train_accelerator": "NVIDIA_TESLA_T4", "train_accelerator_count": 0},
            "train_accelerator_count must be 1 or more for train_accelerator NVIDIA_TESLA_T4",
        ),
        ({"held_out_module": "shop-page"}, "held_out_module 'shop-page' (--held-out-module, RANKER_HELD_OUT_MODULE)"),
    ],
)
def test_settings_that_extraction_or_kfp_would_refuse_later_are_refused_now(values, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        PipelineSettings(**values)
    for valid in (
        {"step_cpu": "500m", "step_memory": "512Mi"},
        {"train_cpu": "0.5", "dead_letter_threshold": 0.0},
        {"held_out_module": "search"},
        {"held_out_module": "shop-page", "data_uri": "logs/*.csv"},  # a user's modules: checked by extraction
    ):
        PipelineSettings(**valid)


def test_an_oracle_without_the_users_data_is_refused():
    with pytest.raises(ValueError, match="oracle_uri is the oracle of your data"):
        PipelineSettings(oracle_uri="truth/")


def test_the_primary_task_is_checked_against_the_dataset_spec_before_any_step_runs(tmp_path, capsys):
    from pipelines.local_run import run_locally

    wrong = PipelineSettings(work_dir=str(tmp_path), dataset_spec="ali_ccp", eval_config='{"primary_task": "favorite"}')
    message = r"--eval-config: primary_task 'favorite' is not a target of this data: click, purchase, engagement"
    with pytest.raises(ValueError, match=message + r" \(tasks of dataset spec .*ali_ccp\.yaml\)"):
        run_locally(wrong)
    assert not (tmp_path / "pipeline_root").exists()  # nothing ran
    PipelineSettings(dataset_spec="ali_ccp").check_against_spec()  # the default: click AUC (no request groups)
    with pytest.raises(ValueError, match=r"--eval-config: primary_metric 'map' is not 'auc', 'ndcg' or 'ndcg@<k>'"):
        PipelineSettings(eval_config='{"primary_metric": "map"}').check_against_spec()

    auc_of_engagement = '{"primary_task": "engagement", "primary_metric": "auc"}'
    args = parse_run_flags(["--dataset-spec", "kuairand", "--data-uri", "x.csv", "--eval-config", auc_of_engagement])
    with pytest.raises(SystemExit) as exit_info:
        PipelineSettings.from_args_or_exit(args, "compile")
    assert exit_info.value.code == 2
    assert "AUC needs a binary task: set primary_task to one of click, long_view" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("model_config", "setting"),
    [
        ('{"task_loss_weights": {"clik": 2.0}}', "task_loss_weights names unknown task(s) ['clik']"),
        ('{"positive_weights": {"buy": 3.0}}', "positive_weights names unknown task(s) ['buy']"),
        ('{"listwise_tasks": ["favourite"]}', "listwise_tasks names unknown task(s) ['favourite']"),
        ('{"default_score_weights": {"like": 1.0}}', "default_score_weights names unknown task(s) ['like']"),
        ('{"score_weights": {"search": {"cart": 1.0}}}', "score_weights['search'] names unknown task(s) ['cart']"),
    ],
)
def test_the_model_configs_task_names_are_checked_against_the_dataset_spec_before_any_step_runs(
    tmp_path, model_config, setting
):
    from pipelines.local_run import run_locally

    wrong = PipelineSettings(work_dir=str(tmp_path), model_config=model_config)
    tasks = "the data's tasks: ['click', 'favorite', 'add_to_cart', 'purchase']"
    with pytest.raises(ValueError, match=re.escape(f"--model-config: {setting}; {tasks} (dataset spec ")):
        run_locally(wrong)
    assert not (tmp_path / "pipeline_root").exists()  # nothing ran
    right = model_config.replace("clik", "click").replace("buy", "purchase").replace("favourite", "favorite")
    PipelineSettings(model_config=right.replace("like", "click").replace("cart", "add_to_cart")).check_against_spec()


def test_a_custom_training_job_needs_a_machine_type():
    with pytest.raises(ValueError, match="train_machine_type must name a machine type for a custom training job"):
        PipelineSettings(training_backend="custom-job", train_machine_type=" ")
    assert PipelineSettings(train_machine_type="").train_machine_type == ""  # unused by a pipeline step
