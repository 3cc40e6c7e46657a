"""One-line refusals, exit 2: `ranker serve`'s settings, `ranker skew-check`'s inputs, `ranker loadtest`'s flags."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from ranker_core.cli_support import InvalidValueError, MissingInputError
from ranker_core.feature_store import SNAPSHOT_DIR, SNAPSHOT_FILE
from ranker_core.schema import FEATURE_SPEC_FILE, Feature
from serving.config import RANGES, ServerConfig, value_problem
from tests.conftest import synthetic_feature_spec


def ranker(capsys, *argv: str) -> tuple[int, str]:
    """``ranker ARGV``'s exit status and its stderr."""
    from pipelines.cli import main

    try:
        status = main(list(argv))
    except SystemExit as exit_:  # an argparse usage error
        status = exit_.code
    return status, capsys.readouterr().err


# -- ranker serve: every numeric setting in its range, refused at start-up -------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("RANKER_MODEL_THREADS", "0", "model_threads (env RANKER_MODEL_THREADS): must be at least 1 (got '0')"),
        ("RANKER_OP_THREADS", "-1", "op_threads (env RANKER_OP_THREADS): must be at least 0 (got '-1')"),
        ("AIP_HTTP_PORT", "99999", "http_port (env AIP_HTTP_PORT): must be between 1 and 65535 (got '99999')"),
        ("PORT", "0", "http_port (env PORT): must be between 1 and 65535 (got '0')"),
        ("RANKER_MAX_CANDIDATES", "0", "max_candidates (env RANKER_MAX_CANDIDATES): must be at least 1"),
        ("RANKER_MAX_INSTANCES", "0", "max_instances (env RANKER_MAX_INSTANCES): must be at least 1"),
        ("RANKER_MAX_REQUEST_CANDIDATES", "-3", "max_request_candidates (env RANKER_MAX_REQUEST_CANDIDATES): must"),
        ("RANKER_MAX_BODY_BYTES", "0", "max_body_bytes (env RANKER_MAX_BODY_BYTES): must be at least 1"),
        ("RANKER_MAX_BATCH_CANDIDATES", "0", "max_batch_candidates (env RANKER_MAX_BATCH_CANDIDATES): must be at"),
        ("RANKER_BODY_TIMEOUT_S", "-1", "body_timeout_s (env RANKER_BODY_TIMEOUT_S): must be at least 0"),
        ("RANKER_BODY_TIMEOUT_S", "nan", "body_timeout_s (env RANKER_BODY_TIMEOUT_S): must be a finite number"),
        ("RANKER_FEATURE_TIMEOUT_S", "inf", "feature_timeout_s (env RANKER_FEATURE_TIMEOUT_S): must be a finite"),
        ("RANKER_BATCH_WAIT_MS", "-0.5", "batch_wait_ms (env RANKER_BATCH_WAIT_MS): must be at least 0"),
        ("RANKER_GRACE_PERIOD_S", "-1", "grace_period_s (env RANKER_GRACE_PERIOD_S): must be at least 0"),
        ("RANKER_FEATURE_CACHE_SECONDS", "-1", "feature_cache_seconds (env RANKER_FEATURE_CACHE_SECONDS): must be"),
        ("RANKER_FEATURE_CACHE_ENTRIES", "-1", "feature_cache_entries (env RANKER_FEATURE_CACHE_ENTRIES): must be"),
        ("RANKER_WORKERS", "0", "workers (env RANKER_WORKERS): must be at least 1 (got '0')"),
        ("RANKER_STALL_DUMP_S", "nan", "stall_dump_s (env RANKER_STALL_DUMP_S): must be a finite number"),
        ("AIP_PREDICT_ROUTE", "predict", "predict_route (env AIP_PREDICT_ROUTE): must start with '/'"),
    ],
)
def test_a_setting_out_of_range_is_refused_naming_its_variable(variable, value, message):
    with pytest.raises(InvalidValueError, match="^ServerConfig: " + message.replace("(", r"\(").replace(")", r"\)")):
        ServerConfig.from_env({variable: value})


def test_the_edges_of_each_range_are_accepted():
    edges = {field: least for field, (least, _) in RANGES.items()} | {"http_port": 65535, "stall_dump_s": 0.0}
    config = ServerConfig(**edges)
    assert (config.model_threads, config.op_threads, config.http_port, config.body_timeout_s) == (1, 0, 65535, 0)
    assert ServerConfig(http_port=1).http_port == 1


