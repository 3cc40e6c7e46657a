import dataclasses
import json
import logging
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from components.evaluation.blessing import Blessing, Comparison, PrimaryMetric, decide
from components.evaluation.evaluate import EvaluationConfig, SplitEvaluation, evaluate
from components.evaluation.report import _bar_plot, headline_sentence, judged_count, summary_table
from components.evaluation.scorers import RandomScorer
from ranker_core.schema import FeatureSpec, Task
from tests.baseline.conftest import examples_with
from tests.conftest import synthetic_rows
from tests.evaluation.conftest import FAST, LabelScorer, baseline_of
from trainer.examples import read_split, write_shards

# The synthetic test split has about 27 requests per module: gate modules from 10.
CONFIG = EvaluationConfig(**FAST, module_min_requests=10)
COMPARED = Comparison("m", "g", "global")
TARGETS = ("click", "favorite", "add_to_cart", "purchase", "engagement")


def test_a_better_model_is_blessed_and_every_output_is_written(synthetic_examples, baseline_dir, tmp_path):
    result = evaluate(CONFIG, synthetic_examples, {"candidate": LabelScorer(0.3)}, baseline_dir, tmp_path)
    assert result.blessing.blessed, result.blessing.reasons
    assert result.models == ["candidate", "gbdt_per_module", "gbdt_global", "random"]
    blessing = json.loads((tmp_path / "blessing.json").read_text())
    assert blessing["blessed"] and blessing["reasons"] == [] and blessing["primary_metric"] == "favorite ndcg@10"
    assert blessing["candidate"] > blessing["baseline"] and blessing["champion"] is None
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    row = next(
        r
        for r in metrics["test"]["ndcg"]
        if (r["model"], r["subset"], r["target"], r["metric"]) == ("candidate", "all", "favorite", "ndcg@10")
    )
    assert row["ci_low"] < row["value"] < row["ci_high"] and row["lift_ci_low"] > 0 and row["p_value"] < 0.05
    assert row["requests"] + row["excluded_requests"] == 80
    assert row["positives"] >= row["requests"] and 0 < row["mde_relative"] < 1
    assert row["global_lift_ci_low"] < row["global_lift"] < row["global_lift_ci_high"]
    assert blessing["global_lift"] == pytest.approx(row["global_lift"]) and blessing["requests"] == row["requests"]
    assert {r["metric"] for r in metrics["test"]["ndcg"]} == {"ndcg@5", "ndcg@10", "ndcg"}
    assert {r["subset"] for r in metrics["test"]["ndcg"]} == {"all", "home_feed", "item_page", "search"}
    html = (tmp_path / "report.html").read_text()
    assert "Blessed." in html and "data:image/png;base64," in html and "<script" not in html
    assert "not probabilities" in html  # LambdaRank scores get no calibration curve
    assert {row["model"] for row in metrics["test"]["calibration"]} == {"candidate"}
    headline = result.headline_metrics()
    assert headline["blessed"] == 1.0 and headline["candidate_favorite_ndcg@10"] == pytest.approx(row["value"])


def test_a_peer_is_compared_with_the_candidate_like_the_gbdts(synthetic_examples, baseline_dir, tmp_path):
    models = {"candidate": LabelScorer(0.3), "peer": LabelScorer(3.0, name="peer", seed=1)}
    result = evaluate(CONFIG.replace(compare_with=("peer",)), synthetic_examples, models, baseline_dir, tmp_path)
    row = result.test.find("candidate", "all", "favorite", "ndcg@10")
    peer = result.test.find("peer", "all", "favorite", "ndcg@10")
    assert row["peer_lift"] == pytest.approx(row["value"] / peer["value"] - 1)
    assert 0 < row["peer_lift_ci_low"] < row["peer_lift"] < row["peer_lift_ci_high"] and row["peer_p_value"] < 0.05
    assert "peer_lift" not in peer  # a model is not compared with itself
    with pytest.raises(ValueError, match="compare_with names \\['dcn'\\], which are not among the models"):
        evaluate(CONFIG.replace(compare_with=("dcn",)), synthetic_examples, models, baseline_dir, tmp_path)


