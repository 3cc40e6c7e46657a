"""The batch ranking's candidate rows -> model inputs: what is scored, what is a dead letter and why."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from batch.features import FILE, ROW, FeatureAssembler
from tests.conftest import synthetic_feature_spec


def assemble(prices) -> tuple[pd.DataFrame, list[dict]]:
    chunk = pd.DataFrame(
        {
            FILE: "candidates.csv",
            ROW: np.arange(2, 2 + len(prices)),
            "user_id": "u1",
            "listing_id": [f"l{i}" for i in range(len(prices))],
            "module_name": "email",
            "price": prices,
        }
    )
    return FeatureAssembler(synthetic_feature_spec(), "user_id", "listing_id").assemble(chunk)


@pytest.mark.parametrize(
    "prices",
    [
        [1.5, math.nan, math.inf, -math.inf, 1e39, 3.4e38],  # a float column (Parquet)
        ["1.5", "", "inf", "-inf", "1e39", "3.4e38"],  # text (CSV)
    ],
    ids=["floats", "text"],
)
def test_numbers_a_float32_cannot_hold_are_dead_letters_as_the_server_refuses_them(prices):
    scored, dead = assemble(prices)

    assert list(scored["listing_id"]) == ["l0", "l1", "l5"]  # missing (NaN, "") is scored as missing
    assert np.isnan(scored["price"].iat[1]) and scored["price"].dtype == np.float32
    assert [(letter["row"], letter["reason"]) for letter in dead] == [
        (4, f"price: {prices[2]!r} is not a finite float32 number"),
        (5, f"price: {prices[3]!r} is not a finite float32 number"),
        (6, f"price: {prices[4]!r} is not a finite float32 number"),
    ]


def test_text_that_is_no_number_is_a_dead_letter_naming_the_value():
    scored, dead = assemble(["2", "cheap"])

    assert list(scored["price"]) == [2.0]
    assert [(letter["file"], letter["row"], letter["reason"]) for letter in dead] == [
        ("candidates.csv", 3, "price: 'cheap' is not a number")
    ]


def test_the_model_id_features_are_read_from_the_user_and_item_columns_the_table_names():
    columns = {"user_id": ["u1", "u1"], "listing_id": ["l1", "l2"], "module_name": "email", "price": [1.0, 2.0]}
    chunk = pd.DataFrame({FILE: "candidates.csv", ROW: [2, 3], **columns})
    renamed = chunk.rename(columns={"user_id": "customer", "listing_id": "item"})
    standard = FeatureAssembler(synthetic_feature_spec(), "user_id", "listing_id")
    assembler = FeatureAssembler(synthetic_feature_spec(), "customer", "item")

    scored, dead = assembler.assemble(renamed)

    assert assembler.id_sources == {"user_id": "customer", "listing_id": "item"} and standard.id_sources == {}
    assert {"customer", "item"} <= set(assembler.input_columns) and "listing_id" not in assembler.input_columns
    expected = standard.assemble(chunk)[0]
    assert not dead and list(scored["listing_id"]) == list(scored["item"]) == ["l1", "l2"]
    pd.testing.assert_frame_equal(scored[expected.columns], expected)
