"""The evaluation of a really trained (tiny) MMoE, through the library, the CLI and the kfp component."""

import json

import pytest

from components.evaluation.evaluate import EvaluationConfig, evaluate
from tests.evaluation.conftest import FAST
from tests.trainer.conftest import TINY_CONFIG

TINY_MMOE = {**TINY_CONFIG, "epochs": 2, "learning_rate": 0.01}


@pytest.fixture(scope="module")
def mmoe_dir(synthetic_examples, tmp_path_factory):
    from trainer.config import TrainerConfig
    from trainer.train import train_and_export

    model_dir = tmp_path_factory.mktemp("mmoe") / "model"
    train_and_export(synthetic_examples, model_dir, TrainerConfig.from_sources(json.dumps(TINY_MMOE)))
    return model_dir


@pytest.mark.slow
def test_a_trained_mmoe_is_evaluated_with_its_gate_usage(synthetic_examples, baseline_dir, mmoe_dir, tmp_path):
    result = evaluate(EvaluationConfig(**FAST), synthetic_examples, {"mmoe": str(mmoe_dir)}, baseline_dir, tmp_path)
    mmoe = result.test.find("mmoe", "all", "click", "ndcg@10")["value"]
    assert mmoe > result.test.find("random", "all", "click", "ndcg@10")["value"] + 0.05
    assert result.gate_usage is not None and set(result.gate_usage["weights"]) == {"home_feed", "item_page", "search"}
    assert {row["model"] for row in result.test.calibration} == {"mmoe"}
    html = (tmp_path / "report.html").read_text()
    assert "Gate usage" in html and "Calibration" in html


@pytest.mark.slow
def test_cli_prints_the_table_and_the_verdict(synthetic_examples, baseline_dir, mmoe_dir, tmp_path, capsys):
    from pipelines.cli import main

    argv = ["evaluate", "--examples", str(synthetic_examples), "--model", str(mmoe_dir)]
    argv += ["--baseline", str(baseline_dir), "--out", str(tmp_path)]
    argv += ["--champion", str(mmoe_dir), "--bootstrap-samples", "100", "--fail-if-not-blessed"]
    assert main(argv) == 3  # a copy of the champion does not beat the champion
    out = capsys.readouterr().out
    assert "NOT BLESSED" in out and "does not beat champion" in out
    for model in ("mmoe", "champion", "gbdt_per_module", "gbdt_global", "random"):
        assert f"\n{model} " in out
    assert json.loads((tmp_path / "blessing.json").read_text())["blessed"] is False


@pytest.mark.slow
def test_component_runs_under_kfp_local(synthetic_examples, baseline_dir, mmoe_dir, kfp_local_root):
    from kfp import dsl

    from components.evaluation.component import evaluate as evaluate_component

    @dsl.pipeline
    def judge(examples_uri: str, model_uri: str, baseline_uri: str) -> bool:
        examples = dsl.importer(artifact_uri=examples_uri, artifact_class=dsl.Dataset)
        model = dsl.importer(artifact_uri=model_uri, artifact_class=dsl.Model)
        baseline = dsl.importer(artifact_uri=baseline_uri, artifact_class=dsl.Model)
        verdict = evaluate_component(
            examples=examples.output,
            model=model.output,
            baseline=baseline.output,
            config_json=json.dumps(FAST),
        )
        return verdict.outputs["blessed"]

    run = judge(examples_uri=str(synthetic_examples), model_uri=str(mmoe_dir), baseline_uri=str(baseline_dir))
    assert isinstance(run.output, bool)
    blessings = list(kfp_local_root.rglob("blessing"))
    assert len(blessings) == 1 and json.loads(blessings[0].read_text())["blessed"] is run.output
    reports = list(kfp_local_root.rglob("report"))
    assert reports and "<html>" in reports[0].read_text()