def test_a_random_model_is_refused_with_every_reason(synthetic_examples, baseline_dir, tmp_path):
    result = evaluate(CONFIG, synthetic_examples, {"candidate": RandomScorer(9, TARGETS)}, baseline_dir, tmp_path)
    reasons = result.blessing.reasons
    assert not result.blessing.blessed
    assert any("does not beat gbdt_per_module" in reason for reason in reasons)
    significant = [module for module, change in result.blessing.modules.items() if change["p_value_corrected"] < 0.05]
    assert significant and [reason.split(":")[0] for reason in reasons[1:]] == [f"module {m}" for m in significant]
    assert "Not blessed." in (tmp_path / "report.html").read_text()
    assert "NOT BLESSED" in summary_table(result)


def test_a_candidate_must_also_beat_the_champion(synthetic_examples, baseline_dir, tmp_path):
    config = CONFIG.replace(require_significance=True)
    champion = LabelScorer(0.0, name="champion")
    result = evaluate(config, synthetic_examples, {"mmoe": LabelScorer(0.4)}, baseline_dir, tmp_path, champion=champion)
    assert result.blessing.reasons == [
        f"mmoe favorite ndcg@10 {result.blessing.candidate:.4f} does not beat champion {result.blessing.champion:.4f}"
    ]
    assert json.loads((tmp_path / "blessing.json").read_text())["champion_name"] == "champion"


def test_a_champion_that_could_not_be_loaded_is_recorded(synthetic_examples, baseline_dir, tmp_path):
    note = "champion mmoe-ranker version 3 could not be loaded (no saved_model.pb): judged without it"
    result = evaluate(
        CONFIG, synthetic_examples, {"mmoe": LabelScorer(0.3)}, baseline_dir, tmp_path, champion_note=note
    )
    blessing = json.loads((tmp_path / "blessing.json").read_text())
    assert result.blessing.blessed and blessing["champion_note"] == note and blessing["champion_name"] is None
    assert note in (tmp_path / "report.html").read_text()


def test_significance_can_be_required(synthetic_examples, baseline_dir, tmp_path):
    config = CONFIG.replace(require_significance=True, primary_task="click", primary_metric="ndcg@5")
    result = evaluate(config, synthetic_examples, {"candidate": RandomScorer(1, TARGETS)}, baseline_dir, tmp_path)
    assert any("does not lie above 0" in reason for reason in result.blessing.reasons)
    assert result.blessing.primary == PrimaryMetric("click", "ndcg@5")


def test_the_oracle_bounds_the_achievable_gain(synthetic_examples, baseline_dir, tmp_path):
    spec = FeatureSpec.load(synthetic_examples)
    columns = read_split(synthetic_examples, "test", spec)
    oracle = pd.DataFrame({"request_id": columns["request_id"], "listing_id": columns["listing_id"]})
    for task in spec.task_names:
        oracle[f"p_{task}"] = 0.1 + 0.8 * columns[f"label_{task}"]
    oracle = oracle.drop_duplicates(["request_id", "listing_id"])
    (tmp_path / "oracle").mkdir()
    oracle.to_parquet(tmp_path / "oracle" / "part-0.parquet")
    result = evaluate(
        CONFIG, synthetic_examples, {"c": LabelScorer(0.5)}, baseline_dir, tmp_path, oracle_uri=str(tmp_path / "oracle")
    )
    oracle_row = result.test.find("oracle", "all", "purchase", "ndcg")
    random_row = result.test.find("random", "all", "purchase", "ndcg")
    assert oracle_row["gain_captured"] == pytest.approx(1.0) and random_row["gain_captured"] == pytest.approx(0.0)
    assert 0 < result.test.find("gbdt_per_module", "all", "purchase", "ndcg")["gain_captured"] < 1
    oracle.iloc[1:].to_parquet(tmp_path / "oracle" / "part-0.parquet")
    with pytest.raises(ValueError, match="1 of 800 impressions have no oracle row"):
        evaluate(CONFIG, synthetic_examples, {"c": LabelScorer(0.5)}, baseline_dir, tmp_path, str(tmp_path / "oracle"))


