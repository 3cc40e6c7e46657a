"""`ranker batch-rank`: the simulator-style run end to end, and mistakes as one line (exit 2)."""

import importlib

import pandas as pd
import pytest

from batch.pipeline import read_ranking
from pipelines.cli import main
from tests.serving.conftest import model_dir  # noqa: F401  (the session fixture, shared)

LOCAL_FLAGS = ["--direct-num-workers", "1", "--direct-running-mode", "in_memory"]


def one_line_error(capsys, argv: list[str]) -> str:
    assert main(["batch-rank", *argv]) == 2
    err = capsys.readouterr().err
    error = [line for line in err.splitlines() if line.startswith("ranker batch-rank: ")]
    assert len(error) == 1 and "Traceback" not in err, err  # other lines are logs (MLflow creating its store)
    return error[0]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--out", "x"], "no candidates: pass --candidates"),
        (["--candidates", "c.parquet"], "no output: pass --out"),
        (["--candidates", "c", "--out", "bq://p.d.t"], "needs --dead-letter-out"),
        (["--candidates", "c", "--out", "o", "--top-k", "0"], "must be positive"),
        (["--candidates", "c", "--out", "o", "--format", "xml"], "candidates_format"),
        (["--candidates", "c", "--out", "o", "--op-threads", "-1"], "--op-threads must be 0 (automatic)"),
    ],
)
def test_bad_settings_are_one_line(capsys, argv, message):
    assert message in one_line_error(capsys, argv)


@pytest.mark.slow
def test_a_missing_model_or_table_is_one_line(capsys, tmp_path, model_dir):  # noqa: F811
    error = one_line_error(capsys, ["--candidates", "c", "--out", "o", "--model-uri", str(tmp_path / "nope")])
    assert "does not exist" in error
    error = one_line_error(
        capsys, ["--candidates", "c", "--out", "o", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]
    )
    assert f"no MLflow registry at {tmp_path}/mlflow.db" in error  # and none was created there
    assert not (tmp_path / "mlflow.db").exists()
    error = one_line_error(
        capsys, ["--candidates", str(tmp_path / "none"), "--out", "o", "--model-uri", str(model_dir)]
    )
    assert "no parquet files match" in error
    examples = tmp_path / "examples"
    (examples / "test").mkdir(parents=True)
    (examples / "feature_spec.json").write_text("{}")
    error = one_line_error(capsys, ["--candidates", str(examples), "--out", "o", "--model-uri", str(model_dir)])
    assert "no parquet files match" in error and error.endswith("it is an extracted examples folder, pass --split test")


@pytest.mark.slow
def test_batch_rank_writes_top_k_per_user_of_one_campaign(capsys, tmp_path, model_dir):  # noqa: F811
    pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u1", "u2", "u2"],
            "listing_id": ["a", "b", "c", "a", "d"],
            "module_name": ["email_digest", "email_digest", "email_digest", "email_digest", "push"],
            "price": [3.0, 30.0, 300.0, 3.0, 1.0],
        }
    ).to_parquet(tmp_path / "candidates.parquet")
    argv = ["--candidates", str(tmp_path), "--campaign", "email_digest", "--top-k", "2", "--out", str(tmp_path / "o")]

    assert main(["batch-rank", *argv, "--model-uri", str(model_dir), *LOCAL_FLAGS]) == 0

    summary = capsys.readouterr().out
    assert "ranked 4 candidates (5 rows read, 1 of campaigns other than 'email_digest' left out)" in summary
    ranked = read_ranking(tmp_path / "o")
    assert ranked.groupby("user_id")["rank"].max().to_dict() == {"u1": 2, "u2": 1}
    assert set(ranked["module_name"]) == {"email_digest"}


def parsed(argv: list[str]):
    from pipelines.cli import command_parser

    module = importlib.import_module("batch.cli")
    return module, command_parser("batch-rank", module).parse_args(["batch-rank", *argv])


def test_dataflow_options_are_built_from_the_flags(monkeypatch):
    monkeypatch.delenv("RANKER_BEAM_MODE", raising=False)
    module, args = parsed(
        ["--runner", "DataflowRunner", "--project", "my-project", "--region", "europe-west4",
         "--temp-location", "gs://b/tmp", "--sdk-container-image", "img:1", "--", "--experiments=use_runner_v2"]
    )  # fmt: skip

    options = module._beam_options(args, ("--experiments=use_runner_v2",))

    assert options.is_dataflow
    flags = options.flags()
    assert "--project=my-project" in flags and "--sdk_container_image=img:1" in flags
    assert "--experiments=use_runner_v2" in flags
    options.pipeline_options()  # validated: a project, a region and a gs:// temp location


def test_the_local_runner_runs_in_one_process_unless_told_otherwise(monkeypatch):
    monkeypatch.delenv("RANKER_BEAM_MODE", raising=False)
    module, args = parsed(["--candidates", "c", "--out", "o"])
    assert module._beam_options(args, ()).direct_running_mode == "in_memory"
    module, args = parsed(["--direct-running-mode", "multi_processing"])
    assert module._beam_options(args, ()).direct_running_mode == "multi_processing"
    monkeypatch.setenv("RANKER_BEAM_MODE", "multi_threading")
    module, args = parsed([])
    assert module._beam_options(args, ()).direct_running_mode == "multi_threading"


