"""The end-of-run table of the primary metric (NDCG, or AUC without request groups) from an evaluation report."""

import json
import os
import time
from pathlib import Path

from pipelines.summary import (
    expected_text,
    format_table,
    heldout_table,
    metric_table,
    unmeasured_note,
    unseen_note,
    verdict_text,
)


def row(model, subset, target, value, lift=None, metric="ndcg@10"):
    return {"model": model, "subset": subset, "target": target, "metric": metric, "value": value, "lift": lift}


REPORT = {
    "candidate": "mmoe",
    "models": ["mmoe", "gbdt_per_module", "oracle"],
    "test": {
        "requests": 80,
        "ndcg": [
            row("mmoe", "search", "click", 0.61, lift=0.05),
            row("gbdt_per_module", "search", "click", 0.58),
            row("oracle", "search", "click", 0.9),
            row("mmoe", "all", "click", 0.5, lift=-0.02),
            row("gbdt_per_module", "all", "click", 0.51),
            row("mmoe", "all", "click", 0.7, metric="ndcg@5"),
            row("mmoe", "search", "purchase", None),
            row("gbdt_per_module", "search", "purchase", None),
        ],
    },
}


def test_the_table_has_one_column_per_model_and_the_overall_rows_first():
    table = metric_table(REPORT, "ndcg@10")

    assert table[0] == ["module", "task", "mmoe", "gbdt_per_module", "oracle", "mmoe lift", "vs global"]
    assert table[1] == ["all", "click", "0.5000", "0.5100", "-", "-2.0%", "-"]
    assert table[2] == ["search", "click", "0.6100", "0.5800", "0.9000", "+5.0%", "-"]
    assert len(table) == 3  # a task with no value in a module is left out, and named under the table
    assert unmeasured_note(REPORT, "ndcg@10") == (
        "Not shown, no request with a positive: search purchase (report.html lists them)"
    )
    assert unmeasured_note(REPORT, "ndcg@5") == ""


def auc(model, subset, task, value):
    return {"model": model, "subset": subset, "task": task, "metric": "auc", "value": value}


def test_data_without_groups_gets_an_auc_table_with_the_candidates_lifts():
    report = {
        "candidate": "mmoe",
        "baseline": "gbdt_per_module",
        "models": ["mmoe", "gbdt_per_module", "gbdt_global", "random"],
        "blessing": {"global_name": "gbdt_global"},
        "test": {
            "impressions": 50,
            "requests": 50,
            "ndcg": [],
            "auc": [
                auc("mmoe", "all", "click", 0.66),
                auc("gbdt_per_module", "all", "click", 0.6),
                auc("gbdt_global", "all", "click", 0.55),
                auc("random", "all", "click", 0.5),
                auc("mmoe", "1", "purchase", 0.7),
                auc("gbdt_per_module", "1", "purchase", None),
                auc("gbdt_global", "1", "purchase", 0.8),
            ],
        },
    }

    table = metric_table(report, "auc")

    assert table[0] == ["module", "task", "mmoe", "gbdt_per_module", "gbdt_global", "random", "mmoe lift", "vs global"]
    assert table[1] == ["all", "click", "0.6600", "0.6000", "0.5500", "0.5000", "+10.0%", "+20.0%"]
    assert table[2] == ["1", "purchase", "0.7000", "-", "0.8000", "-", "-", "-12.5%"]
    assert metric_table(report, "ndcg@10") == [[*table[0][:2], "mmoe lift", "vs global"]]  # no NDCG rows
    heldout = {"impressions": 20, "modules": ["2"], "auc": [auc("mmoe", "all", "click", 0.6)]}
    assert heldout_table({**report, "heldout": heldout}, "auc").startswith("Held-out module 2 (20 impressions")


def test_format_table_aligns_columns_under_a_rule():
    text = format_table([["a", "bb"], ["ccc", "d"]])
    assert text.splitlines() == ["a    bb", "---  --", "ccc  d"]


