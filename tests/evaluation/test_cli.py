import json
from pathlib import Path

import pytest

from components.evaluation.cli import check_out, parse_models
from ranker_core.cli_support import InvalidValueError
from tests.evaluation.test_inputs import fake_model


def test_models_are_named_or_default_to_mmoe():
    assert parse_models(["work/model", "ple=work/ple"]) == {"mmoe": "work/model", "ple": "work/ple"}


@pytest.mark.parametrize("values", [["a", "b"], ["x=a", "x=b"], ["=a"], ["x="]])
def test_ambiguous_or_empty_models_are_refused(values):
    with pytest.raises(InvalidValueError, match="--model"):
        parse_models(values)


def test_out_must_not_be_a_file_or_an_input(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "file").write_text("")
    inputs = {"--model mmoe": str(tmp_path / "model"), "--oracle": str(tmp_path / "oracle" / "part-*.parquet")}
    check_out(str(tmp_path / "report"), {**inputs, "--champion": None})
    with pytest.raises(InvalidValueError, match="is a file, not a folder"):
        check_out(str(tmp_path / "file"), inputs)
    with pytest.raises(InvalidValueError, match=r"--out .*/model is the input --model mmoe"):
        check_out(str(tmp_path / "model"), inputs)
    with pytest.raises(InvalidValueError, match="lies inside the input --model mmoe"):
        check_out(str(tmp_path / "model" / "report"), inputs)
    with pytest.raises(InvalidValueError, match="lies inside the input --oracle"):
        check_out(str(tmp_path / "oracle" / "report"), inputs)


def run_cli(examples: Path, model: Path, baseline: Path, out: Path, capsys, *flags: str) -> tuple[int, str]:
    from pipelines.cli import main

    argv = ["evaluate", "--examples", str(examples), "--model", str(model), *flags]
    code = main([*argv, "--baseline", str(baseline), "--out", str(out)])
    return code, capsys.readouterr().err.strip()


def test_the_cli_refuses_bad_inputs_in_one_line_before_any_work(synthetic_examples, baseline_dir, tmp_path, capsys):
    model = fake_model(tmp_path / "model", synthetic_examples)
    before = (model / "feature_spec.json").read_text()
    code, err = run_cli(synthetic_examples, model, baseline_dir, model, capsys)
    assert code == 2 and "is the input --model mmoe" in err and len(err.splitlines()) == 1
    assert (model / "feature_spec.json").read_text() == before and not (model / "report.html").exists()
    (tmp_path / "afile").write_text("")
    code, err = run_cli(synthetic_examples, model, baseline_dir, tmp_path / "afile", capsys)
    assert code == 2 and err.endswith("is a file, not a folder")
    other = fake_model(tmp_path / "other", synthetic_examples, dataset="other")
    code, err = run_cli(synthetic_examples, other, baseline_dir, tmp_path / "report", capsys)
    assert code == 2 and "trained on other examples" in err and len(err.splitlines()) == 1
    assert json.loads((other / "feature_spec.json").read_text())["dataset"] == "other"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--primary-task", "favourite"], "primary_task 'favourite' is not a target of this data: "),
        (["--primary-metric", "ndgc@10"], "primary_metric 'ndgc@10' is not 'auc', 'ndcg' or 'ndcg@<k>'"),
    ],
)
def test_a_primary_task_or_metric_the_data_lacks_is_one_line(
    synthetic_examples, baseline_dir, tmp_path, capsys, flags, message
):
    """Both were a raw traceback and exit status 1 (``ranker run`` caught them)."""
    model = fake_model(tmp_path / "model", synthetic_examples)
    code, err = run_cli(synthetic_examples, model, baseline_dir, tmp_path / "report", capsys, *flags)
    assert code == 2 and err.startswith(f"ranker evaluate: {message}") and "Traceback" not in err
