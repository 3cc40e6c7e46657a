"""The tabular benchmark: UCI Adult's records as a table with two labels, and the run through the flat data path."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import urllib.request

import numpy as np
import pytest

from benchmarks import bench_tabular
from benchmarks.bench_tabular import TASKS, adult_rows, ensure_adult, main, task_aucs, write_tables

RECORD = (
    "39, State-gov, 77516, Bachelors, 13, {marital}, Adm-clerical, Not-in-family, White, Male, 2174, 0, 40, "
    "{country}, {bracket}"
)


def _record(marital: str = "Never-married", country: str = "United-States", bracket: str = "<=50K") -> str:
    return RECORD.format(marital=marital, country=country, bracket=bracket)


def test_records_become_rows_with_both_labels_and_without_the_marital_status():
    lines = ["|1x3 Cross validator", "", _record(bracket=">50K."), _record("Married-civ-spouse", "?")]
    first, second = adult_rows(lines, "adult.test")
    assert (first["income"], first["never_married"]) == ("1", "1")
    assert (second["income"], second["never_married"]) == ("0", "0")
    assert second["native_country"] == "" and first["native_country"] == "United-States"
    assert "marital_status" not in first and "income_bracket" not in first
    assert first["age"] == "39" and first["workclass"] == "State-gov"


@pytest.mark.parametrize(
    ("line", "message"),
    [("39, State-gov, 77516", "adult.data, line 1: 3 fields, expected 15"), (_record(bracket="50K"), "'50K'")],
)
def test_a_malformed_record_is_named_by_file_and_line(line, message):
    with pytest.raises(ValueError, match=message):
        list(adult_rows([line], "adult.data"))


def test_missing_files_are_downloaded_checked_and_kept_only_when_they_are_uci_adult(tmp_path, monkeypatch):
    bodies = {"adult.data": b"the data\n", "adult.test": b"the test\n"}
    digests = {name: hashlib.sha256(body).hexdigest() for name, body in bodies.items()}
    monkeypatch.setattr(bench_tabular, "ADULT_SHA256", digests)
    served = dict(bodies)
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: io.BytesIO(served[url.rsplit("/", 1)[1]]))
    ensure_adult(tmp_path / "adult")
    assert (tmp_path / "adult" / "adult.test").read_bytes() == b"the test\n"
    served["adult.data"] = b"something else\n"
    with pytest.raises(SystemExit, match=r"adult\.data is not UCI Adult's adult\.data"):
        ensure_adult(tmp_path / "other")
    assert not (tmp_path / "other" / "adult.data").exists()


def test_missing_files_that_cannot_be_downloaded_are_named(tmp_path, monkeypatch):
    def unreachable(url, timeout):
        raise OSError("no route to host")

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    with pytest.raises(SystemExit, match=r"adult\.data is missing and .* could not be read \(no route to host\)"):
        ensure_adult(tmp_path / "adult")


def _adult_dir(tmp_path, rows: int):
    """UCI-formatted files whose income follows age and hours, and whose marital status follows age."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "adult"
    folder.mkdir()
    for name, count in (("adult.data", rows), ("adult.test", rows // 2)):
        lines = ["|1x3 Cross validator"] if name == "adult.test" else []
        for _ in range(count):
            age, hours = int(rng.integers(17, 80)), int(rng.integers(10, 70))
            rich = rng.random() < 1 / (1 + np.exp(-(age - 45) / 5 - (hours - 40) / 10))
            single = rng.random() < (0.8 if age < 30 else 0.1)
            marital = "Never-married" if single else "Married-civ-spouse"
            bracket = (">50K" if rich else "<=50K") + ("." if name == "adult.test" else "")
            lines.append(
                f"{age}, Private, {int(rng.integers(20000, 400000))}, {rng.choice(['HS-grad', 'Bachelors'])}, 9, "
                f"{marital}, Sales, Husband, White, {rng.choice(['Male', 'Female'])}, 0, 0, {hours}, "
                f"United-States, {bracket}"
            )
        (folder / name).write_text("\n".join(lines) + "\n")
    return folder


def test_tables_split_the_training_file_into_train_and_eval_and_keep_the_test_file(tmp_path):
    write_tables(_adult_dir(tmp_path, 1000), tmp_path / "tables")
    sizes = {}
    for name in ("train", "eval", "test"):
        with (tmp_path / "tables" / f"{name}.csv").open() as handle:
            rows = list(csv.DictReader(handle))
        sizes[name] = len(rows)
        assert set(TASKS) <= set(rows[0]) and "marital_status" not in rows[0]
    assert sizes["train"] + sizes["eval"] == 1000 and 60 < sizes["eval"] < 140 and sizes["test"] == 500


def test_task_aucs_pair_the_candidate_with_each_gbdt():
    rng = np.random.default_rng(1)
    labels = (rng.random(3000) < 0.3).astype(np.int64)
    strong, weak = labels + rng.normal(0, 0.5, 3000), labels + rng.normal(0, 2.0, 3000)
    cells = task_aucs(labels, [strong, weak, strong], rng)
    assert cells["mmoe"] > cells["gbdt_global"] and cells["gbdt_per_module_difference"] == 0.0
    low, high = cells["gbdt_global_difference_ci"]
    assert 0 < low < cells["gbdt_global_difference"] < high
    assert cells["gbdt_per_module_difference_ci"] == pytest.approx([0.0, 0.0], abs=1e-9)
    assert (cells["rows"], cells["positives"]) == (3000, int(labels.sum()))


@pytest.mark.slow
def test_the_benchmark_runs_the_flat_data_path_end_to_end(tmp_path, capsys):
    work = tmp_path / "work"
    config = '{"epochs": 2}'
    assert main(["--adult-dir", str(_adult_dir(tmp_path, 600)), "--seeds", "0", "--work-dir", str(work),
                 "--model-config", config]) == 0  # fmt: skip
    written = next(work.glob("bench_tabular-*.json"))
    record = json.loads(written.read_text())
    assert record["model_config"] == config and set(record["results"]["0"]) == set(TASKS)
    for cells in record["results"]["0"].values():
        assert cells["rows"] == 300 and 0.5 < cells["gbdt_global"] <= 1.0 and 0.0 <= cells["mmoe"] <= 1.0
        low, high = cells["gbdt_global_difference_ci"]
        assert low <= cells["gbdt_global_difference"] <= high
    assert (work / "seed0" / "baseline" / "manifest.json").exists()
    printed = capsys.readouterr().out
    assert "| 0 | income |" in printed and "| 0 | never_married |" in printed
