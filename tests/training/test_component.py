"""The train_mmoe component under kfp.local, and its library body with stand-in artifacts."""

import json

import pytest

from tests.trainer.conftest import TINY_CONFIG

TINY_RUN = {**TINY_CONFIG, "epochs": 2}


class FakeMetrics:
    """What the component body needs of a kfp Metrics/Model artifact."""

    def __init__(self, path: str = "") -> None:
        self.path, self.metadata, self.logged = path, {}, {}

    def log_metric(self, name: str, value: float) -> None:
        self.logged[name] = value


@pytest.mark.slow
def test_component_body_logs_metrics_gate_usage_and_model_metadata(synthetic_examples, tmp_path):
    from trainer.train import train_from_component

    model, metrics, gates = FakeMetrics(str(tmp_path / "model")), FakeMetrics(), FakeMetrics()
    config = {**TINY_RUN, "architecture": "ple", "ple_levels": 1, "epochs": 1}
    result = train_from_component(str(synthetic_examples), model, metrics, gates, json.dumps(config))
    assert (tmp_path / "model" / "saved_model.pb").exists()
    assert model.metadata["architecture"] == "ple" and model.metadata["best_epoch"] == result.best_epoch
    assert {"click_auc", "purchase_auc", "ranking_loss", "best_epoch"} <= set(metrics.logged)
    experts = result.gate_usage["experts"]
    assert len(experts) == len(TINY_CONFIG["expert_types"]) + 4  # shared experts + one per task
    assert f"weight.search.click.{experts[0]}" in gates.logged and "entropy.search.purchase" in gates.logged
    assert gates.metadata["gate_usage"] == result.gate_usage


@pytest.mark.slow
def test_component_runs_under_kfp_local(synthetic_examples, kfp_local_root):
    from kfp import dsl

    from components.training.component import train_mmoe

    @dsl.pipeline
    def train_only(examples_uri: str):
        examples = dsl.importer(artifact_uri=examples_uri, artifact_class=dsl.Dataset)
        train_mmoe(examples=examples.output, config_json=json.dumps(TINY_RUN))

    run = train_only(examples_uri=str(synthetic_examples))
    assert run is not None
    models = [path.parent for path in kfp_local_root.rglob("saved_model.pb")]
    assert len(models) == 1
    assert json.loads((models[0] / "trainer_config.json").read_text())["epochs"] == 2
    usage = json.loads((models[0] / "gate_usage.json").read_text())
    assert set(usage["weights"]) == {"home_feed", "item_page", "search"}
    events = list(kfp_local_root.rglob("tensorboard/train/events.out.tfevents.*"))
    assert len(events) == 1, "the step writes its TensorBoard logs into its tensorboard artifact by default"


def test_component_signature_matches_the_pipeline_contract():
    from components.training.component import train_mmoe

    inputs = train_mmoe.component_spec.inputs
    outputs = train_mmoe.component_spec.outputs
    assert set(inputs) == {"examples", "config_json"} and inputs["config_json"].default == "{}"
    assert set(outputs) == {"model", "metrics", "gate_usage", "tensorboard"}
    assert "Model" in outputs["model"].type and "Metrics" in outputs["gate_usage"].type