def test_the_held_out_module_has_its_own_table():
    report = {
        **REPORT,
        "heldout": {
            "requests": 40,
            "modules": ["shop_page"],
            "ndcg": [row("mmoe", "all", "click", 0.4, lift=-0.01), row("gbdt_per_module", "all", "click", 0.41)],
        },
    }

    text = heldout_table(report, "ndcg@10")

    assert text.startswith("Held-out module shop_page (40 requests")
    assert text.splitlines()[-1].split() == ["all", "click", "0.4000", "0.4100", "-1.0%", "-"]
    assert heldout_table(REPORT, "ndcg@10") == ""
    nothing = {"requests": 10, "modules": ["tiny"], "ndcg": [row("mmoe", "all", "click", None)]}
    assert heldout_table({**REPORT, "heldout": nothing}, "ndcg@10").endswith(
        "ndcg@10: not measured, no request with a positive for any task"
    )


def test_the_verdict_states_both_lifts_with_intervals_and_the_held_out_row():
    blessing = {
        "blessed": True,
        "primary_metric": "favorite ndcg@10",
        "lift": 0.065,
        "lift_ci": [0.025, 0.11],
        "global_lift": 0.02,
        "global_lift_ci": [-0.01, 0.05],
        "requests": 1967,
        "mde_relative": 0.041,
        "heldout": {"modules": ["shop_page"], "lift": -0.006, "lift_ci": [-0.041, 0.027]},
    }

    lines = verdict_text(blessing).splitlines()

    assert lines[0] == "Blessed: yes, the candidate beats the per-module GBDT"
    assert lines[1] == (
        "  favorite ndcg@10 lift over the per-module GBDT: +6.5% (95% CI [+2.5%, +11.0%], half-width 4.2 points)"
    )
    assert "lift over the global LightGBM: +2.0% (95% CI [-1.0%, +5.0%]" in lines[2]
    assert "1967 requests" in lines[3] and "4.1%" in lines[3]
    assert "held-out shop_page vs the GBDT fallback: -0.6%" in lines[4]
    blessing["heldout"] = {"modules": ["tiny"], "not_judged_reason": "no request with a positive for favorite ndcg@10"}
    assert verdict_text(blessing).splitlines()[4] == (
        "  favorite ndcg@10 on held-out tiny vs the GBDT fallback: not judged, no request with a positive for favorite "
        "ndcg@10"
    )


def test_the_verdict_on_auc_states_its_intervals_impressions_and_positives():
    blessing = {"blessed": False, "reasons": ["mmoe income auc 0.9031 does not beat gbdt_per_module 0.9281"]}
    blessing |= {"primary_metric": "income auc", "primary": {"task": "income", "metric": "auc"}}
    blessing |= {"lift": -0.027, "lift_ci": [-0.030, -0.024], "global_lift": -0.027, "global_lift_ci": [-0.029, -0.024]}
    blessing |= {"requests": 16281, "positives": 3846, "mde_relative": 0.004}

    lines = verdict_text(blessing).splitlines()

    assert lines[2] == (
        "  income auc lift over the per-module GBDT: -2.7% (95% CI [-3.0%, -2.4%], half-width 0.3 points)"
    )
    assert lines[4] == (
        "  judged on 16281 impressions, 3846 of them positive; smallest detectable lift (80% power): 0.4%"
    )


def test_the_verdict_on_auc_without_intervals_states_the_lifts_of_the_values():
    blessing = {"blessed": False, "reasons": ["mmoe purchase auc 0.5100 does not beat gbdt_per_module 0.8500"]}
    blessing |= {"primary_metric": "purchase auc", "candidate": 0.51, "baseline": 0.85, "global_value": 0.6}
    blessing |= {"lift": None, "lift_ci": [None, None], "global_lift": None, "global_lift_ci": [None, None]}

    lines = verdict_text(blessing).splitlines()

    assert lines[-2:] == [
        "  purchase auc lift over the per-module GBDT: -40.0% (no interval)",
        "  purchase auc lift over the global LightGBM: -15.0% (no interval)",
    ]


