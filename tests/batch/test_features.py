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


def module_role_spec(modules=("home_feed", "search")):
    """The synthetic spec of a dataset whose module is the column ``surface`` (as KuaiRand's is ``tab``)."""
    spec = synthetic_feature_spec()
    spec.roles = {**spec.roles, "module": "surface"}
    spec.modules = list(modules)
    return spec


def chunk_of(**columns) -> pd.DataFrame:
    rows = len(next(iter(columns.values())))
    ids = {"user_id": ["u1"] * rows, "listing_id": [f"l{i}" for i in range(rows)]}
    return pd.DataFrame({FILE: "candidates.parquet", ROW: np.arange(1, rows + 1), **ids, **columns})


def test_the_module_is_read_from_the_module_role_column_else_module_name_as_extraction_read_it():
    assembler = FeatureAssembler(module_role_spec(), "user_id", "listing_id", campaign_column="surface")
    assert assembler.module_columns == ("surface", "module_name") and assembler.campaign_is_module
    assert assembler.required_columns == ("user_id", "listing_id")
    assert {"surface", "module_name"} <= set(assembler.input_columns)

    scored, dead = assembler.assemble(chunk_of(surface=["search", "home_feed"]))
    assert not dead and list(scored["module_name"]) == list(scored["surface"]) == ["search", "home_feed"]

    # extracted examples hold the module as module_name: the campaign column is filled from it
    scored, dead = assembler.assemble(chunk_of(module_name=["search", "search"]))
    assert not dead and list(scored["surface"]) == ["search", "search"]

    # with a campaign column of its own the module still comes from the role column
    by_campaign = FeatureAssembler(module_role_spec(), "user_id", "listing_id", campaign_column="campaign")
    scored, dead = by_campaign.assemble(chunk_of(surface=["search", "search"], campaign=["push", "email"]))
    assert not dead and list(scored["module_name"]) == ["search", "search"]
    assert list(scored["campaign"]) == ["push", "email"]


def test_without_a_module_column_a_single_module_model_scores_its_module_else_the_row_is_a_dead_letter():
    single = FeatureAssembler(module_role_spec(["search"]), "user_id", "listing_id", campaign_column="surface")
    scored, dead = single.assemble(chunk_of(price=[1.0, 2.0]))
    assert not dead and list(scored["module_name"]) == list(scored["surface"]) == ["search", "search"]
    scored, dead = single.assemble(chunk_of(surface=["search", None]))  # a missing value too, as the server does
    assert not dead and list(scored["module_name"]) == ["search", "search"]

    several = FeatureAssembler(module_role_spec(), "user_id", "listing_id", campaign_column="")
    scored, dead = several.assemble(chunk_of(price=[1.0]))
    assert len(scored) == 0 and [letter["reason"] for letter in dead] == [
        "missing column 'surface' (the model's module: a column 'surface' or 'module_name')"
    ]
    scored, dead = several.assemble(chunk_of(surface=["search", ""]))
    assert list(scored["module_name"]) == ["search"] and dead[0]["reason"] == "surface: missing value"


def test_list_values_are_joined_as_the_server_joins_them_and_other_lists_are_dead_letters():
    assembler = FeatureAssembler(synthetic_feature_spec(), "user_id", "listing_id")
    tags = [np.array(["gift", "sale"], dtype=object), ["vintage"], "gift|sale", None, np.array([1, 2]), []]
    chunk = chunk_of(module_name=["search"] * 6, tags=tags)
    chunk["category"] = [["art"], "art", 3.0, None, "toys", "home"]
    chunk["price"] = [1.0, [2.0], "3", None, 4, 5]

    scored, dead = assembler.assemble(chunk)

    assert [(letter["row"], letter["reason"]) for letter in dead] == [
        (1, "category: expected a string, got ['art']"),
        (2, "price: [2.0] is not a number"),
        (5, "tags: expected a string or a list of strings, got [1, 2]"),
    ]
    assert list(scored[ROW]) == [3, 4, 6]
    assert list(scored["tags"]) == ["gift|sale", "", ""] and list(scored["category"]) == ["3", "", "home"]
    scored, dead = assembler.assemble(chunk_of(module_name=["search"] * 3, tags=tags[:3]))
    assert not dead and list(scored["tags"]) == ["gift|sale", "vintage", "gift|sale"]


def test_numbers_in_a_string_feature_are_text_as_extraction_wrote_them():
    assembler = FeatureAssembler(synthetic_feature_spec(), "user_id", "listing_id")
    scored, dead = assembler.assemble(chunk_of(module_name=["search"] * 3, category=[3.0, math.nan, 2.5]))
    assert not dead and list(scored["category"]) == ["3", "", "2.5"]  # a Parquet integer column with nulls
