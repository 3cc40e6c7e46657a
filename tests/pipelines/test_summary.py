"""The end-of-run NDCG table from an evaluation report."""

from pipelines.summary import format_table, ndcg_table


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

    assert table[0] == ["module", "task", "mmoe", "gbdt_per_module", "oracle", "mmoe lift"]
    assert table[1] == ["all", "click", "0.5000", "0.5100", "-", "-2.0%"]
    assert table[2] == ["search", "click", "0.6100", "0.5800", "0.9000", "+5.0%"]
    assert len(table) == 3  # a task with no value in a module is left out


def test_format_table_aligns_columns_under_a_rule():
    text = format_table([["a", "bb"], ["ccc", "d"]])
    assert text.splitlines() == ["a    bb", "---  --", "ccc  d"]