def test_the_expected_relevance_lines_state_the_candidates_lifts_with_intervals():
    def expected(subset, lift, gap=None):
        cells = {"lift_ci_low": lift - 0.01, "lift_ci_high": lift + 0.01, "global_lift": lift / 2}
        cells |= {"global_lift_ci_low": lift / 2 - 0.01, "global_lift_ci_high": lift / 2 + 0.01}
        cells["gain_captured"] = gap
        return {**row("mmoe", subset, "favorite", 0.8, lift=lift, metric="expected_ndcg@10"), **cells}

    report = {
        **REPORT,
        "test": {"ndcg": [*REPORT["test"]["ndcg"], expected("search", 0.09), expected("all", 0.05, gap=0.63)]},
        "heldout": {"modules": ["shop_page"], "ndcg": [expected("all", 0.02)]},
    }

    lines = expected_text(report, "favorite", "ndcg@10").splitlines()

    assert lines[0].startswith("Against the expected relevance")
    lift = "  favorite expected_ndcg@10 lift over the"
    assert lines[1] == f"{lift} per-module GBDT: +5.0% (95% CI [+4.0%, +6.0%], half-width 1.0 points)"
    assert lines[2].startswith(f"{lift} global LightGBM: +2.5% (95% CI [+1.5%, +3.5%]")
    assert lines[3].startswith("  favorite expected_ndcg@10 on held-out shop_page vs the GBDT fallback: +2.0%")
    assert lines[4] == "  share of the random -> position-free oracle gap: 63.0%"
    assert expected_text(REPORT, "favorite", "ndcg@10") == ""  # no position-free oracle, no lines


def test_the_summary_counts_the_dead_letters_and_says_where_they_are(tmp_path):
    from types import SimpleNamespace

    from pipelines.config import PipelineSettings
    from pipelines.local_run import LocalRunResult
    from pipelines.summary import dead_letter_text

    (tmp_path / "examples").mkdir()
    source = {"rows_read": 1002, "dead_letters": 22, "dead_letter_reasons": {"clicked": 4, "duplicate": 5}}
    (tmp_path / "examples" / "feature_spec.json").write_text(json.dumps({"source": source}))
    outputs = {name: SimpleNamespace(path=str(tmp_path / name)) for name in ("examples", "dead_letters")}
    result = LocalRunResult(PipelineSettings(), outputs, [], 1.0, None)

    assert dead_letter_text(result) == (
        f"Dead letters: 22 of 1002 rows were not used (clicked 4, duplicate 5); each with its file, row and reason "
        f"in {tmp_path / 'dead_letters'}"
    )
    source["dead_letters"] = 0
    (tmp_path / "examples" / "feature_spec.json").write_text(json.dumps({"source": source}))
    assert dead_letter_text(result) == ""


def test_the_summary_names_the_folders_linked_in_latest_only(tmp_path):
    from types import SimpleNamespace

    from pipelines.config import PipelineSettings
    from pipelines.local_run import LocalRunResult, publish_latest_report
    from pipelines.summary import linked_folders

    run = tmp_path / "root" / "run"
    outputs = {name: SimpleNamespace(path=str(run / "train-mmoe" / name)) for name in ("model", "examples")}
    for output in outputs.values():
        Path(output.path).mkdir(parents=True)
    result = LocalRunResult(PipelineSettings(work_dir=str(tmp_path)), outputs, [], 1.0, None)
    publish_latest_report(outputs, result.latest_dir)
    assert linked_folders(result) == "model, examples"  # no materialize-features repo: no feature_repo link
    (run / "materialize-features" / "feature_repo").mkdir(parents=True)
    (run / "materialize-features" / "feature_repo" / "feature_store.yaml").write_text("project: ranker\n")
    publish_latest_report(outputs, result.latest_dir)
    assert linked_folders(result) == "model, examples, feature_repo"


