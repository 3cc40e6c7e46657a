"""Server configuration from the environment (Vertex AI's AIP_* variables included)."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from serving.config import ServerConfig


def test_vertex_variables_configure_port_routes_and_model():
    config = ServerConfig.from_env(
        {
            "AIP_HTTP_PORT": "9000",
            "AIP_PREDICT_ROUTE": "/v1/endpoints/1/deployedModels/2:predict",
            "AIP_HEALTH_ROUTE": "/v1/endpoints/1/deployedModels/2",
            "AIP_STORAGE_URI": "gs://bucket/model",
        }
    )
    assert config.http_port == 9000
    assert config.predict_route.endswith(":predict") and config.health_route.endswith("/2")
    assert config.model_uri == "gs://bucket/model"


def test_model_uri_wins_over_storage_uri_and_overrides_win_over_both():
    environ = {"MODEL_URI": "models:/mmoe-ranker@champion", "AIP_STORAGE_URI": "gs://b/m", "RANKER_ACCESS_LOG": "no"}
    assert ServerConfig.from_env(environ).model_uri == "models:/mmoe-ranker@champion"
    assert ServerConfig.from_env(environ).access_log is False
    assert ServerConfig.from_env(environ, model_uri="/local").model_uri == "/local"


def test_defaults_apply_without_environment():
    config = ServerConfig.from_env({})
    assert (config.http_port, config.predict_route, config.health_route) == (8080, "/predict", "/health")
    assert (config.batching, config.batch_wait_ms, config.model_threads, config.op_threads) == (True, 0.0, 2, 1)
    assert ServerConfig.from_env({"RANKER_OP_THREADS": "0"}).op_threads == 0


def test_op_threads_set_tensorflow_thread_pools_before_the_model_loads():
    # a fresh interpreter: thread pools can only be sized before TensorFlow runs anything
    script = (
        "import tensorflow as tf; from trainer.predict import set_op_threads; set_op_threads(1); "
        "tf.constant(1.0) + 1; threading = tf.config.threading; "
        "print(threading.get_intra_op_parallelism_threads(), threading.get_inter_op_parallelism_threads())"
    )
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert completed.stdout.split()[-2:] == ["1", "1"]


def test_bad_environment_value_names_the_variable():
    with pytest.raises(ValueError, match=r"max_candidates \(env RANKER_MAX_CANDIDATES\): Input should be a valid int"):
        ServerConfig.from_env({"RANKER_MAX_CANDIDATES": "many"})


def test_batching_reads_every_boolean_spelling():
    assert ServerConfig.from_env({"RANKER_BATCHING": "on"}).batching is True
    assert ServerConfig.from_env({"RANKER_BATCHING": "OFF"}).batching is False
    with pytest.raises(ValueError, match="RANKER_BATCHING='sometimes' is not a boolean"):
        ServerConfig.from_env({"RANKER_BATCHING": "sometimes"})


def test_workers_must_be_at_least_one():
    assert ServerConfig.from_env({"RANKER_WORKERS": "2"}).workers == 2
    with pytest.raises(ValueError, match=r"workers \(env RANKER_WORKERS\): must be at least 1 \(got '0'\)"):
        ServerConfig.from_env({"RANKER_WORKERS": "0"})


def test_the_stall_dump_threshold_is_off_or_above_the_watchdogs_tick():
    assert ServerConfig.from_env({"RANKER_STALL_DUMP_S": "0"}).stall_dump_s == 0
    assert ServerConfig.from_env({"RANKER_STALL_DUMP_S": "1.5"}).stall_dump_s == 1.5
    for seconds in ("0.1", "-1"):
        message = rf"RANKER_STALL_DUMP_S\): must be 0 \(off\) or more than 0.25 s \(got '{seconds}'\)"
        with pytest.raises(ValueError, match=message):
            ServerConfig.from_env({"RANKER_STALL_DUMP_S": seconds})


def test_the_heap_freeze_is_on_by_default_and_off_by_flag_or_environment():
    from serving import cli

    assert ServerConfig.from_env({}).gc_freeze is True
    assert ServerConfig.from_env({"RANKER_GC_FREEZE": "off"}).gc_freeze is False
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert (parser.parse_args([]).gc_freeze, parser.parse_args(["--no-gc-freeze"]).gc_freeze) == (True, False)