def test_the_held_out_module_is_reported_on_its_own(synthetic_examples, tmp_path):
    examples = examples_with(synthetic_examples, tmp_path / "examples", held_out_module="email")
    write_shards(
        synthetic_rows(20, candidates=10, seed=3, modules=("email",)), examples, "heldout", FeatureSpec.load(examples)
    )
    baseline = baseline_of(examples, tmp_path / "baseline")
    result = evaluate(CONFIG, examples, {"candidate": LabelScorer(0.3)}, baseline, tmp_path / "report")
    assert result.heldout is not None and result.heldout.modules == ["email"] and result.heldout.requests == 20
    assert result.test.modules == ["home_feed", "item_page", "search"]
    assert "Held-out module" in (tmp_path / "report" / "report.html").read_text()
    assert json.loads((tmp_path / "report" / "metrics.json").read_text())["heldout"]["split"] == "heldout"


def test_data_without_groups_is_judged_on_auc(synthetic_examples, tmp_path):
    examples = examples_with(synthetic_examples, tmp_path / "examples", has_groups=False)
    baseline_dir = baseline_of(examples, tmp_path / "baseline")
    result = evaluate(CONFIG, examples, {"candidate": LabelScorer(0.3)}, baseline_dir, tmp_path)
    assert result.test.ndcg == [] and result.blessing.primary == PrimaryMetric("favorite", "auc")
    assert result.blessing.blessed and result.blessing.candidate > 0.9
    # The primary AUC carries what an NDCG verdict does: intervals, paired lifts, p-values, the MDE.
    row = result.test.find("candidate", "all", "favorite", "auc")
    assert row["ci_low"] < row["value"] < row["ci_high"] and row["requests"] == result.test.impressions
    assert 0 < row["lift_ci_low"] < row["lift"] < row["lift_ci_high"] and row["p_value"] < 0.05
    assert row["global_delta_ci_low"] < row["global_delta"] < row["global_delta_ci_high"]
    assert 0 < row["mde_relative"] < 1 and 0 < row["positives"] < row["requests"]
    assert result.blessing.lift == pytest.approx(row["lift"]) and result.blessing.p_value == row["p_value"]
    assert all(change["p_value"] is not None for change in result.blessing.modules.values())
    assert "lift" not in result.test.find("candidate", "all", "click", "auc")  # other tasks: the value only
    html = (tmp_path / "report.html").read_text()
    assert "<th>auc delta</th>" in html and "intervals from DeLong" in html  # the lift table, the AUC caption
    significant = evaluate(CONFIG.replace(require_significance=True), examples, {"candidate": LabelScorer(0.3)},
                           baseline_dir, tmp_path / "significant")  # fmt: skip
    assert significant.blessing.blessed, significant.blessing.reasons
    noisy = evaluate(CONFIG.replace(require_significance=True), examples, {"candidate": LabelScorer(30.0)},
                     baseline_dir, tmp_path / "noisy")  # fmt: skip
    reasons = " ".join(noisy.blessing.reasons)
    assert "interval over gbdt_per_module" in reasons and "does not lie above 0" in reasons
    assert "corrected p = " in reasons  # a module's regression vetoes on its significance, as with NDCG


def test_the_default_primary_task_of_auc_is_a_binary_task():
    def data(tasks: list[str], groups: bool) -> FeatureSpec:
        return FeatureSpec([Task(name, name) for name in tasks], [], [], has_groups=groups)

    default = EvaluationConfig()
    assert default.primary(data(["click", "purchase"], groups=False)) == PrimaryMetric("click", "auc")
    assert default.primary(data(["click", "favorite"], groups=False)) == PrimaryMetric("favorite", "auc")
    assert default.primary(data(["click", "purchase"], groups=True)) == PrimaryMetric("engagement", "ndcg@10")
    auc = EvaluationConfig(primary_metric="auc")
    assert auc.primary(data(["click", "purchase"], groups=True)) == PrimaryMetric("click", "auc")
    with pytest.raises(ValueError, match="AUC needs a binary task: set primary_task to one of click, purchase"):
        EvaluationConfig(primary_task="engagement").primary(data(["click", "purchase"], groups=False))
    with pytest.raises(ValueError, match="primary_metric 'map' is not 'auc', 'ndcg' or 'ndcg@<k>'"):
        EvaluationConfig(primary_metric="map").primary(data(["click"], groups=True))


