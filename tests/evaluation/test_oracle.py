"""Oracles: reading oracle files by the spec's columns, the position-free oracle and the share of its gain."""

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.evaluation.evaluate import EvaluationConfig, _gain_captured, evaluate
from components.evaluation.report import summary_table
from components.evaluation.scorers import ORACLE_NAME, ORACLE_POSITION_FREE_NAME, RANDOM_NAME, OracleScorer
from ranker_core.schema import FeatureSpec
from tests.baseline.conftest import examples_with
from tests.conftest import synthetic_feature_spec, synthetic_rows
from tests.evaluation.conftest import FAST, LabelScorer, baseline_of
from trainer.examples import read_split, write_shards

TASKS = ("click", "favorite", "add_to_cart", "purchase")
# A user's dataset whose request and item columns are called "session" and "item".
USER_SPEC = dataclasses.replace(
    synthetic_feature_spec(), roles={"user_id": "user_id", "item_id": "item", "request_id": "session"}
)
EXAMPLES = {"request_id": np.array(["s1", "s1", "s2"]), "item": np.array(["a", "b", "a"])}


def oracle_frame(position_free: bool = True) -> pd.DataFrame:
    """Oracle rows of EXAMPLES in another order: item b beats a with the position effect, a beats b without."""
    frame = pd.DataFrame({"session": ["s2", "s1", "s1"], "item": ["a", "b", "a"]})
    for grade, task in enumerate(TASKS):
        frame[f"p_{task}"] = np.array([0.3, 0.4, 0.2]) / 2**grade
        if position_free:
            frame[f"p_{task}_position_free"] = np.array([0.3, 0.5, 0.6]) / 2**grade
    return frame


def write_oracle(folder, frame: pd.DataFrame, name: str = "part-00000.parquet") -> str:
    folder.mkdir(exist_ok=True)
    frame.to_parquet(folder / name)
    return str(folder)


def test_oracle_files_join_on_the_specs_request_and_item_columns(tmp_path):
    oracle, position_free = OracleScorer.load_all(write_oracle(tmp_path / "oracle", oracle_frame()), USER_SPEC)
    assert (oracle.name, position_free.name) == (ORACLE_NAME, ORACLE_POSITION_FREE_NAME)
    assert oracle.item_column == position_free.item_column == "item"
    np.testing.assert_allclose(oracle(EXAMPLES)["click"], [0.2, 0.4, 0.3])
    scores = position_free(EXAMPLES)
    np.testing.assert_allclose(scores["click"], [0.6, 0.5, 0.3])
    np.testing.assert_allclose(scores["purchase"], [0.075, 0.0625, 0.0375])
    np.testing.assert_allclose(scores["engagement"], 4 * scores["click"])  # sum of p_g * 2**(g-1), p_g = p_click / 2**g


def test_an_oracle_without_position_free_columns_is_one_scorer(tmp_path):
    scorers = OracleScorer.load_all(write_oracle(tmp_path / "oracle", oracle_frame(position_free=False)), USER_SPEC)
    assert [scorer.name for scorer in scorers] == [ORACLE_NAME]


def test_oracle_errors_name_the_file_and_the_column(tmp_path):
    lacking = write_oracle(tmp_path / "lacking", oracle_frame().drop(columns=["p_purchase"]))
    with pytest.raises(ValueError, match=r"oracle file .*lacking/part-00000.parquet lacks columns \['p_purchase'\]"):
        OracleScorer.load_all(lacking, USER_SPEC)
    listing = write_oracle(tmp_path / "listing", oracle_frame().rename(columns={"item": "listing_id"}))
    with pytest.raises(ValueError, match=r"part-00000.parquet lacks columns \['item'\]"):
        OracleScorer.load_all(listing, USER_SPEC)
    partly = write_oracle(tmp_path / "partly", oracle_frame().drop(columns=["p_favorite_position_free"]))
    with pytest.raises(ValueError, match=r"lacks columns \['p_favorite_position_free'\] \(the position-free"):
        OracleScorer.load_all(partly, USER_SPEC)
    mixed = write_oracle(tmp_path / "mixed", oracle_frame().iloc[:1])
    write_oracle(tmp_path / "mixed", oracle_frame(position_free=False).iloc[1:], "part-00001.parquet")
    with pytest.raises(ValueError, match=r"part-00001.parquet lacks columns \['p_click_position_free'"):
        OracleScorer.load_all(mixed, USER_SPEC)
    with pytest.raises(ValueError, match="no request_id column"):
        OracleScorer.load_all(lacking, dataclasses.replace(USER_SPEC, has_groups=False))
    oracle = OracleScorer.load_all(write_oracle(tmp_path / "oracle", oracle_frame()), USER_SPEC)[0]
    with pytest.raises(KeyError, match="no 'item' column"):
        oracle({"request_id": EXAMPLES["request_id"]})


def test_the_oracle_gain_share_is_measured_against_the_position_free_oracle():
    index = {(name, "click", 10): i for i, name in enumerate([ORACLE_NAME, ORACLE_POSITION_FREE_NAME, RANDOM_NAME])}
    means = np.array([0.9, 0.7, 0.3, 0.5])  # oracle, position-free oracle, random, a model (column 3)
    shares = _gain_captured(means, 3, index, "click", 10)
    assert shares == pytest.approx({"gain_captured": 0.5, "gain_captured_with_position": 1 / 3})
    del index[(ORACLE_POSITION_FREE_NAME, "click", 10)]
    shares = _gain_captured(means, 3, index, "click", 10)
    assert shares == pytest.approx({"gain_captured": 1 / 3, "gain_captured_with_position": 1 / 3})
    assert all(math.isnan(share) for share in _gain_captured(means, 3, {}, "click", 10).values())


