"""Every pipeline run is one MLflow run: params, curves, report, verdict; the registered MLflow model; `ranker runs`."""

import json
import time
from pathlib import Path

import numpy as np
import pytest
from kfp.dsl import PipelineTaskFinalStatus

from components.registry.core import CHAMPION, RegistryConfig, register_from_artifacts
from components.tracking import cli
from components.tracking.mlflow_runs import (
    FAILURE_TAG,
    REASONS_TAG,
    VERDICT_TAG,
    VERSION_TAG,
    EvaluationDocuments,
    fail_unfinished_runs,
    record_evaluation,
    record_training,
    start_pipeline_run,
    tracking_client,
)
from components.tracking.runs import list_runs, runs_table
from pipelines.cli import main as ranker
from ranker_core.serving import global_tracking_uri
from tests.registry.conftest import copy_model, write_evaluation

PARAMS = {"data_uri": "gs://logs/*.parquet", "model.epochs": "3", "code_version": "abc"}
HISTORY = {"loss": [0.9, 0.7], "val_ranking_loss": [1.0, 0.8]}
USAGE = {"experts": ["e0", "e1"], "tasks": ["click"], "weights": {"search": {"click": [0.3, 0.7]}}}


def fake_training(folder: Path) -> Path:
    """A model folder with only the ``metrics.json`` training writes (history, eval metrics, gate usage)."""
    folder.mkdir(parents=True)
    metrics = {"history": HISTORY, "eval_metrics": {"ranking_loss": 0.8}, "best_epoch": 2, "gate_usage": USAGE}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def tracked_run(tmp_path: Path, config: RegistryConfig, blessed: bool, name: str = "run-1", model=None) -> str:
    """A pipeline run recorded as the steps record it: start, training, evaluation; its MLflow run id."""
    run_id = start_pipeline_run(config, name, PARAMS)
    model = model or fake_training(tmp_path / name / "model")
    tensorboard = tmp_path / name / "tensorboard" / "train"
    tensorboard.mkdir(parents=True)
    (tensorboard / "events.out.tfevents.1").write_bytes(b"event")
    record_training(config, run_id, str(model), str(tensorboard.parent))
    report = write_evaluation(tmp_path / name / "report", blessed, 0.6, judged=Path(model))
    (report / "report.html").write_text("<html>report</html>")
    record_evaluation(
        config,
        run_id,
        EvaluationDocuments.read(report / "metrics.json", report / "blessing.json", report / "report.html"),
    )
    return run_id


def artifacts(client, run_id: str, path: str = "") -> set[str]:
    """Every artifact file of a run, recursively."""
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return found


@pytest.fixture
def config(tmp_path) -> RegistryConfig:
    return RegistryConfig(work_dir=str(tmp_path / "work"))


def test_a_refused_run_is_recorded_with_params_curves_report_and_reasons(tmp_path, config):
    run_id = tracked_run(tmp_path, config, blessed=False)

    client = tracking_client(config)
    run = client.get_run(run_id)
    assert run.data.params["data_uri"] == "gs://logs/*.parquet" and run.data.params["model.epochs"] == "3"
    assert run.data.tags[VERDICT_TAG] == "refused"
    assert "below the per-module GBDT" in run.data.tags[REASONS_TAG]
    assert run.info.status == "FINISHED"
    curve = client.get_metric_history(run_id, "train/val_ranking_loss")
    assert [(m.step, m.value) for m in sorted(curve, key=lambda m: m.step)] == [(1, 1.0), (2, 0.8)]
    assert run.data.metrics["headline/blessed"] == 0.0
    assert run.data.metrics["headline/primary_metric"] == pytest.approx(0.6)
    assert not any(key.startswith("ndcg") for key in run.data.metrics), "the long table is an artifact, not metrics"
    assert {
        "evaluation/report.html",
        "evaluation/blessing.json",
        "evaluation/metrics.json",
        "evaluation/metrics.csv",
        "training/gate_usage.png",
        "tensorboard/train/events.out.tfevents.1",
    } <= artifacts(client, run_id)
    table = client.download_artifacts(run_id, "evaluation/metrics.csv", str(tmp_path))
    assert "ndcg/search/click/mmoe,0.6" in Path(table).read_text()