def test_data_without_groups_warns_once_that_it_is_judged_on_auc(caplog):
    from components.evaluation import config as evaluation_config

    evaluation_config._warn_auc_instead_of.cache_clear()
    ungrouped = FeatureSpec([Task("click", "click")], [], [], has_groups=False)
    with caplog.at_level(logging.WARNING, logger=evaluation_config.log.name):
        for _ in range(2):  # ranker run resolves it while checking its settings, then again
            assert EvaluationConfig().primary(ungrouped) == PrimaryMetric("click", "auc")
    warnings = [record.getMessage() for record in caplog.records if "no request groups" in record.getMessage()]
    assert warnings == ["the data has no request groups: the primary metric is AUC instead of ndcg@10"]


def test_bad_inputs_get_clear_errors(synthetic_examples, baseline_dir, tmp_path):
    with pytest.raises(ValueError, match="primary_task 'share' is not a target"):
        evaluate(
            CONFIG.replace(primary_task="share"),
            synthetic_examples,
            {"c": LabelScorer(0)},
            baseline_dir,
            tmp_path,
        )
    with pytest.raises(ValueError, match="model 'c' gave scores for none of the targets"):
        evaluate(CONFIG, synthetic_examples, {"c": RandomScorer(0, ("share",))}, baseline_dir, tmp_path)
    with pytest.raises(ValueError, match="EvaluationConfig: unknown key 'k' \\(did you mean 'ks'\\?\\)"):
        EvaluationConfig.from_sources('{"k": 5}')

    @dataclasses.dataclass
    class Broken(LabelScorer):
        def __call__(self, columns):
            scores = super().__call__(columns)
            scores["click"][7] = np.nan
            return scores

    with pytest.raises(ValueError, match="model 'c' gave 1 non-finite click scores \\(first: row 7\\)"):
        evaluate(CONFIG, synthetic_examples, {"c": Broken(0.1)}, baseline_dir, tmp_path)


def _split(rows: list[dict]) -> SplitEvaluation:
    return SplitEvaluation("test", 0, 0, ["a", "b"], rows, [], [], {}, 0.0)


def _row(model: str, subset: str, value: float, requests: int = 100) -> dict:
    return {
        "model": model,
        "subset": subset,
        "target": "favorite",
        "metric": "ndcg@10",
        "value": value,
        "requests": requests,
    }


@pytest.mark.parametrize(("module_b", "tolerance", "blessed"), [(0.49, 0.05, True), (0.49, 0.01, False)])
def test_module_regression_tolerance(module_b, tolerance, blessed):
    rows = [_row("m", "all", 0.6), _row("g", "all", 0.5), _row("m", "a", 0.7), _row("g", "a", 0.5)]
    rows += [_row("m", "b", module_b), _row("g", "b", 0.5)]
    config = CONFIG.replace(tolerance=tolerance)
    blessing = decide(config, PrimaryMetric("favorite", "ndcg@10"), _split(rows), None, COMPARED)
    assert blessing.blessed is blessed
    assert blessing.modules["b"]["relative_change"] == pytest.approx(-0.02)
    if not blessed:
        assert blessing.reasons == ["module b: m favorite ndcg@10 0.4900 is 2.0% below g 0.5000 (tolerance 1.0%)"]


