"""The Vertex AI entry point: AIP_* paths, chief/worker roles and the tf.distribute choice."""

import argparse
import json

import pytest
import tensorflow as tf

from trainer import cli
from trainer.distribute import choose_strategy, cluster_workers, is_chief
from trainer.task import resolve_paths


def parse(argv):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser, require_paths=False)
    return parser.parse_args(argv)


def tf_config(task_type: str, index: int, workers: int = 2, chief: bool = True) -> str:
    cluster = {"worker": [f"w{i}:2222" for i in range(workers)]}
    if chief:
        cluster["chief"] = ["c:2222"]
    return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})


def test_vertex_paths_come_from_aip_variables_and_flags_win():
    environ = {
        "AIP_MODEL_DIR": "gs://bucket/model",
        "AIP_CHECKPOINT_DIR": "gs://bucket/ckpt",
        "AIP_TENSORBOARD_LOG_DIR": "gs://bucket/tb",
    }
    args = resolve_paths(parse(["--examples", "gs://bucket/examples", "--tensorboard-dir", "/local/tb"]), environ)
    assert (args.model_dir, args.checkpoint_dir, args.tensorboard_dir) == (
        "gs://bucket/model",
        "gs://bucket/ckpt",
        "/local/tb",
    )


def test_missing_paths_are_a_clear_error():
    with pytest.raises(SystemExit, match="examples, model_dir"):
        resolve_paths(parse([]), {})


def test_only_the_chief_writes_the_export():
    assert is_chief({}) and is_chief({"TF_CONFIG": tf_config("chief", 0)})
    assert not is_chief({"TF_CONFIG": tf_config("worker", 0)})
    assert is_chief({"TF_CONFIG": tf_config("worker", 0, chief=False)})
    worker = {"TF_CONFIG": tf_config("worker", 1), "AIP_MODEL_DIR": "gs://b/model/", "AIP_CHECKPOINT_DIR": "gs://b/c"}
    args = resolve_paths(parse(["--examples", "gs://b/examples"]), worker)
    # beside the chief's model, not inside it; checkpoints go through Keras, which keeps only the chief's
    assert args.model_dir == "gs://b/model.worker-worker-1" and args.checkpoint_dir == "gs://b/c"


def test_strategy_follows_the_cluster_and_devices():
    assert cluster_workers({}) == 1
    assert cluster_workers({"TF_CONFIG": tf_config("chief", 0, workers=3)}) == 4
    strategy = choose_strategy({})
    expected = len(tf.config.list_logical_devices("GPU"))
    assert strategy.num_replicas_in_sync == max(expected, 1)


def test_cli_flags_override_the_config_json():
    args = parse(
        ["--config", '{"epochs": 5, "architecture": "ple"}', "--epochs", "2", "--expert-types", "mlp", "cross"]
    )
    config = cli.config_from_args(args)
    assert (config.epochs, config.architecture, config.expert_types) == (2, "ple", ["mlp", "cross"])


def test_position_bias_and_embedding_l2_flags():
    assert cli.config_from_args(parse([])).position_bias is False
    config = cli.config_from_args(parse(["--position-bias", "--embedding-l2", "0"]))
    assert (config.position_bias, config.embedding_l2) == (True, 0.0)
    assert cli.config_from_args(parse(["--ensemble-size", "3"])).ensemble_size == 3
    overridden = cli.config_from_args(parse(["--config", '{"position_bias": true}', "--no-position-bias"]))
    assert overridden.position_bias is False
