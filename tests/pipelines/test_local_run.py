"""The whole DAG under kfp.local on a tiny simulated marketplace: registration, refusal, caching."""

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from components.registry.core import CHAMPION, RegistryConfig
from components.registry.mlflow_store import MlflowRegistry
from components.tracking.mlflow_runs import FAILURE_TAG, REASONS_TAG, VERDICT_TAG, VERSION_TAG
from components.tracking.runs import list_runs
from pipelines.config import PipelineSettings
from pipelines.local_run import StepProgress, run_locally
from pipelines.step_errors import StepFailedError
from pipelines.summary import feature_repo, format_summary

pytestmark = pytest.mark.slow

# Small and quick. The baseline is starved on purpose (no leaf may hold fewer rows than
# the data has, so every GBDT is a constant, i.e. a random ranker) and the primary metric
# is click NDCG over the whole list (the least noisy on ~200 test requests): the test
# checks the pipeline's wiring and rules, not which model wins on tiny data.
TINY = {
    "n_impressions": 30_000,
    "seed": 3,
    "baseline_config": json.dumps(
        {"n_estimators": 2, "min_data_in_leaf": 10_000_000, "early_stopping_rounds": 0, "tuning_trials": 0}
    ),
    "eval_config": json.dumps(
        {
            "primary_task": "click",
            "primary_metric": "ndcg",
            "bootstrap_samples": 20,
            "permutation_samples": 20,
            "tolerance": 1.0,
        }
    ),
}
GOOD_MODEL = json.dumps({"epochs": 2, "batch_size": 256})
# A learning rate of 1e-9 leaves the random initial weights in place: a model that ranks at random.
DAMAGED_MODEL = json.dumps({"epochs": 1, "batch_size": 256, "learning_rate": 1e-9})


def settings(work_dir: Path, model_config: str, deploy: bool = False, **evaluation: Any) -> PipelineSettings:
    """The tiny run's settings; ``evaluation`` changes fields of its evaluation config."""
    registry = RegistryConfig(work_dir=str(work_dir))
    eval_config = json.dumps(json.loads(TINY["eval_config"]) | evaluation)
    tiny = TINY | {"eval_config": eval_config}
    return PipelineSettings(work_dir=str(work_dir), model_config=model_config, registry=registry, deploy=deploy, **tiny)


def statuses(progress: StepProgress) -> dict[str, str]:
    return {name: step.status for name, step in progress.steps.items()}


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("pipeline_run")


@pytest.fixture(scope="module")
def first_run(work_dir):
    progress = StepProgress(io.StringIO())
    return run_locally(settings(work_dir, GOOD_MODEL), progress), progress


def assert_tracked(registry: MlflowRegistry, run_id: str, verdict: str) -> None:
    """The pipeline run's MLflow run holds its params, curves, report and verdict."""
    run = registry.client.get_run(run_id)
    assert run.data.tags[VERDICT_TAG] == verdict
    assert run.data.params["model.epochs"] in ("1", "2") and "code_version" in run.data.params
    curve = registry.client.get_metric_history(run_id, "train/val_ranking_loss")
    assert sorted(metric.step for metric in curve) == list(range(1, len(curve) + 1)) and curve, "one point per epoch"
    names = {item.path for item in registry.client.list_artifacts(run_id, "evaluation")}
    assert {"evaluation/report.html", "evaluation/blessing.json", "evaluation/metrics.csv"} <= names
    assert registry.client.list_artifacts(run_id, "tensorboard"), "the training step's TensorBoard logs"


def test_a_blessed_model_is_registered_with_its_metrics(first_run, work_dir):
    result, progress = first_run

    assert result.blessed, Path(result.artifact_path("blessing")).read_text()
    assert result.registered is not None
    assert (result.registered.version, result.registered.aliases) == ("1", (CHAMPION,))
    registry = MlflowRegistry(RegistryConfig(work_dir=str(work_dir)))
    version = registry.client.get_model_version("mmoe-ranker", "1")
    assert version.tags["pipeline_run_id"].startswith("mmoe-ranker-")
    assert version.tags["data_uri"].endswith("impressions")
    metrics = registry.version_metrics("1")
    assert "headline/candidate" in metrics
    assert not any(key.startswith("test/") for key in metrics), "the per-module table is an artifact"
    assert_tracked(registry, result.outputs["tracking_run_id"], "blessed")
    assert registry.client.get_run(result.outputs["tracking_run_id"]).data.tags[VERSION_TAG] == "1"
    assert (Path(registry.version_model_uri("1")) / "saved_model.pb").is_file()
    assert statuses(progress)["register-model"] == "SUCCESS"
    assert "deploy-model" not in statuses(progress)  # deploy is off by default

    summary = format_summary(result)
    log = result.log_path.read_text() if result.log_path else ""
    assert "== step simulate-marketplace ==" in log and "Got executor_input" not in log
    assert "step train-mmoe             epoch 2/2  val ranking_loss" in progress.stream.getvalue()
    assert f"Step logs: {result.log_path}" in summary
    assert "<html" in (work_dir / "latest" / "report.html").read_text().lower()
    assert json.loads((work_dir / "latest" / "blessing.json").read_text())["blessed"] is True
    assert f"Report:    {work_dir.resolve() / 'latest' / 'report.html'}" in summary
    latest = work_dir / "latest"  # the folders serve, batch-rank and skew-check take next
    for link in ("model", "examples"):
        assert (latest / link).resolve() == Path(result.artifact_path(link)).resolve()
    assert (latest / "feature_repo").resolve() == feature_repo(result).resolve()
    assert f"(linked in {latest.resolve()}: model, examples, feature_repo)" in summary
    assert "Blessed: yes" in summary
    assert "Registered: mmoe-ranker version 1 (champion)" in summary
    assert "batch-rank --feature-store" in summary and (feature_repo(result) / "feature_store.yaml").is_file()
    assert "gbdt_per_module" in summary
    assert "click expected_ndcg lift over the per-module GBDT" in summary  # the simulator's oracle