@pytest.mark.parametrize(
    ("p_value", "veto", "blessed"),
    [
        (0.03, "significant", True),  # significant alone, not after correcting for two gated modules
        (0.02, "significant", False),  # 0.02 x 2 = 0.04 < alpha
        (0.03, "point", False),
        (None, "significant", False),  # no test measured: judged on the point estimate
    ],
)
def test_a_module_vetoes_only_a_significant_regression_after_correction(p_value, veto, blessed):
    rows = [_row("m", "all", 0.6), _row("g", "all", 0.5), _row("m", "a", 0.7), _row("g", "a", 0.5)]
    rows += [{**_row("m", "b", 0.45), "p_value": p_value, "lift_ci_low": -0.2, "lift_ci_high": -0.01}]
    rows += [_row("g", "b", 0.5)]
    config = CONFIG.replace(module_veto=veto)
    blessing = decide(config, PrimaryMetric("favorite", "ndcg@10"), _split(rows), None, COMPARED)
    assert blessing.blessed is blessed
    assert blessing.modules["b"]["p_value_corrected"] == (None if p_value is None else pytest.approx(2 * p_value))
    if not blessed:
        assert blessing.reasons[0].startswith("module b: m favorite ndcg@10 0.4500 is 10.0% below g 0.5000")


def test_module_veto_must_be_a_known_rule():
    with pytest.raises(ValueError, match="module_veto: Input should be 'significant' or 'point'"):
        EvaluationConfig(module_veto="sometimes")


def test_significance_rule_needs_a_small_p_value_and_a_positive_interval():
    candidate = {**_row("m", "all", 0.52), "p_value": 0.3, "lift_ci_low": -0.01, "lift_ci_high": 0.09}
    config = CONFIG.replace(require_significance=True)
    blessing = decide(
        config, PrimaryMetric("favorite", "ndcg@10"), _split([candidate, _row("g", "all", 0.5)]), None, COMPARED
    )
    assert blessing.reasons == [
        "the gain over g is not significant: p = 0.3000 >= alpha = 0.05",
        "the lift's 95% interval over g [-1.0%, +9.0%] does not lie above 0",
    ]
    assert decide(
        CONFIG, PrimaryMetric("favorite", "ndcg@10"), _split([candidate, _row("g", "all", 0.5)]), None, COMPARED
    ).blessed


def test_a_module_with_too_few_requests_cannot_veto_and_says_why():
    rows = [_row("m", "all", 0.6), _row("g", "all", 0.5), _row("m", "a", 0.7), _row("g", "a", 0.5)]
    rows += [_row("m", "b", 0.3, requests=9), _row("g", "b", 0.5)]
    blessing = decide(CONFIG, PrimaryMetric("favorite", "ndcg@10"), _split(rows), None, COMPARED)
    assert blessing.blessed and blessing.modules["b"]["gated"] is False and blessing.modules["a"]["gated"] is True
    assert blessing.modules["b"]["not_gated_reason"] == (
        "9 requests with a positive < module_min_requests=10: reported, not gated"
    )


@pytest.mark.parametrize(("metric", "evidence"), [("ndcg@10", "requests"), ("auc", "positives")])
def test_a_split_with_too_few_requests_gets_no_verdict(metric, evidence):
    """One request with a positive gives a zero-width interval: no verdict, whatever the point estimates."""
    primary = PrimaryMetric("favorite", metric)

    def judged_on(count: int) -> Blessing:
        rows = [{**_row("m", "all", 0.6), evidence: count}, _row("g", "all", 0.5)]
        if metric == "auc":  # AUC rows name their task "task"
            rows = [{**row, "metric": "auc", "task": row["target"]} for row in rows]
            return decide(CONFIG, primary, SplitEvaluation("test", 0, 0, ["a"], [], rows, [], {}, 0.0), None, COMPARED)
        return decide(CONFIG, primary, _split(rows), None, COMPARED)

    what = "positive impression" if metric == "auc" else "request with a positive"
    note = " (counted in positive impressions for AUC)" if metric == "auc" else ""
    assert judged_on(1).reasons == [
        f"the test split has 1 {what} for favorite {metric}; a verdict needs min_requests=20{note}: too few for a "
        "verdict (use more impressions or more test days)"
    ]
    assert judged_on(20).blessed


def test_the_bar_plot_draws_an_interval_that_excludes_its_point_estimate():
    # A bootstrap of 1 or 2 samples can give an interval on one side of the value: no negative error bar.
    rows = [
        {**_row("m", "a", 0.6), "ci_low": 0.62, "ci_high": 0.7},
        {**_row("g", "a", 0.5), "ci_low": 0.3, "ci_high": 0.4},
    ]
    assert _bar_plot(_split(rows), "favorite", "ndcg@10").startswith("<img")