def test_every_ranged_setting_is_a_flag_of_ranker_serve():
    from serving.cli import _FLAGS

    assert set(RANGES) <= {field for field, _, _ in _FLAGS.values()}
    assert value_problem("model_threads", 2) == value_problem("http_port", 8080) == ""


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--model-threads", "0"], "--model-threads 0: must be at least 1"),
        (["--port", "99999"], "--port 99999: must be between 1 and 65535"),
        (["--max-candidates", "0"], "--max-candidates 0: must be at least 1"),
        (["--op-threads", "-2"], "--op-threads -2: must be at least 0"),
        (["--body-timeout", "nan"], "--body-timeout nan: must be a finite number"),
        (["--feature-cache-entries", "-1"], "--feature-cache-entries -1: must be at least 0"),
        (["--stall-dump", "0.1"], "--stall-dump 0.1: must be 0 (off) or more than 0.25 s"),
        (["--health-route", "health"], "--health-route health: must start with '/'"),
    ],
)
def test_ranker_serve_refuses_a_flag_out_of_range_in_one_line_before_loading(capsys, tmp_path, flags, message):
    status, error = ranker(capsys, "serve", "--model-uri", str(tmp_path / "no-model"), *flags)
    assert (status, error) == (2, f"ranker serve: {message}\n")


def test_ranker_serve_refuses_an_environment_value_out_of_range_naming_the_variable(capsys, monkeypatch):
    monkeypatch.setenv("RANKER_MODEL_THREADS", "0")
    status, error = ranker(capsys, "serve", "--model-uri", "/nonexistent")
    expected = "ranker serve: ServerConfig: model_threads (env RANKER_MODEL_THREADS): must be at least 1 (got '0')\n"
    assert (status, error) == (2, expected)


# -- ranker skew-check: inputs that cannot be checked, and a model that does not fit them ----------------------


@pytest.fixture
def inputs(tmp_path) -> dict[str, Path]:
    """Examples with a snapshot, a model folder (its spec: the examples') and a path for the repo; no TensorFlow."""
    spec = synthetic_feature_spec()
    examples, model = tmp_path / "examples", tmp_path / "model"
    (examples / SNAPSHOT_DIR).mkdir(parents=True)
    model.mkdir()
    spec.save(examples / FEATURE_SPEC_FILE)
    spec.save(model / FEATURE_SPEC_FILE)
    (model / "saved_model.pb").write_bytes(b"")
    snapshot = {"cutoff": 0, "prior_until": 1, "entities": {"user": {"keys": ["user_id"]}}}
    (examples / SNAPSHOT_DIR / SNAPSHOT_FILE).write_text(json.dumps(snapshot))
    return {"examples": examples, "model": model, "repo": tmp_path / "feature_repo"}


def skew_check(capsys, inputs: dict[str, Path], **changed: str) -> tuple[int, str]:
    paths = {key: str(path) for key, path in inputs.items()} | changed
    flags = ["--examples", paths["examples"], "--model-uri", paths["model"], "--feature-store", paths["repo"]]
    return ranker(capsys, "skew-check", *flags)


def test_skew_check_with_its_inputs_refuses_only_the_missing_repo(capsys, inputs):
    status, error = skew_check(capsys, inputs)
    assert status == 2
    assert error == (
        f"ranker skew-check: --feature-store {inputs['repo']}: not a Feast repo written by `ranker materialize` "
        "(no such folder)\n"
    )


def test_skew_check_refuses_examples_without_an_entity_snapshot(capsys, inputs):
    path = inputs["examples"] / SNAPSHOT_DIR / SNAPSHOT_FILE
    path.unlink()  # a dataset spec without `history` (KuaiRand): nothing in a feature store
    expected = f"ranker skew-check: no entity snapshot at {path}: extract features with a spec that has `history`\n"
    assert skew_check(capsys, inputs) == (2, expected)
    path.write_text(json.dumps({"cutoff": 0, "entities": {}}))
    status, error = skew_check(capsys, inputs)
    assert status == 2 and "(it has no history entities)" in error and error.count("\n") == 1


