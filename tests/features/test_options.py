"""Beam options: the local runner by default, Dataflow flags built and checked, CLI flags and env defaults."""

import argparse
import logging

import pytest

from components.features import cli
from components.features.options import LOCAL_RUNNER, BeamOptions, beam_options_from_args


def test_the_local_runner_uses_every_core_by_default(monkeypatch):
    monkeypatch.delenv("RANKER_BEAM_RUNNER", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    flags = BeamOptions(direct_running_mode="multi_processing").flags()
    assert flags[0] == f"--runner={LOCAL_RUNNER}"
    assert "--direct_num_workers=2" in flags and "--direct_running_mode=multi_processing" in flags
    assert not any(flag.startswith("--machine_type") for flag in flags)


@pytest.mark.parametrize(
    ("options", "cores"),
    [
        (BeamOptions(direct_num_workers=2, direct_running_mode="multi_processing"), 2),
        (BeamOptions(direct_num_workers=0, direct_running_mode="multi_processing"), 1),  # one worker per core
        (BeamOptions(direct_num_workers=8, direct_running_mode="multi_processing"), 1),
        (BeamOptions(direct_num_workers=2, direct_running_mode="in_memory"), 0),  # one process: no split
        (BeamOptions(direct_num_workers=2, direct_running_mode="multi_threading"), 0),
        (BeamOptions(runner="DataflowRunner", direct_num_workers=2, direct_running_mode="multi_processing"), 0),
    ],
    ids=["2-of-4", "one-per-core", "more-workers-than-cores", "in-memory", "threads", "dataflow"],
)
def test_local_worker_processes_share_the_cores_out(monkeypatch, options, cores):
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    assert options.cores_per_worker_process == cores


def test_dataflow_flags_carry_project_region_locations_workers_and_image():
    options = BeamOptions(
        runner="DataflowRunner",
        project="my-project",
        region="europe-west4",
        temp_location="gs://bucket/tmp",
        staging_location="gs://bucket/staging",
        machine_type="n2-standard-4",
        max_num_workers=20,
        sdk_container_image="europe-docker.pkg.dev/my-project/ranker/ranker:1",
        job_name="extract-features",
        extra_args=("--experiments=use_runner_v2",),
    )
    assert options.flags() == [
        "--runner=DataflowRunner",
        "--project=my-project",
        "--region=europe-west4",
        "--temp_location=gs://bucket/tmp",
        "--staging_location=gs://bucket/staging",
        "--job_name=extract-features",
        "--machine_type=n2-standard-4",
        "--max_num_workers=20",
        "--sdk_container_image=europe-docker.pkg.dev/my-project/ranker/ranker:1",
        "--experiments=use_runner_v2",
    ]
    from apache_beam.options.pipeline_options import GoogleCloudOptions, WorkerOptions

    pipeline_options = options.pipeline_options()
    assert pipeline_options.view_as(GoogleCloudOptions).region == "europe-west4"
    assert pipeline_options.view_as(WorkerOptions).max_num_workers == 20
    assert pipeline_options.view_as(WorkerOptions).machine_type == "n2-standard-4"


def test_dataflow_without_project_or_with_a_local_temp_location_is_refused():
    with pytest.raises(ValueError, match="the DataflowRunner needs --project, --region"):
        BeamOptions(runner="DataflowRunner", temp_location="gs://b/tmp").pipeline_options()
    with pytest.raises(ValueError, match="--temp-location must be a gs:// path"):
        BeamOptions(runner="DataflowRunner", project="p", region="r", temp_location="/tmp").validate()


def test_environment_variables_are_the_defaults(monkeypatch):
    monkeypatch.setenv("RANKER_BEAM_RUNNER", "DataflowRunner")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "env-project")
    monkeypatch.setenv("RANKER_DATAFLOW_MAX_WORKERS", "7")
    options = BeamOptions.load()
    assert (options.runner, options.project, options.max_num_workers) == ("DataflowRunner", "env-project", 7)


def test_cli_flags_override_the_defaults(monkeypatch):
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "env-project")
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(
        ["--data-uri", "d", "--dataset-spec", "simulator", "--out", "o", "--runner", "DataflowRunner",
         "--region", "us-east1", "--max-num-workers", "5", "--", "--experiments=shuffle_mode=service"]
    )  # fmt: skip
    options = beam_options_from_args(args, tuple(arg for arg in args.beam_args if arg != "--"))
    assert (options.runner, options.project, options.region, options.max_num_workers) == (
        "DataflowRunner",
        "env-project",
        "us-east1",
        5,
    )
    assert options.extra_args == ("--experiments=shuffle_mode=service",)
    assert args.dead_letter_threshold == 0.01 and args.held_out_module == ""


def test_the_local_default_names_a_runner_that_needs_no_download(monkeypatch):
    from apache_beam.options.pipeline_options import StandardOptions
    from apache_beam.runners.runner import create_runner

    from components.features.runner import LocalRunner

    monkeypatch.delenv("RANKER_BEAM_RUNNER", raising=False)
    name = BeamOptions().pipeline_options().view_as(StandardOptions).runner
    assert name == LOCAL_RUNNER and type(create_runner(name)) is LocalRunner  # not Beam's Prism-first DirectRunner
    assert BeamOptions(runner="direct").beam_runner == LOCAL_RUNNER
    assert BeamOptions(runner="PrismRunner").beam_runner == "PrismRunner"  # other runners pass through


def test_a_local_run_never_starts_or_downloads_prism(monkeypatch, caplog):
    import apache_beam as beam
    from apache_beam.runners.portability import prism_runner
    from apache_beam.testing.util import assert_that, equal_to

    started = []
    monkeypatch.setattr(prism_runner.PrismRunner, "run_pipeline", lambda *args: started.append(args))
    options = BeamOptions(direct_num_workers=1, direct_running_mode="in_memory").pipeline_options()
    with caplog.at_level(logging.INFO), beam.Pipeline(options=options) as pipeline:
        assert_that(pipeline | beam.Create([1, 2, 3]) | beam.combiners.Count.Globally(), equal_to([3]))
    assert started == [] and not [record for record in caplog.records if "prism" in record.getMessage().lower()]
