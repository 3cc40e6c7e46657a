"""`ranker validate-spec`: a spec checked against its data names the file, the column and the spec."""

import argparse
import dataclasses

import numpy as np
import pytest

from components.data import validate_cli
from components.data.spec import SourceSpec, TaskSpec, load_dataset_spec
from components.data.validation import check_data, inspect_data
from tests.data.impressions import impressions_frame, write_csv, write_parquet


@pytest.fixture(scope="module")
def simulator():
    return load_dataset_spec("simulator")


def test_matching_data_has_no_problems(tmp_path, simulator):
    folder = write_parquet(impressions_frame(n_requests=4), tmp_path / "logs")
    assert check_data(simulator, str(folder)) == []


def test_a_missing_column_names_the_file_the_column_and_its_use(tmp_path, simulator):
    folder = write_parquet(impressions_frame(n_requests=4).drop(columns=["price", "clicked"]), tmp_path / "logs")
    problems = check_data(simulator, str(folder))
    assert len(problems) == 4  # two files, two columns
    assert f"{folder}/part-00000.parquet: missing column 'clicked' (label of task click in" in problems[0]
    assert "simulator.yaml" in problems[0]
    assert any("missing column 'price' (features.numeric" in problem for problem in problems)


def test_a_wrong_parquet_type_is_named(tmp_path, simulator):
    frame = impressions_frame(n_requests=4)
    frame["price"] = frame["price"].astype(str)
    problems = check_data(simulator, str(write_parquet(frame, tmp_path / "logs", parts=1)))
    assert problems == [
        f"{tmp_path}/logs/part-00000.parquet: column 'price' has type string, but features.numeric in "
        f"{simulator.origin} needs numbers"
    ]


def test_a_text_label_column_may_be_a_parquet_string(tmp_path, simulator):
    frame = impressions_frame(n_requests=4)
    frame["event"] = np.where(frame["purchased"] > 0, "purchase", "view")
    tasks = [*simulator.tasks[:-1], TaskSpec("purchase", expression="event == 'purchase'")]
    spec = dataclasses.replace(simulator, tasks=tuple(tasks))
    assert check_data(spec, str(write_parquet(frame, tmp_path / "logs", parts=1))) == []  # not "needs numbers"


def test_a_column_of_only_malformed_values_is_a_wrong_type_not_dead_letters(tmp_path, simulator):
    frame = impressions_frame(n_requests=4)
    frame["position"] = "top"
    path = write_csv(frame, tmp_path / "logs.csv")
    spec = dataclasses.replace(load_dataset_spec("simulator"), source=SourceSpec(format="csv"))
    [problem] = check_data(spec, str(path))
    assert problem.startswith(f"{path}: every sampled value of column 'position' is malformed")
    frame["clicked"] = "yes"  # a second such column: each row's dead letter names only its first problem
    path = write_csv(frame, tmp_path / "logs.csv")
    problems = check_data(spec, str(path))
    assert [problem.split(" is malformed")[0] for problem in problems] == [
        f"{path}: every sampled value of column 'clicked'",
        f"{path}: every sampled value of column 'position'",
    ]
    assert problems[0].endswith("e.g. clicked: 'yes' is not 0/1")


def test_an_empty_csv_has_no_rows_and_a_header_of_none_of_the_columns_is_one_hint(tmp_path, simulator):
    spec = dataclasses.replace(simulator, source=SourceSpec(format="csv"))
    write_csv(impressions_frame(n_requests=4), tmp_path / "day1.csv")
    (tmp_path / "day2.csv").write_text("")  # an export of a day without traffic
    assert check_data(spec, str(tmp_path)) == []
    tabs = impressions_frame(n_requests=2).to_csv(sep="\t", index=False)
    (tmp_path / "day3.csv").write_text(tabs)
    [problem] = check_data(spec, str(tmp_path))
    assert problem.startswith(f"{tmp_path / 'day3.csv'}: its header line names none of the columns the spec needs")
    assert "is source.delimiter ',' right" in problem