@pytest.mark.parametrize(
    ("what", "message"),
    [
        ("no-folder", "--model-uri {model}: no such folder"),
        ("no-saved-model", "--model-uri {model}: no saved_model.pb in it: give the folder `ranker train` exported"),
        ("no-spec", "--model-uri {model}: no feature_spec.json in it: give the folder `ranker train` exported"),
        ("examples", "--examples {model}: no such folder"),
    ],
)
def test_skew_check_refuses_a_missing_model_or_examples_in_one_line(capsys, inputs, what, message):
    model = inputs["model"]
    if what == "no-folder":
        model = model.parent / "nonexistent"
    elif what == "no-saved-model":
        (model / "saved_model.pb").unlink()
    elif what == "no-spec":
        (model / FEATURE_SPEC_FILE).unlink()
    changed = {"examples": str(model.parent / "nonexistent")} if what == "examples" else {"model": str(model)}
    status, error = skew_check(capsys, inputs, **changed)
    if what == "examples":
        model = model.parent / "nonexistent"
    assert status == 2 and error.startswith(f"ranker skew-check: {message.format(model=model)}"), error
    assert error.count("\n") == 1


def test_skew_check_refuses_a_model_that_reads_other_features_than_the_examples(capsys, inputs):
    spec = synthetic_feature_spec()
    other = dataclasses.replace(
        spec, features=[*spec.features[1:], Feature(name="video_duration", kind="numeric")]
    )  # another dataset's model
    other.save(inputs["model"] / FEATURE_SPEC_FILE)
    status, error = skew_check(capsys, inputs)
    dropped = spec.features[0].name
    assert status == 2 and error.count("\n") == 1
    assert error.startswith(
        f"ranker skew-check: --model-uri {inputs['model']}: the model does not read the features of --examples "
        f"{inputs['examples']} (2 differ, e.g. {', '.join(sorted([dropped, 'video_duration']))})"
    ), error


def test_skew_check_accepts_a_model_trained_on_other_examples_of_the_same_features(inputs):
    from serving.skew_check import require_same_features

    spec = synthetic_feature_spec()
    retrained = dataclasses.replace(spec, features=[dataclasses.replace(f, mean=f.mean + 1) for f in spec.features])
    require_same_features(spec, retrained, "examples", "model")  # other statistics (lineage): allowed
    recoded = [dataclasses.replace(f, kind="categorical" if f.kind == "numeric" else f.kind) for f in spec.features]
    with pytest.raises(InvalidValueError, match="the model does not read the features of --examples examples"):
        require_same_features(spec, dataclasses.replace(spec, features=recoded), "examples", "model")


def test_skew_check_reads_the_snapshot_and_the_models_spec_without_tensorflow(inputs):
    from serving.skew_check import model_feature_spec, read_snapshot

    assert read_snapshot(str(inputs["examples"]))["cutoff"] == 0
    assert model_feature_spec(str(inputs["model"])).feature_names == synthetic_feature_spec().feature_names
    with pytest.raises(MissingInputError, match="no such folder"):
        model_feature_spec(str(inputs["model"] / "nope"))


# -- ranker loadtest -------------------------------------------------------------------------------------------


def loadtest(capsys, *flags: str) -> tuple[int, str]:
    return ranker(capsys, "loadtest", "--url", "http://127.0.0.1:9/predict", *flags)


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--arrival", "burst", "'burst' (choose from 'constant', 'poisson', 'bursty') (did you mean bursty?)"),
        ("--arrival", "const", "(did you mean constant?)"),
        ("--format", "v2binary", "(did you mean v2-binary?)"),
        ("--format", "protobuf", "'protobuf' (choose from 'columns', 'rows', 'v2', 'v2-binary', 'v2-mixed')\n"),
    ],
)
def test_a_mistyped_choice_suggests_the_closest_choice_not_a_flag(capsys, tmp_path, flag, value, message):
    # pipelines.cli's parser: every command's choices get the same suggestion
    status, error = loadtest(capsys, "--model-dir", str(tmp_path), flag, value)
    assert status == 2 and message in error and "--burst-on" not in error.splitlines()[-1], error


@pytest.mark.parametrize(
    ("folder", "message"),
    [
        ("nonexistent", "no such folder"),
        ("afile", "a file, not a folder"),
        (".", "holds no model (no feature_spec.json): give the folder `ranker train` exported the model to"),
    ],
)
def test_a_model_dir_without_a_model_is_refused_naming_it(capsys, tmp_path, folder, message):
    (tmp_path / "afile").write_text("not a folder")
    path = tmp_path / folder
    status, error = loadtest(capsys, "--model-dir", str(path))
    assert (status, error) == (2, f"ranker loadtest: --model-dir {path}: {message}\n")