def test_every_module_states_its_evidence_and_minimum_detectable_effect():
    rows = [_row("m", "all", 0.6), _row("g", "all", 0.5)]
    rows += [{**_row("m", "a", 0.6, requests=400), "delta_sd": 0.3, "positives": 420}, _row("g", "a", 0.5)]
    rows += [{**_row("m", "b", 0.6, requests=100), "delta_sd": 0.3, "positives": 101}, _row("g", "b", 0.5)]
    blessing = decide(CONFIG, PrimaryMetric("favorite", "ndcg@10"), _split(rows), None, COMPARED)
    a, b = blessing.modules["a"], blessing.modules["b"]
    assert (a["requests"], a["positives"]) == (400, 420)
    # z(1 - 0.05 / 2 / 2 gated modules) + z(0.8) = 2.2414 + 0.8416; sd 0.3; baseline 0.5
    assert a["mde_relative"] == pytest.approx(3.0830 * 0.3 / 20 / 0.5, rel=1e-3)
    assert b["mde_relative"] == pytest.approx(2 * a["mde_relative"])  # a quarter of the requests


def _heldout(value: float, p_value: float) -> SplitEvaluation:
    rows = [{**_row("m", "all", value), "p_value": p_value, "lift": value / 0.5 - 1}, _row("g", "all", 0.5)]
    return SplitEvaluation("heldout", 0, 0, ["email"], rows, [], [], {}, 0.0)


@pytest.mark.parametrize(
    ("rule", "value", "p_value", "refusal"),
    [
        ("not_worse", 0.45, 0.01, "is significantly below the GBDT fallback 0.5000 (p = 0.0100 < alpha = 0.05)"),
        ("not_worse", 0.45, 0.20, None),  # worse, but within noise
        ("beat", 0.49, 0.60, "does not beat the GBDT fallback 0.5000"),
        ("beat", 0.52, 0.60, None),
        ("off", 0.30, 0.001, None),
    ],
)
def test_the_held_out_module_has_a_configurable_rule(rule, value, p_value, refusal):
    rows = [_row("m", "all", 0.6), _row("g", "all", 0.5)]
    config = CONFIG.replace(heldout_rule=rule)
    blessing = decide(config, PrimaryMetric("favorite", "ndcg@10"), _split(rows), _heldout(value, p_value), COMPARED)
    assert blessing.heldout["candidate"] == value and blessing.heldout["rule"] == rule
    if refusal is None:
        assert blessing.blessed, blessing.reasons
    else:
        assert blessing.reasons == [f"held-out module email: m favorite ndcg@10 {value:.4f} {refusal}"]


@pytest.mark.parametrize(("rule", "blessed"), [("not_worse", True), ("beat", False)])
def test_a_held_out_module_without_a_positive_is_not_judged_unless_it_must_win(rule, blessed):
    rows = [_row("m", "all", 0.6), _row("g", "all", 0.5)]
    unmeasured = SplitEvaluation(
        "heldout", 0, 0, ["email"], [_row("m", "all", None), _row("g", "all", None)], [], [], {}, 0.0
    )
    config = CONFIG.replace(heldout_rule=rule)
    blessing = decide(config, PrimaryMetric("favorite", "ndcg@10"), _split(rows), unmeasured, COMPARED)
    assert blessing.blessed is blessed
    assert blessing.heldout["not_judged_reason"] == "no request with a positive for favorite ndcg@10"
    if not blessed:
        assert blessing.reasons == [
            "held-out module email: favorite ndcg@10 could not be measured (no request with a positive), "
            "so it cannot beat the fallback"
        ]