def test_the_help_shows_the_running_mode_that_will_apply_and_its_variable(monkeypatch, capsys):
    monkeypatch.delenv("RANKER_BEAM_MODE", raising=False)
    with pytest.raises(SystemExit):
        parsed(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "(env RANKER_BEAM_MODE; now: 'in_memory')" in shown
    assert "(env RANKER_BEAM_TEMP_LOCATION; now: '')" in shown and "(env RANKER_DATAFLOW_MAX_WORKERS; now: 0)" in shown
    monkeypatch.setenv("RANKER_BEAM_MODE", "multi_threading")
    with pytest.raises(SystemExit):
        parsed(["--help"])
    assert "(env RANKER_BEAM_MODE; now: 'multi_threading')" in " ".join(capsys.readouterr().out.split())


def test_op_threads_come_from_the_flag_else_the_environment(monkeypatch):
    module, args = parsed(["--candidates", "c", "--out", "o"])
    assert module.batch_config(args).op_threads == 0
    monkeypatch.setenv("RANKER_BATCH_OP_THREADS", "3")
    assert module.batch_config(args).op_threads == 3
    module, args = parsed(["--candidates", "c", "--out", "o", "--op-threads", "1"])
    assert module.batch_config(args).op_threads == 1


def test_grouped_by_user_comes_from_the_flag_else_the_environment(monkeypatch):
    module, args = parsed(["--candidates", "c", "--out", "o"])
    assert module.batch_config(args).grouped_by_user is False
    monkeypatch.setenv("RANKER_BATCH_GROUPED_BY_USER", "true")
    assert module.batch_config(args).grouped_by_user is True
    module, args = parsed(["--candidates", "c", "--out", "o", "--no-grouped-by-user"])
    assert module.batch_config(args).grouped_by_user is False


@pytest.mark.slow
def test_a_run_that_ranks_nothing_exits_1_saying_why(capsys, tmp_path, model_dir):  # noqa: F811
    pd.DataFrame(
        {"user_id": ["u1", "u1", "u2"], "listing_id": ["a", "b", "a"], "module_name": ["email_digest"] * 2 + ["push"]}
    ).to_parquet(tmp_path / "candidates.parquet")
    argv = ["--candidates", str(tmp_path / "candidates.parquet"), "--model-uri", str(model_dir), *LOCAL_FLAGS]

    assert main(["batch-rank", *argv, "--campaign", "emaildigest", "--out", str(tmp_path / "o1")]) == 1
    captured = capsys.readouterr()
    assert "ranked 0 candidates (3 rows read, 3 of campaigns other than 'emaildigest' left out)" in captured.out
    assert (
        "ranker batch-rank: nothing ranked: no row of campaign 'emaildigest' among the 3 rows read (did you mean "
        "'email_digest'?); the campaigns in column 'module_name': email_digest (2 rows), push (1)\n"
    ) in captured.err

    no_module = {"user_id": ["u1", "u2"], "listing_id": ["a", "b"], "module_name": [None, None]}
    pd.DataFrame(no_module).to_parquet(tmp_path / "c2.parquet")
    argv[1] = str(tmp_path / "c2.parquet")
    assert main(["batch-rank", *argv, "--out", str(tmp_path / "o2")]) == 1
    assert (
        f"ranker batch-rank: nothing ranked: all 2 rows read were dead letters, in {tmp_path}/o2/dead_letter; "
        "most common reasons: module_name: missing value (2)\n"
    ) in capsys.readouterr().err


def test_a_key_column_no_candidates_file_has_is_refused_before_any_row_is_read(capsys, tmp_path, model_dir):  # noqa: F811
    """A flag's typo made every row a dead letter, after reading them all."""
    candidates = tmp_path / "candidates"
    candidates.mkdir()
    rows = {"user_id": ["u1"], "listing_id": ["a"], "module_name": ["push"], "campaign": ["spring"]}
    pd.DataFrame(rows).to_parquet(candidates / "a.parquet")
    pd.DataFrame(rows).drop(columns="listing_id").to_csv(candidates / "b.csv")
    split = tmp_path / "split"
    split.mkdir()
    pd.DataFrame(rows).drop(columns="listing_id").to_parquet(split / "a.parquet")
    pd.DataFrame(rows).drop(columns="user_id").to_parquet(split / "b.parquet")
    argv = ["batch-rank", "--model-uri", str(model_dir), "--out", str(tmp_path / "out"), *LOCAL_FLAGS]

    for flags, message in (
        (["--candidates", str(candidates / "a.parquet"), "--campaign-column", "campaing"],
         f"{candidates / 'a.parquet'} has no --campaign-column column 'campaing' (did you mean 'campaign'?)"),
        (["--candidates", str(candidates / "a.parquet"), "--item-column", "item"],
         f"{candidates / 'a.parquet'} has no --item-column column 'item' (the columns: "),
        (["--candidates", str(candidates / "b.csv")],
         f"{candidates / 'b.csv'} has no --item-column column 'listing_id'"),
        (["--candidates", str(split), "--format", "parquet"],  # the user column in one file, the item in the other
         "none of 2 candidates files read (e.g. "),
    ):  # fmt: skip
        assert main([*argv, *flags]) == 2
        assert capsys.readouterr().err.startswith(f"ranker batch-rank: {message}")
    assert not (tmp_path / "out").exists()
