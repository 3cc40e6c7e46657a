"""The kfp.local adapter: pinned to the kfp version it was written for, and what it reads from kfp.local."""

import json
import os

import kfp
import pytest

from pipelines import kfp_local
from pipelines.kfp_local import StepEvent, parse_log_line


def test_kfp_is_the_version_the_adapter_was_written_for():
    # On another kfp version, review pipelines/kfp_local.py (log lines, cache files, warnings), then bump KFP_VERSION.
    assert kfp.__version__ == kfp_local.KFP_VERSION, (
        f"kfp {kfp.__version__} is installed but pipelines/kfp_local.py was written for kfp {kfp_local.KFP_VERSION}"
    )


def test_kfp_local_log_lines_become_step_events():
    started = parse_log_line("Executing task \x1b[96m'extract-features'\x1b[0m")
    assert started == StepEvent("started", "extract-features")
    assert parse_log_line("Task 'train-mmoe' finished with status \x1b[92mSUCCESS\x1b[0m") == StepEvent(
        "finished", "train-mmoe", "SUCCESS"
    )
    assert parse_log_line("Task 'evaluate' cache hit") == StepEvent("cached", "evaluate", "CACHED")
    assert parse_log_line("Streamed logs:") is None


def test_cached_metrics_artifacts_get_their_files(tmp_path):
    metrics = tmp_path / "evaluate" / "metrics"
    entry = {"metrics": {"schema_title": "system.Metrics", "uri": str(metrics), "metadata": {"ndcg": 0.5}}}
    (tmp_path / "entry.json").write_text(json.dumps(entry))
    assert kfp_local.materialize_metrics(tmp_path) == 1
    assert json.loads(metrics.read_text()) == {"ndcg": 0.5}
    assert kfp_local.materialize_metrics(tmp_path) == 0


def test_a_module_in_the_callers_folder_does_not_shadow_what_a_step_imports(tmp_path, monkeypatch, kfp_config_kept):
    from components.base import ranker_component

    monkeypatch.delenv("PYTHONSAFEPATH", raising=False)

    folder = tmp_path / "caller"
    folder.mkdir()
    (folder / "json.py").write_text("raise ImportError('the caller folder shadowed json')\n")
    monkeypatch.chdir(folder)
    kfp_local.init(tmp_path / "root", docker=False, enable_caching=False)

    @ranker_component
    def dumps() -> str:
        import json

        return json.dumps([1])

    with kfp_local.quiet_warnings(), kfp_local.caller_folder_not_imported():
        assert dumps().output == "[1]"
    assert "PYTHONSAFEPATH" not in os.environ


@pytest.fixture
def kfp_config_kept():
    """``kfp_local.init`` sets kfp.local's process-wide configuration: leave it as other tests found it."""
    from kfp.local import config

    saved = config.LocalExecutionConfig.instance
    yield
    config.LocalExecutionConfig.instance = saved
