"""The tabular benchmark: UCI Adult's files through the flat bring-your-own-data path, as they are."""

from __future__ import annotations

import hashlib
import io
import json
import urllib.request

import numpy as np
import pytest

from benchmarks import bench_tabular
from benchmarks.bench_tabular import TASKS, ensure_adult, extracted, main, task_aucs
from ranker_core.schema import FeatureSpec


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
    (folder / "adult.names").write_text("| UCI's description of the data: not rows\n")
    return folder


def test_uci_files_are_extracted_as_they_are_with_text_labels_and_a_carved_eval_split(tmp_path):
    adult = _adult_dir(tmp_path, 400)
    spec = FeatureSpec.load(extracted(adult, tmp_path / "work"))
    rows = {split: stats.rows for split, stats in spec.splits.items()}
    assert rows["test"] == 200 and rows["train"] + rows["eval"] == 400 and 15 < rows["eval"] < 70
    assert "marital_status" not in spec.feature_names and "income_bracket" not in spec.feature_names
    lines = {name: (adult / name).read_text().splitlines() for name in ("adult.data", "adult.test")}
    rich = {name: sum(line.rstrip(".").endswith(">50K") for line in text) for name, text in lines.items()}
    single = {name: sum(", Never-married," in line for line in text) for name, text in lines.items()}
    assert spec.splits["test"].positives == {"income": rich["adult.test"], "never_married": single["adult.test"]}
    trained = {task: spec.splits["train"].positives[task] + spec.splits["eval"].positives[task] for task in TASKS}
    assert trained == {"income": rich["adult.data"], "never_married": single["adult.data"]}
    dead_letters = (tmp_path / "work" / "examples" / "dead_letter").rglob("*")
    assert any("|1x3 Cross validator" in path.read_text() for path in dead_letters if path.is_file())


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
