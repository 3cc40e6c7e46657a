"""Train statistics: vocabularies, numeric moments and quantiles, split counts; merging equals one pass."""

import numpy as np
import pandas as pd
import pytest

from components.features.statistics import FeatureColumn, FeatureStatistics, SplitCounts
from ranker_core.schema import MODULE, REQUEST_ID, label_key

COLUMNS = [
    FeatureColumn("color", "categorical", max_vocabulary=2, min_count=2),
    FeatureColumn("tags", "list"),
    FeatureColumn("item", "hashed", hash_buckets=64),
    FeatureColumn("price", "numeric", transform="log1p", encoding="pwl"),
    FeatureColumn("rating", "numeric"),
]


@pytest.fixture
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    size = 1000
    return pd.DataFrame(
        {
            "_uid": np.arange(size),
            "color": rng.choice(["red", "blue", "green", "pink", ""], size, p=[0.4, 0.3, 0.2, 0.001, 0.099]),
            "tags": rng.choice(["a|b", "b", "", "c|a"], size),
            "item": rng.choice(["x", "y"], size),
            "price": np.exp(rng.normal(3, 1, size)),
            "rating": np.where(rng.random(size) < 0.2, np.nan, rng.uniform(1, 5, size)),
        }
    )


def test_features_describe_the_data(frame):
    color, tags, item, price, rating = FeatureStatistics.of(frame, COLUMNS, "_uid").features(COLUMNS)
    assert color.vocabulary == ["red", "blue"]  # top 2 by count; "" is missing, not a value
    assert color.missing_fraction == pytest.approx((frame["color"] == "").mean())
    counts = frame["tags"].str.split("|").explode().value_counts()
    assert tags.vocabulary == list(counts.drop("").index) and tags.kind == "list"
    assert item.hash_buckets == 64 and item.vocabulary is None
    log_price = np.log1p(frame["price"])
    assert price.mean == pytest.approx(log_price.mean()) and price.std == pytest.approx(log_price.std(ddof=0))
    assert (price.min, price.max) == pytest.approx((log_price.min(), log_price.max()))
    assert price.quantiles == pytest.approx(list(np.quantile(log_price, np.linspace(0, 1, 22)[1:-1])))
    assert price.transform == "log1p" and price.encoding == "pwl"
    # a normalized feature gets its boundaries too: the trainer's numeric_encoding may bucketize it
    present = frame["rating"].dropna()
    assert rating.quantiles == pytest.approx(list(np.quantile(present, np.linspace(0, 1, 22)[1:-1])))
    assert rating.encoding == "normalize" and rating.missing_fraction == pytest.approx(frame["rating"].isna().mean())
    assert rating.mean == pytest.approx(frame["rating"].mean())


def test_merging_batches_equals_one_pass(frame):
    whole = FeatureStatistics.of(frame, COLUMNS, "_uid").features(COLUMNS)
    merged = FeatureStatistics()
    for part in np.array_split(frame, 3):
        merged.merge(FeatureStatistics.of(part, COLUMNS, "_uid"))
    for expected, actual in zip(whole, merged.features(COLUMNS), strict=True):
        assert actual.vocabulary == expected.vocabulary
        assert actual.mean == pytest.approx(expected.mean) and actual.std == pytest.approx(expected.std)
        assert actual.quantiles == pytest.approx(expected.quantiles) if expected.quantiles else not actual.quantiles


def test_a_constant_or_empty_column_does_not_divide_by_zero():
    frame = pd.DataFrame({"_uid": [1, 2], "rating": [3.0, 3.0]})
    [rating] = FeatureStatistics.of(frame, COLUMNS[-1:], "_uid").features(COLUMNS[-1:])
    assert (rating.mean, rating.std) == (3.0, 1.0)
    [empty] = FeatureStatistics().features(COLUMNS[-1:])
    assert (empty.mean, empty.std, empty.missing_fraction) == (0.0, 1.0, 0.0)


def test_split_counts_merge():
    frame = pd.DataFrame(
        {
            "_split": ["train", "train", "train", "test"],
            REQUEST_ID: ["r1", "r1", "r2", "r3"],
            MODULE: ["search", "search", "home", "search"],
            label_key("click"): [1, 0, 1, 1],
        }
    )
    counts = SplitCounts.of(frame.iloc[:2], ("click",), "_split").merge(
        SplitCounts.of(frame.iloc[2:], ("click",), "_split")
    )
    train = counts.splits["train"]
    assert (train.rows, train.requests, train.positives) == (3, 2, {"click": 2})
    assert train.rows_per_module == {"home": 1, "search": 2}
    assert counts.splits["test"].rows == 1


def test_a_column_null_in_every_row_is_named_in_a_warning(frame, caplog):
    nulls = frame.assign(color="", tags="", item="", price=np.nan)
    with caplog.at_level("WARNING", logger="components.features.statistics"):
        color, tags, *_ = FeatureStatistics.of(nulls, COLUMNS, "_uid").features(COLUMNS)
    assert color.vocabulary == [] and tags.vocabulary == []
    warned = [record.getMessage() for record in caplog.records]
    for name in ("color", "tags", "item", "price"):
        assert any(f"feature {name!r}" in line and "null in all 1000 rows" in line for line in warned), warned
    assert not any("'rating'" in line for line in warned), warned  # 80% of its rows have a value
    caplog.clear()
    FeatureStatistics().features(COLUMNS)  # no rows counted: nothing to say
    assert not caplog.records
