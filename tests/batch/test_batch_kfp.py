"""The batch ranking DAG: it compiles for Vertex AI / KFP and runs under kfp.local; its parameters are checked."""

import re
from pathlib import Path

import pytest
import yaml

from batch.config import BatchRankConfig
from batch.pipeline import read_ranking
from pipelines.batch_pipeline import batch_parameters, build_batch_pipeline, compile_batch_pipeline
from pipelines.config import PipelineSettings
from ranker_core.cli_support import UserError
from tests.serving.conftest import model_dir  # noqa: F401  (the session fixture, shared)


def test_the_batch_pipeline_compiles_with_its_parameters(tmp_path):
    path = compile_batch_pipeline(
        PipelineSettings(image="europe-docker.pkg.dev/p/r/mmoe-ranker:1"), tmp_path / "b.yaml"
    )

    spec = yaml.safe_load(path.read_text())
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert {"candidates_uri", "model_uri", "top_k", "campaign", "output_table", "feature_store"} <= set(parameters)
    # the CLI's default: the model's module role (tab on KuaiRand), not a fixed module_name
    assert parameters["campaign_column"]["defaultValue"] == BatchRankConfig.model_fields["campaign_column"].default
    assert set(spec["root"]["dag"]["tasks"]) == {"resolve-batch-model", "batch-rank"}
    images = {executor["container"]["image"] for executor in spec["deploymentSpec"]["executors"].values()}
    assert images == {"europe-docker.pkg.dev/p/r/mmoe-ranker:1"}


def test_batch_parameters_are_checked():
    assert batch_parameters('{"candidates_uri": "bq://p.d.t", "top_k": 5}')["top_k"] == 5
    with pytest.raises(UserError, match="unknown batch pipeline parameter"):
        batch_parameters('{"candidates_uri": "x", "topk": 5}')
    with pytest.raises(UserError, match="candidates_uri"):
        batch_parameters("{}")
    for parameters, message in (
        ('"top_k": "5"', "top_k must be a JSON integer, not '5'"),
        ('"top_k": true', "top_k must be a JSON integer, not True"),
        ('"top_k": 0', "top_k must be positive, not 0"),
        ('"grouped_by_user": "false"', "grouped_by_user must be a JSON boolean (true or false), not 'false'"),
        ('"campaign": 3', "campaign must be a JSON string, not 3"),
        ('"beam_options_json": "{\\"runner\\": \\"DataflowRunner\\"}"', "beam_options_json: "),
    ):
        with pytest.raises(UserError, match=re.escape(f"--parameters: {message}")):
            batch_parameters(f'{{"candidates_uri": "bq://p.d.t", {parameters}}}')


@pytest.mark.slow
def test_the_batch_pipeline_runs_under_kfp_local(kfp_local_root, model_dir, synthetic_examples):  # noqa: F811
    pipeline = build_batch_pipeline(PipelineSettings())

    task = pipeline(
        candidates_uri=str(synthetic_examples), split="test", campaign="search", top_k=2, model_uri=str(model_dir),
        beam_options_json='{"direct_num_workers": 1, "direct_running_mode": "in_memory"}',
    )  # fmt: skip

    ranked = read_ranking(Path(task.output.path))
    assert set(ranked["module_name"]) == {"search"}
    assert ranked.groupby("user_id")["rank"].max().max() == 2


def test_the_batch_pipeline_is_scheduled_with_its_own_parameters(tmp_path, capsys):
    import argparse

    from pipelines import schedule_cli
    from tests.pipelines.fake_kfp_api import FakeKfpApi

    parser = argparse.ArgumentParser()
    schedule_cli.add_arguments(parser)
    parameters = '{"candidates_uri": "bq://my-project.crm.email_candidates", "campaign": "email_digest"}'
    args = parser.parse_args(
        ["create", "--cron", "0 6 * * *", "--name", "daily-email", "--pipeline", "batch", "--parameters", parameters,
         "--kfp-host", "http://kfp.test", "--tracking-uri", "http://mlflow:5000",
         "--image", "europe-docker.pkg.dev/p/r/mmoe-ranker:1"]
    )  # fmt: skip
    with FakeKfpApi() as api:
        assert schedule_cli.main(args) == 0
        body = api.calls("POST", r"/recurringruns$")[0].json

    assert body["trigger"]["cron_schedule"]["cron"] == "0 0 6 * * *"
    assert body["runtime_config"]["parameters"] == {
        "candidates_uri": "bq://my-project.crm.email_candidates",
        "campaign": "email_digest",
        "tracking_uri": "http://mlflow:5000",  # the registry flag given
    }
    assert body["pipeline_spec"]["pipelineInfo"]["name"] == "mmoe-ranker-batch"
    assert "created" in capsys.readouterr().out


def test_the_model_is_the_given_uri_else_the_registry_champion(tmp_path):
    from batch.pipeline import model_location

    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    assert model_location("gs://b/models/42", "mlflow", "mmoe-ranker", tracking, "", "") == "gs://b/models/42"
    with pytest.raises(UserError, match="no champion in the mlflow registry"):
        model_location("", "mlflow", "mmoe-ranker", tracking, "", "us-central1")
