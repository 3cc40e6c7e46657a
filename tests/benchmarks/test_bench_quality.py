"""The quality benchmark's summary over seeds: pooled lifts and the seeds whose intervals exclude 0."""

from __future__ import annotations

import json
import math
import types

import pytest

from benchmarks.bench_baseline import cpu_model
from benchmarks.bench_quality import config_json, main, pooled_lift, pooled_table, summarise, table
from components.evaluation.evaluate import SplitEvaluation


def _cells(lift: float, low: float, high: float) -> dict[str, float]:
    """A seed's favorite cells: the same lift over every competitor."""
    keys = ("lift", "global_lift", "dcn_lift")
    cells = {"mmoe": 0.5, "gbdt_per_module": 0.45, "gbdt_global": 0.46, "dcn": 0.47, "gain_captured": 0.6}
    for key in keys:
        cells |= {key: lift, f"{key}_ci_low": low, f"{key}_ci_high": high}
    return cells


def test_the_pooled_lift_is_the_seeds_mean_with_their_request_noise_combined():
    mean, low, high = pooled_lift([(0.04, 0.02, 0.06), (0.02, 0.0, 0.04), (0.03, 0.01, 0.05)])
    assert mean == pytest.approx(0.03)
    # Each seed's interval is 0.04 wide (standard error 0.04 / 3.92); three of them shrink the mean's by sqrt(3).
    assert high - low == pytest.approx(0.04 / math.sqrt(3), rel=1e-4)
    assert low == pytest.approx(0.03 - 0.02 / math.sqrt(3), rel=1e-4)


def test_a_seed_without_an_interval_gives_no_pooled_lift():
    assert pooled_lift([(0.04, 0.02, 0.06), None]) is None
    assert pooled_lift([]) is None


def test_the_table_pools_the_seeds_and_counts_those_on_either_side_of_0():
    runs = {
        0: {"test": {"favorite": _cells(0.05, 0.01, 0.09)}, "heldout": {}},
        1: {"test": {"favorite": _cells(-0.04, -0.07, -0.01)}, "heldout": {}},
        2: {"test": {"favorite": _cells(0.02, -0.01, 0.05)}, "heldout": {}},
    }
    (row,) = [line for line in pooled_table(runs, ["dcn"]) if line.startswith("| test | favorite")]
    cells = [cell.strip() for cell in row.strip("|").split("|")][2:]
    assert len(cells) == 3  # per-module, global, dcn
    assert all(cell.startswith("+1.0% [") and cell.endswith("; 1 / 1 of 3") for cell in cells)
    assert pooled_table(runs, ["dcn"])[0] in table("w", runs, ["dcn"])


def test_one_seed_gets_no_pooled_rows():
    runs = {0: {"test": {"favorite": _cells(0.05, 0.01, 0.09)}, "heldout": {}}}
    assert not any("pooled" in line for line in table("w", runs))


def test_tables_only_prints_the_runs_already_in_the_work_dir(tmp_path, capsys):
    record = {"cpu": cpu_model(), "impressions": 1_000_000, "model_config": "{}", "history": "{}"}
    record |= {"module_traits": False, "impressions_per_user": None, "peers": ["dcn"]}
    runs = {str(seed): {"test": {"favorite": _cells(0.03, 0.01, 0.05)}, "heldout": {}} for seed in (0, 1)}
    (tmp_path / "bench_quality.json").write_text(json.dumps({**record, "results": {"curated": runs}}))

    assert main(["--tables-only", "--work-dir", str(tmp_path), "--peers", "dcn"]) == 0

    printed = capsys.readouterr().out
    assert "### curated" in printed
    assert "| 1 | test | favorite | 0.500 | 0.470 |" in printed
    assert "| test | favorite | +3.0% [" in printed  # the pooled row
    assert not (tmp_path / "curated-1000000-seed0").exists()  # nothing was simulated or trained


def test_tables_only_with_other_settings_names_them_and_leaves_the_runs_as_they_were(tmp_path):
    record = {"cpu": cpu_model(), "impressions": 1_000_000, "model_config": "{}", "history": "{}"}
    record |= {"module_traits": False, "impressions_per_user": None, "peers": ["dcn"]}
    runs = {"0": {"test": {"favorite": _cells(0.03, 0.01, 0.05)}, "heldout": {}}}
    saved = json.dumps({**record, "results": {"curated": runs}})
    (tmp_path / "bench_quality.json").write_text(saved)

    with pytest.raises(SystemExit, match=r"other settings \(peers: \['dcn'\] there, \[\] asked\)"):
        main(["--tables-only", "--work-dir", str(tmp_path), "--peers"])
    with pytest.raises(SystemExit, match="no results in"):
        main(["--tables-only", "--work-dir", str(tmp_path / "empty"), "--peers", "dcn"])
    assert (tmp_path / "bench_quality.json").read_text() == saved


def test_summarise_reads_the_metric_asked_for():
    def row(model: str, metric: str, value: float) -> dict:
        return {"model": model, "subset": "all", "target": "favorite", "metric": metric, "value": value, "lift": value}

    rows = [row(model, "ndcg@10", 0.3) for model in ("mmoe", "gbdt_per_module")]
    rows += [row(model, "expected_ndcg@10", 0.8) for model in ("mmoe", "gbdt_per_module")]
    test = SplitEvaluation("test", 10, 2, ["home"], rows, [], [], {}, 0.0)
    result = types.SimpleNamespace(test=test, heldout=None, blessing=types.SimpleNamespace(blessed=True))

    logged = summarise(result)["test"]["favorite"]
    assert (logged["mmoe"], logged["gbdt_per_module"], logged["lift"]) == (0.3, 0.3, 0.3)
    expected = summarise(result, metric="expected_ndcg@10")["test"]
    assert (expected["favorite"]["mmoe"], expected["favorite"]["lift"]) == (0.8, 0.8)
    assert "mmoe" not in expected["click"]


def test_a_model_config_is_inline_json_or_a_file_of_it(tmp_path):
    import argparse

    assert config_json('{"seed": 1, "dropout": 0.1}') == '{"seed": 1, "dropout": 0.1}'  # as given: its folders stay
    tuned = tmp_path / "tuned.json"
    tuned.write_text('{\n  "seed": 0,\n  "dropout": 0.2\n}\n')  # as `ranker tune --out` writes it
    assert json.loads(config_json(f"@{tuned}")) == {"seed": 0, "dropout": 0.2}
    assert config_json(f"@{tuned}") == config_json(f"@{tuned}") == '{"dropout": 0.2, "seed": 0}'
    missing = "@" + str(tmp_path / "missing.json")
    for bad, message in [(missing, "no JSON file at"), ("{seed", "not valid JSON"), ("[1]", "must be a JSON object")]:
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            config_json(bad)