def test_an_empty_parquet_file_has_no_rows_as_an_empty_csv(tmp_path, simulator):
    """A 0-byte export of a day without traffic failed the run ("Parquet file size is 0 bytes")."""
    from components.data.readers import parquet_rows, read_batches

    frame = impressions_frame(n_requests=4)
    write_parquet(frame, tmp_path / "logs", parts=1)
    empty = tmp_path / "logs" / "day2.parquet"
    empty.write_bytes(b"")
    assert check_data(simulator, str(tmp_path / "logs")) == []
    assert list(read_batches(str(empty), simulator.source, simulator.required_columns)) == []
    assert parquet_rows([str(empty), str(tmp_path / "logs" / "part-00000.parquet")]) == len(frame)


def test_no_files_and_unmatched_split_files_are_reported(tmp_path, simulator, shared_datasets):
    assert "no parquet files match" in check_data(simulator, str(tmp_path))[0]
    ali_ccp = load_dataset_spec("ali_ccp")
    (tmp_path / "extra.csv").write_text((shared_datasets / "ali_ccp" / "ali_ccp_val_sample.csv").read_text())
    assert check_data(ali_ccp, str(shared_datasets / "ali_ccp")) == []
    assert "extra.csv matches no split.files pattern" in check_data(ali_ccp, str(tmp_path))[0]


def test_cli_prints_ok_or_every_problem(tmp_path, capsys):
    folder = write_parquet(impressions_frame(n_requests=4), tmp_path / "good")
    assert validate_cli.main(argparse.Namespace(dataset_spec="simulator", data_uri=str(folder))) == 0
    assert capsys.readouterr().out.startswith("OK: ")
    bad = write_parquet(impressions_frame(n_requests=4).drop(columns=["device"]), tmp_path / "bad")
    assert validate_cli.main(argparse.Namespace(dataset_spec="simulator", data_uri=str(bad))) == 1
    out = capsys.readouterr().out
    assert out.startswith("2 problem(s):") and "missing column 'device'" in out
    (tmp_path / "spec.yaml").write_text("name: x\ncolumns: {user_id: u}\n")
    assert validate_cli.main(argparse.Namespace(dataset_spec=str(tmp_path / "spec.yaml"), data_uri="")) == 1
    assert "tasks: missing" in capsys.readouterr().out


def test_the_note_counts_only_the_sampled_rows(tmp_path):
    path = write_csv(impressions_frame(n_requests=300, candidates=4), tmp_path / "a.csv")  # 1,200 rows
    lines = path.read_text().splitlines()
    lines.insert(1_150, "only,three,fields")  # past the 1,000 rows sampled, in the reader's first block
    lines.insert(500, "only,three,fields")
    path.write_text("\n".join(lines) + "\n")
    spec = dataclasses.replace(load_dataset_spec("simulator"), source=SourceSpec(format="csv"))
    [note] = inspect_data(spec, str(path)).notes
    assert note.startswith(f"{path}: 1 of 1001 sampled rows will go to the dead letters (malformed CSV line: 1)")


def test_text_that_is_not_utf8_is_a_note_on_its_rows_not_a_traceback(tmp_path, capsys):
    frame = impressions_frame(n_requests=4)
    frame.loc[5, "category"] = "caf\u00e9"
    frame.loc[7, "timestamp"] = -5
    folder = tmp_path / "logs"
    folder.mkdir()
    path = write_csv(frame, folder / "a.csv")
    path.write_bytes(path.read_bytes().replace("caf\u00e9".encode(), b"caf\xe9"))
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(_csv_spec_text())
    check = inspect_data(load_dataset_spec(str(spec_path)), str(folder))
    assert check.problems == []
    [note] = check.notes
    assert note.startswith(f"{path}: 2 of 20 sampled rows will go to the dead letters (category: 1, timestamp: 1)")
    assert "e.g. row 7: category: b'caf\\xe9' is not UTF-8 text" in note and "iconv" in note

    args = argparse.Namespace(dataset_spec=str(spec_path), data_uri=str(folder), dead_letter_threshold=0.1)
    assert validate_cli.main(args) == 0  # 2 of 20 rows: 10%, not more than the threshold
    out = capsys.readouterr().out
    assert out.startswith("OK: ") and "1 note(s)" in out and "is not UTF-8 text" in out

    path.write_bytes(b"request_id,caf\xe9\n")
    [problem] = check_data(load_dataset_spec(str(spec_path)), str(folder))
    assert problem.startswith(f"{path}: the header line is not UTF-8: b'request_id,caf")