def test_the_global_lightgbm_is_reported_and_can_be_required():
    rows = [{**_row("m", "all", 0.6), "global_lift": -0.02, "global_lift_ci_low": -0.05, "global_lift_ci_high": 0.01}]
    rows += [_row("g", "all", 0.5), _row("global", "all", 0.612)]
    blessing = decide(CONFIG, PrimaryMetric("favorite", "ndcg@10"), _split(rows), None, COMPARED)
    assert blessing.blessed and blessing.global_value == 0.612 and blessing.global_lift_ci == (-0.05, 0.01)
    config = CONFIG.replace(must_beat_global=True)
    refused = decide(config, PrimaryMetric("favorite", "ndcg@10"), _split(rows), None, COMPARED)
    assert refused.reasons == ["m favorite ndcg@10 0.6000 does not beat global 0.6120"]


def test_config_reads_the_environment_then_the_json():
    environ = {"RANKER_EVAL_KS": "[3, 0]", "RANKER_EVAL_TOLERANCE": "0.1", "RANKER_EVAL_PRIMARY_TASK": "click"}
    config = EvaluationConfig.from_sources('{"tolerance": 0.05}', environ=environ)
    assert config.ks == (3, 0) and config.tolerance == 0.05 and config.primary_task == "click"
    with pytest.raises(ValueError, match="seed \\(env RANKER_EVAL_SEED\\): Input should be a valid integer"):
        EvaluationConfig.from_sources("{}", environ={"RANKER_EVAL_SEED": "x"})


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"tolerance": -0.5}, "tolerance must be a finite number >= 0 \\(a relative shortfall\\), got -0.5"),
        ({"bootstrap_samples": 0}, "bootstrap_samples must be >= 1, got 0"),
        ({"permutation_samples": 0}, "permutation_samples must be >= 20, got 0"),
        ({"permutation_samples": 9, "alpha": 0.1}, "permutation_samples must be >= 10, got 9"),
        ({"confidence_level": 1.5}, "confidence_level must lie in \\(0, 1\\), got 1.5"),
        ({"confidence_level": 0}, "confidence_level must lie in \\(0, 1\\), got 0.0"),
        ({"min_requests": -1}, "min_requests must be >= 0, got -1"),
        ({"module_min_requests": -1}, "module_min_requests must be >= 0, got -1"),
        ({"ks": [5, -3]}, "ks must be NDCG cutoffs >= 1 or 0 \\(the full list\\), got \\[5, -3\\]"),
        ({"calibration_bins": 0}, "calibration_bins must be >= 1, got 0"),
    ],
)
def test_nonsense_evaluation_settings_are_refused_in_one_line_naming_the_key(settings, message):
    with pytest.raises(ValueError, match=f"^EvaluationConfig: {message}$"):
        EvaluationConfig.from_sources(json.dumps(settings))


def test_the_smallest_sign_flip_test_that_can_reach_alpha_is_accepted():
    assert EvaluationConfig(permutation_samples=20).permutation_samples == 20  # p >= 1/21 < 0.05


@pytest.mark.parametrize("split", ["train", "eval"])
def test_a_verdict_on_another_split_than_test_is_refused_and_names_it(split):
    rows = [_row("m", "all", 0.6), _row("g", "all", 0.5)]
    on_split = SplitEvaluation(split, 0, 0, ["a"], rows, [], [], {}, 0.0)
    blessing = decide(CONFIG, PrimaryMetric("favorite", "ndcg@10"), on_split, None, COMPARED)
    assert not blessing.blessed and blessing.split == split and blessing.to_dict()["split"] == split
    assert blessing.reasons == [f"judged on the {split} split: a verdict needs the held-back test split"]
    on_test = decide(CONFIG, PrimaryMetric("favorite", "ndcg@10"), _split(rows), None, COMPARED)
    assert on_test.blessed and on_test.to_dict()["split"] == "test"


