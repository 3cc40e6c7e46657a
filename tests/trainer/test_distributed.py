"""Training under tf.distribute.MirroredStrategy, simulated with two logical CPU devices."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.trainer.conftest import TINY_CONFIG

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import trainer
    import tensorflow as tf

    # Logical devices must exist before TensorFlow initializes, hence a separate process.
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    strategy = tf.distribute.MirroredStrategy(
        ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice()
    )
    from trainer.config import TrainerConfig
    from trainer.train import train_and_export

    examples, model_dir, config = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    result = train_and_export(examples, model_dir, TrainerConfig(**config), strategy=strategy)
    print(json.dumps({"replicas": strategy.num_replicas_in_sync, **result.eval_metrics}))
    """
)


def eval_loss_from_predictions(model_dir: Path, examples: Path, config: dict) -> float:
    """Sum over tasks of the positive-weighted BCE, recomputed from the exported probabilities."""
    from ranker_core.schema import label_key
    from trainer.config import TrainerConfig
    from trainer.examples import read_split
    from trainer.model import positive_weights
    from trainer.predict import load_ranker

    ranker = load_ranker(model_dir)
    columns = read_split(examples, "eval", ranker.feature_spec)
    outputs = ranker.predict(columns)
    weights = positive_weights(ranker.feature_spec, TrainerConfig(**config))
    total = 0.0
    for task in ranker.task_names:
        labels = columns[label_key(task)].astype(np.float64)
        probability = np.clip(outputs[task].astype(np.float64), 1e-7, 1 - 1e-7)
        logit = np.log(probability / (1 - probability)) + np.log(weights[task])  # undo the calibration
        bce = np.logaddexp(0.0, logit) - labels * logit
        total += np.mean((1.0 + (weights[task] - 1.0) * labels) * bce)
    return total


@pytest.mark.slow
@pytest.mark.parametrize("weight_averaging", [0.0, 0.9])
def test_mirrored_strategy_trains_and_reports_the_unscaled_loss(synthetic_examples, tmp_path, weight_averaging):
    # one eval batch (800 rows), so the reported mean loss is the loss over the whole split; with weight
    # averaging, the average's (mirrored like the weights), which is also what is exported
    config = {**TINY_CONFIG, "epochs": 1, "batch_size": 1024, "steps_per_execution": 1}
    config["weight_averaging"] = weight_averaging
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(synthetic_examples), str(tmp_path / "model"), json.dumps(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    metrics = json.loads(completed.stdout.strip().splitlines()[-1])
    assert metrics["replicas"] == 2
    # each replica's loss is 1/replicas of its share; the reported ranking_loss is the true mean
    expected = eval_loss_from_predictions(tmp_path / "model", synthetic_examples, config)
    assert metrics["ranking_loss"] == pytest.approx(expected, rel=2e-3)
