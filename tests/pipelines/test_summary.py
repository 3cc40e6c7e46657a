"""The end-of-run NDCG table from an evaluation report."""

from pipelines.summary import format_table, heldout_table, ndcg_table, verdict_text


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
    table = ndcg_table(REPORT, "ndcg@10")

    assert table[0] == ["module", "task", "mmoe", "gbdt_per_module", "oracle", "mmoe lift", "vs global"]
    assert table[1] == ["all", "click", "0.5000", "0.5100", "-", "-2.0%", "-"]
    assert table[2] == ["search", "click", "0.6100", "0.5800", "0.9000", "+5.0%", "-"]
    assert len(table) == 3  # a task with no value in a module is left out


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