def _csv_spec_text() -> str:
    from components.data.spec import SPECS_DIR

    return (SPECS_DIR / "simulator.yaml").read_text().replace('format: parquet, pattern: "*.parquet"', "format: csv")


def test_a_sampled_share_over_the_dead_letter_threshold_says_the_extraction_will_fail(tmp_path, capsys, monkeypatch):
    frame = impressions_frame(n_requests=10, candidates=5).astype({"purchased": float})
    frame.loc[:4, "purchased"] = np.nan  # 5 of 50 sampled rows: 10%
    folder = write_parquet(frame, tmp_path / "logs", parts=1)
    args = argparse.Namespace(dataset_spec="simulator", data_uri=str(folder), dead_letter_threshold=None)
    assert validate_cli.main(args) == 1  # extraction's default threshold, 1%
    out = capsys.readouterr().out
    assert out.startswith("1 problem(s):\n  - extraction will fail: 5 of 50 sampled rows (10.0%) are malformed, ")
    assert "more than the dead-letter threshold of 1.0% (--dead-letter-threshold)" in out
    assert "1 note(s)" in out and "(purchased: 5)" in out and "OK" not in out
    monkeypatch.setenv("RANKER_DEAD_LETTER_THRESHOLD", "0.1")  # the variable `ranker run` reads
    assert validate_cli.main(args) == 0 and capsys.readouterr().out.startswith("OK: ")
    assert validate_cli.main(argparse.Namespace(**{**vars(args), "dead_letter_threshold": 0.05})) == 1
    monkeypatch.setenv("RANKER_DEAD_LETTER_THRESHOLD", "lots")
    assert (
        validate_cli.main(args) == 1
        and "RANKER_DEAD_LETTER_THRESHOLD='lots' is not a number" in capsys.readouterr().out
    )


def test_a_parquet_string_label_of_true_false_or_0_1_is_read_like_a_csv_cell(tmp_path, simulator):
    from components.data.readers import read_batches
    from components.data.rows import parse_batch

    frame = impressions_frame(n_requests=4)
    frame["clicked"] = np.where(frame["clicked"] > 0, "TRUE", "false")
    frame["purchased"] = frame["purchased"].map({0: "0", 1: "1.0"})
    frame.loc[3, "purchased"] = "yes"
    path = write_parquet(frame, tmp_path / "logs", parts=1) / "part-00000.parquet"
    assert inspect_data(simulator, str(path)).problems == []  # not "has type string, but ... needs numbers"
    parsed = parse_batch(next(read_batches(str(path), simulator.source, simulator.required_columns)), simulator, 0, "a")
    [letter] = parsed.dead_letters
    assert letter["reason"] == "purchased: 'yes' is not 0/1"
    kept = frame.drop(index=3)
    assert parsed.frame["label_click"].tolist() == (kept["clicked"] == "TRUE").astype(int).tolist()
    assert parsed.frame["label_purchase"].tolist() == (kept["purchased"] == "1.0").astype(int).tolist()
    frame["price"] = "12.5"
    [problem] = check_data(simulator, str(write_parquet(frame, tmp_path / "priced", parts=1)))
    assert "column 'price' has type string, but features.numeric" in problem  # only a 0/1 label may be text