def test_an_identical_rerun_reuses_the_cached_steps_and_deploys(first_run, work_dir):
    progress = StepProgress()
    rerun = run_locally(settings(work_dir, GOOD_MODEL, deploy=True), progress)

    steps = statuses(progress)
    for step in ("simulate-marketplace", "extract-features", "train-mmoe", "train-baseline", "evaluate"):
        assert steps[step] == "CACHED", steps
    assert steps["resolve-champion"] == "SUCCESS"  # reads the registry: never cached
    assert steps["deploy-model"] == "SUCCESS"
    assert "ranker serve --model-uri models:/mmoe-ranker/1" in rerun.log_path.read_text()  # the deploy step's output
    assert rerun.registered is not None and rerun.registered.version == "1"
    registry = MlflowRegistry(RegistryConfig(work_dir=str(work_dir)))
    assert len(registry.client.search_model_versions("name='mmoe-ranker'")) == 1


def test_a_damaged_model_is_refused_and_not_registered(first_run, work_dir):
    progress = StepProgress()
    result = run_locally(settings(work_dir, DAMAGED_MODEL), progress)

    steps = statuses(progress)
    assert steps["extract-features"] == "CACHED"  # only what depends on the model config re-runs
    assert steps["train-mmoe"] == "SUCCESS"
    assert not result.blessed
    assert result.registered is None
    assert "register-model" not in steps
    blessing = json.loads(Path(result.artifact_path("blessing")).read_text())
    assert any("champion" in reason for reason in blessing["reasons"]), blessing["reasons"]
    registry = MlflowRegistry(RegistryConfig(work_dir=str(work_dir)))
    assert len(registry.client.search_model_versions("name='mmoe-ranker'")) == 1
    assert registry.alias_version(CHAMPION) == "1"
    assert "Blessed: no" in format_summary(result)
    run_id = result.outputs["tracking_run_id"]
    assert_tracked(registry, run_id, "refused")
    assert "champion" in registry.client.get_run(run_id).data.tags[REASONS_TAG]
    assert f"Tracked:  MLflow run {run_id}" in format_summary(result)


def test_a_rerun_with_another_evaluation_config_after_a_failed_evaluation_reuses_the_upstream_steps(
    first_run, work_dir
):
    model = json.dumps({"epochs": 1, "batch_size": 512, "seed": 5})  # trained first by the failing run
    with pytest.raises(RuntimeError, match="evaluate"):
        run_locally(settings(work_dir, model, split="no_such_split"), StepProgress(io.StringIO()))

    progress = StepProgress(io.StringIO())
    run_locally(settings(work_dir, model, tolerance=0.5), progress)

    steps = statuses(progress)
    upstream = ("simulate-marketplace", "extract-features", "train-mmoe", "train-baseline")
    assert {step: steps[step] for step in upstream} == dict.fromkeys(upstream, "CACHED"), steps
    assert steps["evaluate"] == "SUCCESS"


def test_a_failed_step_is_named_with_its_error_and_the_log_of_its_output(tmp_path):
    progress = StepProgress(io.StringIO())
    missing = PipelineSettings(
        work_dir=str(tmp_path),
        data_uri=str(tmp_path / "no_such_logs" / "*.parquet"),
        registry=RegistryConfig(work_dir=str(tmp_path)),
    )
    with pytest.raises(StepFailedError) as failed:
        run_locally(missing, progress)
    error = failed.value.errors["extract-features"]
    assert list(failed.value.errors) == ["extract-features"]
    assert error is not None and error.startswith("ExtractionError: 1 problem(s) with the data:\n  - ")
    assert "no_such_logs" in error and "Traceback" not in error
    report = failed.value.report(prefix="ranker run: ").splitlines()
    assert report[0] == "ranker run: step 'extract-features' failed: ExtractionError: 1 problem(s) with the data:"
    assert re.fullmatch(r"The traceback and every step's output: .*/logs/run-.*\.log", report[-1])
    assert "Traceback (most recent call last)" in failed.value.log_path.read_text()
    assert "last lines of the step output" not in progress.stream.getvalue()  # the error says it all
    [tracked] = list_runs(missing.registry)  # the run's MLflow run is closed as failed, with the reason
    assert (tracked.status, tracked.verdict) == ("FAILED", "failed")
    reason = MlflowRegistry(missing.registry).client.get_run(tracked.run_id).data.tags[FAILURE_TAG]
    assert reason == failed.value.headline  # the step's error, not kfp's message