def test_a_retried_start_finds_the_same_run(config):
    assert start_pipeline_run(config, "run-7", PARAMS) == start_pipeline_run(config, "run-7", PARAMS)


@pytest.mark.slow
def test_a_blessed_run_holds_the_registered_mlflow_model_that_scores_as_the_saved_model(tmp_path, config, model_dir):
    import mlflow.pyfunc

    from trainer.mlflow_model import example_frame
    from trainer.predict import load_ranker

    model = copy_model(model_dir, tmp_path / "model", "tracked")
    run_id = tracked_run(tmp_path, config, blessed=True, model=model)
    report = str(tmp_path / "run-1" / "report")
    registered = register_from_artifacts(str(model), report, report, config, "run-1", tracking_run_id=run_id)

    assert registered.aliases == (CHAMPION,)
    client = tracking_client(config)
    run = client.get_run(run_id)
    assert (run.data.tags[VERDICT_TAG], run.data.tags[VERSION_TAG]) == ("blessed", registered.version)
    assert len(run.data.metrics) < 60, "a compact set of metrics, not thousands"
    version = client.get_model_version(config.model_name, registered.version)
    assert version.run_id == run_id
    with global_tracking_uri(config.resolved_tracking_uri):
        loaded = mlflow.pyfunc.load_model(f"models:/{config.model_name}@{CHAMPION}")
    assert set(loaded.metadata.get_input_schema().input_names()) >= {"module_name"}
    frame = example_frame(model, rows=16)
    expected = load_ranker(model).predict({column: frame[column].to_numpy() for column in frame.columns})
    scored = loaded.predict(frame)
    for name, values in expected.items():
        np.testing.assert_allclose(scored[name].to_numpy(), values.reshape(-1), rtol=1e-6)
    assert Path(registered.model_uri, "saved_model.pb").is_file(), "the champion's SavedModel folder, for serving"


@pytest.mark.slow
def test_a_rerun_that_registers_the_same_model_is_tagged_with_the_existing_version(tmp_path, config, model_dir):
    model = copy_model(model_dir, tmp_path / "model", "rerun")
    registered = {}
    for name in ("run-1", "run-2"):  # two identical blessed pipeline runs: the same model files
        run_id = tracked_run(tmp_path, config, blessed=True, name=name, model=model)
        report = str(tmp_path / name / "report")
        registered[run_id] = register_from_artifacts(str(model), report, report, config, name, tracking_run_id=run_id)

    assert [(version.version, version.created) for version in registered.values()] == [("1", True), ("1", False)]
    client = tracking_client(config)
    assert {run_id: client.get_run(run_id).data.tags.get(VERSION_TAG) for run_id in registered} == dict.fromkeys(
        registered, "1"
    )
    assert [run.version for run in list_runs(config)] == ["1", "1"]


