"""MultiWorkerMirroredStrategy for real: two `python -m trainer.task` processes on loopback.

A Vertex AI custom job with two replicas (worker pool 0: the chief, worker
pool 1: one worker) starts the same container on both machines with the same
``AIP_*`` paths and a ``TF_CONFIG`` naming the task each one plays. This test
does the same with two local processes that talk gRPC over 127.0.0.1.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.trainer.conftest import TINY_CONFIG
from tests.trainer.test_distributed import eval_loss_from_predictions

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 150
# 160 splits the 800 eval rows into 5 equal batches (so the mean of batch losses is the mean over rows);
# steps_per_execution stays above 1: the trainer must run one step per call across workers.
CONFIG = {**TINY_CONFIG, "epochs": 2, "batch_size": 160}


def free_ports(count: int) -> list[int]:
    """Ports the OS says are free on 127.0.0.1 (all bound at once, so they differ)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def vertex_tf_config(cluster: dict[str, list[str]], task_type: str) -> str:
    """The ``TF_CONFIG`` Vertex AI sets on a replica: worker pool 0 is ``chief``, pool 1 ``worker``."""
    return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": 0}, "environment": "cloud"})


def tails(logs: dict[str, Path], chars: int = 3000) -> str:
    """The end of each process's log, for a failure message."""
    return "\n".join(f"--- {name}:\n{path.read_text(errors='replace')[-chars:]}" for name, path in logs.items())


def run_cluster(examples: Path, out: Path) -> dict[str, Path]:
    """Start the chief and the worker, wait for both (killing both on timeout); the log file of each."""
    chief_port, worker_port = free_ports(2)
    cluster = {"chief": [f"127.0.0.1:{chief_port}"], "worker": [f"127.0.0.1:{worker_port}"]}
    logs, processes = {}, {}
    for task_type in ("chief", "worker"):
        env = {
            **os.environ,
            "TF_CONFIG": vertex_tf_config(cluster, task_type),
            "AIP_MODEL_DIR": f"{out}/model/",
            "AIP_CHECKPOINT_DIR": f"{out}/checkpoints/",
            "TF_NUM_INTRAOP_THREADS": "1",  # two TensorFlow processes share a small machine
        }
        logs[task_type] = out / f"{task_type}.log"
        command = [sys.executable, "-m", "trainer.task", "--examples", str(examples), "--config", json.dumps(CONFIG)]
        with logs[task_type].open("w") as log:
            processes[task_type] = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + TIMEOUT_S
    try:
        for process in processes.values():
            process.wait(timeout=max(deadline - time.monotonic(), 1))
    except subprocess.TimeoutExpired:
        for process in processes.values():
            process.kill()
            process.wait()
        pytest.fail(f"the cluster did not finish in {TIMEOUT_S}s\n{tails(logs)}")
    failed = {name: process.returncode for name, process in processes.items() if process.returncode != 0}
    assert not failed, f"exit codes {failed}\n{tails(logs)}"
    return logs


@pytest.mark.slow
def test_two_workers_train_in_sync_and_only_the_chief_exports(synthetic_examples, tmp_path):
    from trainer.examples import read_split
    from trainer.predict import load_ranker

    logs = run_cluster(synthetic_examples, tmp_path)

    # The global batch was split over one replica per process.
    for task_type, log in logs.items():
        assert "CollectiveAllReduceStrategy with 2 replicas in sync" in log.read_text(), task_type

    # The chief exports to AIP_MODEL_DIR; the worker's copy stays outside it.
    model_dir, worker_dir = tmp_path / "model", tmp_path / "model.worker-worker-0"
    assert (model_dir / "saved_model.pb").exists() and (model_dir / "metrics.json").exists()
    assert not [path.name for path in model_dir.iterdir() if path.name.startswith(".worker")]
    assert (worker_dir / "saved_model.pb").exists()
    checkpoints = sorted(path.name for path in (tmp_path / "checkpoints").iterdir())
    assert any(name.startswith("epoch-002") for name in checkpoints), checkpoints
    assert not [name for name in checkpoints if name.startswith("workertemp")], checkpoints

    # Metrics are reported once, not summed over the workers: the AUCs are AUCs and the eval loss is the
    # exported model's loss on the eval split.
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["epochs_trained"] == 2
    assert all(0.0 < value <= 1.0 for name, value in metrics["eval_metrics"].items() if name.endswith("_auc"))
    expected_loss = eval_loss_from_predictions(model_dir, synthetic_examples, CONFIG)
    assert metrics["eval_metrics"]["ranking_loss"] == pytest.approx(expected_loss, rel=2e-3)

    ranker = load_ranker(model_dir)
    test = read_split(synthetic_examples, "test", ranker.feature_spec)
    scored = ranker.predict(test)
    for task in ranker.task_names:
        assert np.all(np.isfinite(scored[task])) and np.all((scored[task] >= 0) & (scored[task] <= 1)), task

    # MultiWorkerMirroredStrategy keeps the replicas' weights identical: the worker's copy scores the same.
    worker_scored = load_ranker(worker_dir).predict(test)
    for name, values in scored.items():
        np.testing.assert_allclose(worker_scored[name], values, rtol=1e-6, atol=1e-7, err_msg=name)


def test_a_split_with_fewer_files_than_workers_is_sharded_by_record(synthetic_examples, monkeypatch):
    import tensorflow as tf

    from trainer.distribute import shard_policy
    from trainer.inputs import make_dataset
    from trainer.storage import load_feature_spec

    policy = tf.data.experimental.AutoShardPolicy
    cluster = {"chief": ["127.0.0.1:1"], "worker": ["127.0.0.1:2"]}
    two_workers = {"TF_CONFIG": vertex_tf_config(cluster, "worker")}
    assert shard_policy(1, two_workers) == policy.DATA  # AUTO would fail: 1 file for 2 workers
    assert shard_policy(2, two_workers) == policy.AUTO  # each worker reads its own files
    assert shard_policy(1, {}) == policy.AUTO

    monkeypatch.setenv("TF_CONFIG", two_workers["TF_CONFIG"])
    batches = make_dataset(synthetic_examples, "eval", load_feature_spec(str(synthetic_examples)), 64)
    assert batches.options().experimental_distribute.auto_shard_policy == policy.DATA