def evaluate_with_oracle(examples, baseline_dir, tmp_path, position_free: bool = True):
    """Evaluate a label scorer with an oracle whose logged probabilities know the labels and whose
    position-free ones know them less (half label, half noise)."""
    spec = FeatureSpec.load(examples)
    splits = [split for split in ("test", "heldout") if (Path(examples) / split).is_dir()]
    every = [read_split(examples, split, spec) for split in splits]
    columns = {name: np.concatenate([split[name] for split in every]) for name in every[0]}
    frame = pd.DataFrame({"request_id": columns["request_id"], "listing_id": columns["listing_id"]})
    noise = np.random.default_rng(0).random(len(frame))
    for task in spec.task_names:
        frame[f"p_{task}"] = 0.1 + 0.8 * columns[f"label_{task}"]
        if position_free:
            frame[f"p_{task}_position_free"] = 0.5 * frame[f"p_{task}"] + 0.5 * noise
    oracle_uri = write_oracle(tmp_path / "oracle", frame.drop_duplicates(["request_id", "listing_id"]))
    config = EvaluationConfig(**FAST)
    return evaluate(config, examples, {"c": LabelScorer(0.5)}, baseline_dir, tmp_path / "report", oracle_uri)


def test_evaluate_ranks_both_oracles_and_reports_both_shares(synthetic_examples, baseline_dir, tmp_path):
    result = evaluate_with_oracle(synthetic_examples, baseline_dir, tmp_path)

    assert result.models[-2:] == [ORACLE_NAME, ORACLE_POSITION_FREE_NAME]
    free = result.test.find(ORACLE_POSITION_FREE_NAME, "all", "purchase", "ndcg")
    logged = result.test.find(ORACLE_NAME, "all", "purchase", "ndcg")
    assert free["gain_captured"] == pytest.approx(1.0) and logged["gain_captured_with_position"] == pytest.approx(1.0)
    assert logged["gain_captured"] > 1.0 > free["gain_captured_with_position"]
    gbdt = result.test.find("gbdt_per_module", "all", "purchase", "ndcg")
    assert gbdt["gain_captured"] > gbdt["gain_captured_with_position"] > 0


def hand_ndcg_at_10(requests: np.ndarray, gains: np.ndarray, scores: np.ndarray) -> float:
    """Mean NDCG@10 over requests, one request at a time (no ties in these scores)."""
    values = []
    for request in np.unique(requests):
        rows = requests == request
        discounts = 1 / np.log2(np.arange(2, 12))
        ranked = gains[rows][np.argsort(-scores[rows])][:10]
        ideal = np.sort(gains[rows])[::-1][:10]
        values.append((ranked * discounts[: len(ranked)]).sum() / (ideal * discounts[: len(ideal)]).sum())
    return float(np.mean(values))


def test_every_model_is_also_judged_against_the_expected_relevance(synthetic_examples, baseline_dir, tmp_path):
    result = evaluate_with_oracle(synthetic_examples, baseline_dir, tmp_path)
    spec = FeatureSpec.load(synthetic_examples)
    columns = read_split(synthetic_examples, "test", spec)
    gains = OracleScorer.load_all(str(tmp_path / "oracle"), spec)[1](columns)["favorite"]
    scores = LabelScorer(0.5)(columns)["favorite"]

    row = result.test.find("c", "all", "favorite", "expected_ndcg@10")
    assert row["value"] == pytest.approx(hand_ndcg_at_10(columns["request_id"], gains, scores))
    assert row["requests"] == result.test.requests and row["excluded_requests"] == 0  # every request counts
    random = result.test.find(RANDOM_NAME, "all", "favorite", "expected_ndcg@10")["value"]
    assert row["gain_captured"] == pytest.approx((row["value"] - random) / (1 - random))
    assert row["lift"] is not None and row["global_lift_ci_low"] <= row["global_lift"] <= row["global_lift_ci_high"]
    assert result.test.find(ORACLE_POSITION_FREE_NAME, "all", "favorite", "expected_ndcg@10")["value"] == 1.0
    assert result.test.find(ORACLE_NAME, "all", "favorite", "expected_ndcg@10") is None  # it ranks by position
    assert {r["subset"] for r in result.test.ndcg if r["metric"] == "expected_ndcg@10"} == {"all", *result.test.modules}
    assert result.headline_metrics()["c_expected_lift"] == row["lift"]
    assert "Against the expected relevance" in (tmp_path / "report" / "report.html").read_text()
    assert f"c favorite expected_ndcg@10 = {row['value']:.4f}" in summary_table(result)


def test_without_a_position_free_oracle_there_is_no_expected_relevance(synthetic_examples, baseline_dir, tmp_path):
    result = evaluate_with_oracle(synthetic_examples, baseline_dir, tmp_path, position_free=False)
    assert not [row for row in result.test.ndcg if row["metric"].startswith("expected_")]
    assert "expected" not in summary_table(result) and "c_expected_lift" not in result.headline_metrics()


def test_the_held_out_module_is_judged_against_the_expected_relevance_too(synthetic_examples, tmp_path):
    examples = examples_with(synthetic_examples, tmp_path / "examples", held_out_module="email")
    rows = synthetic_rows(20, candidates=10, seed=3, modules=("email",))
    write_shards(rows, examples, "heldout", FeatureSpec.load(examples))
    result = evaluate_with_oracle(examples, baseline_of(examples, tmp_path / "baseline"), tmp_path)

    row = result.heldout.find("c", "all", "favorite", "expected_ndcg@10")
    assert row["requests"] == 20 and row["lift"] is not None
    report = (tmp_path / "report" / "report.html").read_text()
    heldout_section = report[report.index("<h2>Held-out module") :]
    assert "expected_ndcg@10" in heldout_section.split("</table>")[0]
