"""``ranker run`` stopped early: Ctrl-C during a step, or a work dir it cannot write. No step really runs here:
the pipeline call is replaced, the MLflow store is the real SQLite one."""

import logging
from pathlib import Path

import pytest

import pipelines.pipeline
from components.registry.core import RegistryConfig
from components.registry.mlflow_store import MlflowRegistry
from components.tracking.mlflow_runs import FAILURE_TAG, start_pipeline_run
from components.tracking.runs import list_runs
from pipelines import kfp_local
from pipelines.cli import main
from pipelines.config import PipelineSettings
from pipelines.local_run import RunInterrupted, StepProgress, run_locally


def interrupted_pipeline(settings: PipelineSettings, step: str = "train-mmoe"):
    """A pipeline whose run opens its MLflow run (as ``start-tracking`` does), starts ``step``, then gets Ctrl-C."""

    def pipeline(**_arguments):
        start_pipeline_run(settings.registry, "mmoe-ranker-interrupted", {"data_uri": ""})
        logging.getLogger().info("Executing task 'start-tracking'")  # kfp.local logs on the root logger
        logging.getLogger().info("Task 'start-tracking' finished with status SUCCESS")
        logging.getLogger().info(f"Executing task '{step}'")
        raise KeyboardInterrupt

    return pipeline


def test_ctrl_c_ends_the_mlflow_run_killed_and_says_how_to_resume(tmp_path, monkeypatch, capsys):
    settings = PipelineSettings(work_dir=str(tmp_path), registry=RegistryConfig(work_dir=str(tmp_path)))
    monkeypatch.setattr(pipelines.pipeline, "build_pipeline", lambda _settings: interrupted_pipeline(settings))

    assert main(["run", "--work-dir", str(tmp_path)]) == 130

    err = capsys.readouterr().err.splitlines()
    assert err[-1] == "ranker run: interrupted during step 'train-mmoe'; finished steps are cached, rerun to resume"
    assert not any("Traceback" in line or "KeyboardInterrupt" in line for line in err)
    [tracked] = list_runs(settings.registry)
    assert (tracked.status, tracked.verdict) == ("KILLED", "killed")
    assert MlflowRegistry(settings.registry).client.get_run(tracked.run_id).data.tags[FAILURE_TAG] == "interrupted"


def test_an_interrupted_run_is_a_keyboard_interrupt_naming_its_step(tmp_path, monkeypatch):
    settings = PipelineSettings(
        work_dir=str(tmp_path), enable_caching=False, registry=RegistryConfig(work_dir=str(tmp_path))
    )
    monkeypatch.setattr(pipelines.pipeline, "build_pipeline", lambda _settings: interrupted_pipeline(settings, "x"))
    with pytest.raises(KeyboardInterrupt) as stopped:
        run_locally(settings, StepProgress(echo=True))
    assert isinstance(stopped.value, RunInterrupted) and stopped.value.step == "x"
    assert str(stopped.value) == "interrupted during step 'x'; caching is off, a rerun starts over"
    assert [run.status for run in list_runs(settings.registry)] == ["KILLED"]


@pytest.mark.parametrize("below", ["", "deeper"])
def test_a_work_dir_that_cannot_be_created_is_one_line_naming_it(tmp_path, monkeypatch, capsys, below):
    # Tests may run as root, whom permission bits do not stop: a folder under a regular file cannot be made.
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    work_dir = blocker / below if below else blocker
    monkeypatch.setattr(pipelines.pipeline, "build_pipeline", lambda _settings: pytest.fail("a step ran"))

    assert main(["run", "--work-dir", str(work_dir)]) == 2

    err = capsys.readouterr().err.splitlines()
    assert err == [f"ranker run: --work-dir {work_dir}: {blocker} is a file, not a folder"]  # one line, no banner


def test_a_work_dir_that_cannot_be_written_is_one_line_naming_the_folder(tmp_path, monkeypatch, capsys):
    settings = PipelineSettings(work_dir=str(tmp_path), registry=RegistryConfig(work_dir=str(tmp_path)))
    logs = tmp_path / "logs"
    real_access = __import__("os").access
    monkeypatch.setattr("os.access", lambda path, mode: Path(path) != logs and real_access(path, mode))
    monkeypatch.setattr(pipelines.pipeline, "build_pipeline", lambda _settings: pytest.fail("a step ran"))
    with pytest.raises(Exception, match=rf"--work-dir {tmp_path}: cannot write {logs}: Permission denied"):
        run_locally(settings, StepProgress())


def test_the_code_digest_is_written_only_when_it_changes(tmp_path, monkeypatch):
    cache = tmp_path / kfp_local.CACHE_FOLDER
    assert not kfp_local.forget_cache_of_other_code(cache, "a")  # nothing cached yet: nothing forgotten
    (cache / "entry.json").write_text("{}")
    written = []
    monkeypatch.setattr(Path, "write_text", lambda path, text, *_args, **_kw: written.append(path))
    assert not kfp_local.forget_cache_of_other_code(cache, "a")  # a read-only copy of the cache works
    assert written == [] and (cache / "entry.json").exists()
    monkeypatch.undo()
    assert kfp_local.forget_cache_of_other_code(cache, "b")  # other code: the entries go, the new digest is kept
    assert not (cache / "entry.json").exists()
    assert (cache / kfp_local.CODE_DIGEST_FILE).read_text() == "b\n"