def test_ranker_runs_lists_blessed_and_refused_runs_as_a_table_and_json(tmp_path, config, capsys):
    refused = tracked_run(tmp_path, config, blessed=False, name="run-1")
    blessed = tracked_run(tmp_path, config, blessed=True, name="run-2")
    tracking_client(config).set_tag(blessed, VERSION_TAG, "1")

    runs = list_runs(config)
    assert [(run.run_id, run.verdict, run.version) for run in runs] == [
        (blessed, "blessed", "1"),
        (refused, "refused", ""),
    ]
    assert runs_table(runs).splitlines()[0].split() == ["run_id", "date", "data", "verdict", "lift", "version"]

    assert ranker(["runs", "--work-dir", config.work_dir, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [run["verdict"] for run in listed] == ["blessed", "refused"]
    assert listed[0]["data"] == "gs://logs/*.parquet"
    assert ranker(["runs", "--work-dir", config.work_dir]) == 0
    assert refused in capsys.readouterr().out


def test_ranker_runs_refuses_bad_input_in_one_line(tmp_path, capsys):
    assert ranker(["runs", "--work-dir", str(tmp_path / "none")]) == 2
    assert "no model registry" in capsys.readouterr().err
    assert ranker(["runs", "--limit", "0"]) == 2
    assert "--limit must be at least 1 (got 0)" in capsys.readouterr().err
    assert cli.HELP
    missing = tmp_path / "nosuch" / "mlflow.db"
    assert ranker(["runs", "--tracking-uri", f"sqlite:///{missing}"]) == 2  # reading creates no store
    assert "no model registry in --tracking-uri" in capsys.readouterr().err and not missing.parent.exists()
    assert ranker(["runs", "--tracking-uri", "http://127.0.0.1:9"]) == 2  # refused at once, not after MLflow's retries
    assert "--tracking-uri http://127.0.0.1:9: no MLflow server answers" in capsys.readouterr().err
    assert ranker(["runs", "--registry", "vertex", "--project", "p"]) == 2
    assert (
        "--registry vertex: ranker runs lists MLflow runs; pass the pipeline's --tracking-uri"
        in capsys.readouterr().err
    )


def test_a_run_that_fails_before_its_end_is_marked_failed_with_the_reason(config):
    earlier = start_pipeline_run(config, "run-earlier", PARAMS)  # still open, but started before this run
    time.sleep(0.01)  # start times are in milliseconds
    failed = start_pipeline_run(config, "run-failing", PARAMS)
    client = tracking_client(config)
    since = client.get_run(failed).info.start_time
    assert client.get_run(earlier).info.start_time < since

    assert fail_unfinished_runs(config, since, "extract-features failed: no rows") == [failed]
    run = client.get_run(failed)
    assert run.info.status == "FAILED" and run.data.tags[FAILURE_TAG] == "extract-features failed: no rows"
    assert client.get_run(earlier).info.status == "RUNNING"
    assert {run.run_id: run.verdict for run in list_runs(config)}[failed] == "failed"


def exit_status(state: str, error: str | None) -> PipelineTaskFinalStatus:
    return PipelineTaskFinalStatus(
        state=state,
        pipeline_job_resource_name="projects/p/locations/l/pipelineJobs/mmoe-ranker-20261201-030000",
        pipeline_task_name="exit-handler-1",
        error_code=None if error is None else 9,
        error_message=error,
    )


def close_as_the_exit_handler(config: RegistryConfig, run_name: str, state: str, error: str | None = None) -> str:
    """The exit handler's component body, run here as the kfp executor would with the final status."""
    from components.tracking.component import close_tracking

    return close_tracking.python_func(
        status=exit_status(state, error), pipeline_run_id=run_name, tracking_uri=config.resolved_tracking_uri
    )


def test_the_exit_handler_ends_a_failed_remote_run_failed_with_the_error(config):
    failed = start_pipeline_run(config, "mmoe-ranker-failed", PARAMS)
    other = start_pipeline_run(config, "mmoe-ranker-other", PARAMS)
    client = tracking_client(config)

    assert close_as_the_exit_handler(config, "mmoe-ranker-failed", "FAILED", "train-mmoe: OOMKilled") == failed

    run = client.get_run(failed)
    assert run.info.status == "FAILED"
    assert run.data.tags[FAILURE_TAG] == "pipeline failed: train-mmoe: OOMKilled"
    assert client.get_run(other).info.status == "RUNNING"  # another pipeline run's is left alone
    assert {run.run_id: run.verdict for run in list_runs(config)}[failed] == "failed"


def test_the_exit_handler_leaves_succeeded_and_ended_runs_and_marks_cancelled_ones_killed(tmp_path, config):
    running = start_pipeline_run(config, "mmoe-ranker-ok", PARAMS)
    recorded = tracked_run(tmp_path, config, blessed=False, name="mmoe-ranker-recorded")
    cancelled = start_pipeline_run(config, "mmoe-ranker-cancelled", PARAMS)
    client = tracking_client(config)
    status_before = client.get_run(recorded).info.status

    assert close_as_the_exit_handler(config, "mmoe-ranker-ok", "SUCCEEDED") == ""
    assert close_as_the_exit_handler(config, "mmoe-ranker-recorded", "FAILED", "deploy failed") == ""
    assert close_as_the_exit_handler(config, "mmoe-ranker-cancelled", "CANCELLED") == cancelled
    assert close_as_the_exit_handler(config, "mmoe-ranker-never-started", "FAILED", "start failed") == ""

    assert client.get_run(running).info.status == "RUNNING"
    assert client.get_run(recorded).info.status == status_before != "RUNNING"
    run = client.get_run(cancelled)
    assert run.info.status == "KILLED" and run.data.tags[FAILURE_TAG] == "pipeline cancelled: no error message"


def test_the_exit_handler_does_nothing_on_vertex_without_an_mlflow_store():
    from components.tracking.component import close_tracking

    assert close_tracking.python_func(status=exit_status("FAILED", "x"), pipeline_run_id="r", registry="vertex") == ""


def test_ranker_runs_shows_a_run_that_ended_failed_or_killed_so_even_after_its_verdict(tmp_path, config, capsys):
    """A verdict tag set before a later failure (the register step failed) does not make the run look blessed."""
    client = tracking_client(config)
    failed = tracked_run(tmp_path, config, blessed=True, name="run-failed")
    client.set_tag(failed, FAILURE_TAG, "register failed: disk full")
    client.set_terminated(failed, status="FAILED")
    killed = tracked_run(tmp_path, config, blessed=False, name="run-killed")
    client.set_terminated(killed, status="KILLED")
    blessed = tracked_run(tmp_path, config, blessed=True, name="run-blessed")
    running = start_pipeline_run(config, "run-running", PARAMS)

    runs = {run.run_id: run for run in list_runs(config)}

    assert {run_id: runs[run_id].verdict for run_id in (failed, killed, blessed, running)} == {
        failed: "failed",
        killed: "killed",
        blessed: "blessed",
        running: "running",
    }
    assert (runs[failed].failure, runs[blessed].failure) == ("register failed: disk full", "")
    assert ranker(["runs", "--work-dir", config.work_dir, "--json"]) == 0
    listed = {run["run_id"]: run for run in json.loads(capsys.readouterr().out)}
    assert (listed[failed]["verdict"], listed[failed]["status"]) == ("failed", "FAILED")
    assert listed[failed]["failure"] == "register failed: disk full"
    assert ranker(["runs", "--work-dir", config.work_dir]) == 0
    table = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    assert table[failed][4] == "failed" and table[killed][4] == "killed"  # run_id, date (2 cells), data, verdict


def test_a_registration_that_fails_ends_its_own_run_failed_with_the_reason(tmp_path, config, monkeypatch):
    """`ranker register` outside a pipeline logs into a run of its own: a crash leaves it failed, and why."""
    from mlflow.exceptions import MlflowException

    from components.registry.core import Candidate, register_model
    from tests.registry.conftest import write_fake_model

    def crash(model_dir, name="model"):
        raise MlflowException("Invalid path: resolved path is outside the artifact directory")

    monkeypatch.setattr("trainer.mlflow_model.log_ranker_model", crash)
    model = write_fake_model(tmp_path / "model", b"w")
    evaluation = {"report": {"ndcg": 0.6}, "blessing": {"blessed": True, "reasons": []}}
    candidate = Candidate(str(model), True, [], {}, {"lift": 0.1}, "run-x", "d" * 64, evaluation=evaluation)

    with pytest.raises(MlflowException, match="outside the artifact directory"):
        register_model(candidate, config)

    (run,) = list_runs(config)
    assert (run.verdict, run.status) == ("failed", "FAILED")
    assert run.failure == (
        "registering the model failed: MlflowException: Invalid path: resolved path is outside the artifact directory"
    )