def test_an_interval_bound_that_could_not_be_computed_shows_as_n_a_not_a_dash():
    blessing = {"blessed": False, "reasons": ["r"], "primary_metric": "click ndcg@10"}
    blessing |= {"lift": -1.0, "lift_ci": [-1.0, None], "global_lift": 0.1, "global_lift_ci": [None, 0.2]}

    lines = verdict_text(blessing).splitlines()

    assert lines[-2] == "  click ndcg@10 lift over the per-module GBDT: -100.0% (95% CI [-100.0%, n/a])"
    assert lines[-1] == "  click ndcg@10 lift over the global LightGBM: +10.0% (95% CI [n/a, +20.0%])"


def test_the_summary_says_what_tuning_chose_when_the_run_tuned(tmp_path):
    from types import SimpleNamespace

    from pipelines.config import PipelineSettings
    from pipelines.local_run import LocalRunResult
    from pipelines.summary import tuning_text
    from ranker_core.step_configs import TUNING_FILE  # what the tune step writes (trainer.tuning) and the summary reads

    run = tmp_path / "root" / "run"
    outputs = {"model": SimpleNamespace(path=str(run / "train-mmoe" / "model"))}
    tuned = PipelineSettings(work_dir=str(tmp_path), tune_config='{"trials": 4}')
    result = LocalRunResult(tuned, outputs, [], 1.0, None)
    assert tuning_text(result) == ""  # no tune step wrote a record

    best = {"trial": 2, "values": {"learning_rate": 0.0031234, "num_experts": 6}, "eval_score": 0.45123}
    choice = "trial 2 scored highest, +1.20% [+0.30%, +2.10%] over the given configuration: above the noise, chosen"
    record = {"metric": "ndcg@10", "best": best, "choice": choice, "trials": [{}, {}, best, {}], "seconds": 192.0}
    (run / "tune-mmoe" / "trials").mkdir(parents=True)
    (run / "tune-mmoe" / "trials" / TUNING_FILE).write_text(json.dumps(record))

    assert tuning_text(result) == (
        f"Tuning: 4 trials on eval ndcg@10 in 3m12s: {choice}; "
        "trained with learning_rate=0.003123, num_experts=6 (eval ndcg@10 0.4512)"
    )
    # a run without a tune step whose model came from that tuned run's cache: no line about an older search
    assert tuning_text(LocalRunResult(PipelineSettings(work_dir=str(tmp_path)), outputs, [], 1.0, None)) == ""

    # this run's tune step ran, while train-mmoe came from an older run's cache (the line was left out)
    started = time.time()
    this_run = tmp_path / "root" / "this-run" / "tune-mmoe" / "trials"
    this_run.mkdir(parents=True)
    (this_run / TUNING_FILE).write_text(json.dumps({**record, "trials": [{}, {}, best]}))
    os.utime(run / "tune-mmoe" / "trials" / TUNING_FILE, (started - 60, started - 60))  # the older run's
    result = LocalRunResult(tuned, outputs, [], 1.0, None, started_at=started - 1)
    assert tuning_text(result).startswith("Tuning: 3 trials on eval ndcg@10")
    (this_run / TUNING_FILE).write_text(json.dumps({**record, "trials": [best]}))
    assert tuning_text(result).startswith("Tuning: 1 trial on eval ndcg@10")  # not "1 trials"


def test_a_test_module_unseen_in_training_is_marked_and_explained():
    report = {**REPORT, "unseen_modules": ["search"]}
    assert metric_table(report, "ndcg@10")[2][0] == "search (unseen)"
    assert metric_table(report, "ndcg@10", split="heldout") == metric_table(REPORT, "ndcg@10", split="heldout")
    assert unseen_note(report).startswith("Unseen in training: search (in no training row: mmoe ranks it through")
    assert unseen_note(REPORT) == ""