def test_an_auc_module_is_gated_on_its_positive_impressions_like_the_split():
    """Without request groups a row's "requests" are impressions: the module gate counts positives, as rule 0."""
    rows = []
    for subset, positives in (("all", 60), ("a", 30), ("b", 8)):
        evidence = {"requests": 100, "positives": positives}
        rows += [{"model": "m", "subset": subset, "task": "click", "metric": "auc", "value": 0.8, **evidence}]
        rows += [{"model": "g", "subset": subset, "task": "click", "metric": "auc", "value": 0.7, **evidence}]
    split = SplitEvaluation("test", 300, 300, ["a", "b"], [], rows, [], {}, 0.0)
    blessing = decide(CONFIG.replace(module_min_requests=20), PrimaryMetric("click", "auc"), split, None, COMPARED)
    assert blessing.modules["a"]["gated"] and not blessing.modules["b"]["gated"]
    assert blessing.modules["b"]["not_gated_reason"] == (
        "8 positive impressions < module_min_requests=20 (counted in positive impressions for AUC): reported, not gated"
    )


def _result(blessing: Blessing, split: SplitEvaluation) -> Any:
    """The parts of an EvaluationResult the headline and the judged count read."""
    return SimpleNamespace(candidate="m", baseline="g", blessing=blessing, test=split)


def test_an_unmeasured_module_has_no_p_value_and_is_not_counted_in_the_headline():
    rows = [{**_row("m", "all", 0.6, requests=12), "positives": 12}, _row("g", "all", 0.5, requests=12)]
    rows += [_row("m", "a", 0.7), _row("g", "a", 0.5)]
    rows += [{**_row("m", "b", None, requests=0), "p_value": 1.0}, _row("g", "b", None, requests=0)]
    split = SplitEvaluation("test", 900, 103, ["a", "b"], rows, [], [], {}, 0.0)
    blessing = decide(CONFIG.replace(min_requests=10), PrimaryMetric("favorite", "ndcg@10"), split, None, COMPARED)
    assert blessing.modules["b"]["p_value"] is None and blessing.modules["b"]["p_value_corrected"] is None
    result = _result(blessing, split)
    assert "; ahead on 1 of 1 measured modules." in headline_sentence(result)
    assert judged_count(result) == "12 requests with a positive, of 103"


def test_the_auc_judged_count_is_impressions_and_positives():
    rows = [{"model": "m", "subset": "all", "task": "click", "metric": "auc", "value": 0.8, "requests": 30}]
    rows[0]["positives"] = 8
    split = SplitEvaluation("test", 30, 30, [], [], rows, [], {}, 0.0)
    blessing = decide(CONFIG, PrimaryMetric("click", "auc"), split, None, COMPARED)
    result = _result(blessing, split)
    assert judged_count(result) == "30 impressions, 8 of them positive"


def test_an_interval_bound_that_could_not_be_computed_shows_as_n_a_in_the_report():
    from components.evaluation.report import _interval, _lift_cell, _lift_words

    assert _interval(0.45, None) == "[0.4500, n/a]"
    assert _lift_cell({"lift": -1.0, "lift_ci_low": -1.0, "lift_ci_high": None}, "") == "-100.0% [-100.0%, n/a]"
    assert _lift_words(-1.0, [None, -0.5], 0.01) == " (-100.0%, 95% CI [n/a, -50.0%], p = 0.01)"


def test_a_test_module_unseen_in_training_is_marked_and_its_fallback_listed(synthetic_examples, tmp_path):
    import shutil

    examples = examples_with(synthetic_examples, tmp_path / "examples")
    spec = FeatureSpec.load(examples)
    rows = synthetic_rows(80, candidates=10, seed=2) + synthetic_rows(20, candidates=10, seed=5, modules=("widget",))
    shutil.rmtree(examples / "test")
    write_shards(rows, examples, "test", spec)
    spec.splits["test"].rows_per_module["widget"] = 200
    spec.save(examples / "feature_spec.json")
    baseline = baseline_of(examples, tmp_path / "baseline")
    result = evaluate(CONFIG, examples, {"candidate": LabelScorer(0.3)}, baseline, tmp_path / "report")
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert result.unseen_modules == metrics["unseen_modules"] == ["widget"]
    assert {item["module"] for item in metrics["baseline_fallbacks"]} == {"widget"}
    assert any(note.startswith("Module widget is in no training row (unseen in training)") for note in result.notes)
    html = (tmp_path / "report" / "report.html").read_text()
    assert "widget (unseen in training)" in html and "GBDT widget / click uses the global model: not in the" in html
