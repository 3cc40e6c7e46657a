"""The marketplace simulator: data contract, determinism, funnel, history and module differences."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.data.simulator import SimulationSummary, SimulatorConfig, simulate
from components.data.simulator_candidates import first_unique
from components.data.simulator_world import CATEGORIES, TAGS

MODULES = ("home_feed", "item_page", "search", "cart", "email_digest", "shop_page")
LABELS = ("clicked", "favorited", "added_to_cart", "purchased")
PROBABILITIES = ("p_click", "p_favorite", "p_add_to_cart", "p_purchase")
POSITION_FREE = tuple(f"{column}_position_free" for column in PROBABILITIES)
EXPECTED_IMPRESSION_TYPES = {
    "request_id": pa.string(),
    "timestamp": pa.int64(),
    "user_id": pa.string(),
    "listing_id": pa.string(),
    "module_name": pa.string(),
    "position": pa.int32(),
    "clicked": pa.int8(),
    "favorited": pa.int8(),
    "added_to_cart": pa.int8(),
    "purchased": pa.int8(),
    "user_country": pa.string(),
    "device": pa.string(),
    "category": pa.string(),
    "subcategory": pa.string(),
    "shop_id": pa.string(),
    "price": pa.float64(),
    "listing_age_days": pa.float64(),
    "rating": pa.float64(),
    "num_reviews": pa.int64(),
    "tags": pa.list_(pa.string()),
    "query_category": pa.string(),
    "anchor_listing_id": pa.string(),
    "anchor_category": pa.string(),
}
EXPECTED_ORACLE_TYPES = {
    "request_id": pa.string(),
    "listing_id": pa.string(),
    **dict.fromkeys(PROBABILITIES, pa.float64()),
    **dict.fromkeys(POSITION_FREE, pa.float64()),
}
SMALL = SimulatorConfig(n_impressions=60_000, seed=1, rows_per_part=14_000)


def run(config: SimulatorConfig, folder: Path) -> tuple[pd.DataFrame, pd.DataFrame, SimulationSummary]:
    summary = simulate(config, folder)
    return pd.read_parquet(folder / "impressions"), pd.read_parquet(folder / "oracle"), summary


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> tuple[pd.DataFrame, pd.DataFrame, SimulationSummary, Path]:
    folder = tmp_path_factory.mktemp("simulated")
    return (*run(SMALL, folder), folder)


@pytest.fixture(scope="module")
def logs(simulated) -> pd.DataFrame:
    return simulated[0]


@pytest.fixture(scope="module")
def oracle(simulated) -> pd.DataFrame:
    impressions, oracle, _, _ = simulated
    return oracle.assign(module_name=impressions["module_name"].to_numpy())


def test_columns_and_types_are_the_data_contract(simulated):
    _, _, summary, folder = simulated
    for part in sorted((folder / "impressions").glob("part-*.parquet")):
        schema = pq.read_schema(part)
        assert dict(zip(schema.names, schema.types, strict=True)) == EXPECTED_IMPRESSION_TYPES
    for part in sorted((folder / "oracle").glob("part-*.parquet")):
        schema = pq.read_schema(part)
        assert dict(zip(schema.names, schema.types, strict=True)) == EXPECTED_ORACLE_TYPES
    assert summary.parts == 5  # 60,000 rows in parts of 14,000


def test_exact_row_count_and_summary_file(simulated, logs):
    _, _, summary, folder = simulated
    assert len(logs) == SMALL.n_impressions == summary.rows
    assert summary.requests == logs["request_id"].nunique()
    saved = json.loads((folder / "summary.json").read_text())
    assert saved["rows"] == summary.rows
    for module, stats in saved["per_module"].items():
        rows = logs[logs["module_name"] == module]
        assert stats["rows"] == len(rows)
        assert stats["rates"]["purchase"] == pytest.approx(rows["purchased"].mean())
    assert set(saved["per_module"]) == set(MODULES)


def test_same_seed_gives_identical_frames_and_another_seed_differs(tmp_path):
    config = SimulatorConfig(n_impressions=4_000, seed=5)
    first, first_oracle, _ = run(config, tmp_path / "a")
    again, again_oracle, _ = run(config, tmp_path / "b")
    pd.testing.assert_frame_equal(first, again)
    pd.testing.assert_frame_equal(first_oracle, again_oracle)
    other, _, _ = run(SimulatorConfig(n_impressions=4_000, seed=6), tmp_path / "c")
    assert not first["listing_id"].equals(other["listing_id"])


def test_chunked_output_equals_one_shot_output(tmp_path):
    config = SimulatorConfig(n_impressions=5_000, seed=2, rows_per_part=10**6)
    one_shot, one_shot_oracle, summary = run(config, tmp_path / "one")
    chunked, chunked_oracle, chunked_summary = run(
        SimulatorConfig(**{**vars(config), "rows_per_part": 900}), tmp_path / "parts"
    )
    assert (summary.parts, chunked_summary.parts) == (1, 6)
    pd.testing.assert_frame_equal(one_shot, chunked)
    pd.testing.assert_frame_equal(one_shot_oracle, chunked_oracle)


def test_rerun_replaces_old_parts(tmp_path):
    simulate(SimulatorConfig(n_impressions=3_000, rows_per_part=500), tmp_path)
    simulate(SimulatorConfig(n_impressions=1_000, rows_per_part=500), tmp_path)
    assert len(pd.read_parquet(tmp_path / "impressions")) == 1_000
    assert len(list((tmp_path / "oracle").glob("part-*.parquet"))) == 2


def test_funnel_never_skips_a_stage(logs, oracle):
    assert not (logs["favorited"] > logs["clicked"]).any()
    assert not (logs["added_to_cart"] > logs["clicked"]).any()
    assert not (logs["purchased"] > logs["added_to_cart"]).any()
    assert oracle[list(PROBABILITIES)].ge(0).all().all() and oracle["p_click"].le(1).all()
    assert (oracle["p_favorite"] <= oracle["p_click"]).all()
    assert (oracle["p_add_to_cart"] <= oracle["p_click"]).all()
    assert (oracle["p_purchase"] <= oracle["p_add_to_cart"]).all()


def test_base_rates_click_over_favorite_over_purchase_in_every_module(logs, oracle):
    expected = oracle.groupby("module_name")[list(PROBABILITIES)].mean()
    assert set(expected.index) == set(MODULES)
    assert (expected["p_click"] > expected["p_favorite"]).all()
    assert (expected["p_favorite"] > expected["p_purchase"]).all()
    assert (expected["p_click"] > 3 * expected["p_purchase"]).all()
    observed = logs[list(LABELS)].mean()
    assert observed["clicked"] > observed["favorited"] > observed["purchased"] > 0


def test_each_module_has_its_own_funnel(oracle):
    means = oracle.groupby("module_name")[list(PROBABILITIES)].mean()
    purchase_per_click = means["p_purchase"] / means["p_click"]
    assert means["p_click"].idxmin() == "email_digest"
    assert purchase_per_click["email_digest"] > purchase_per_click["home_feed"]
    # Favorites lead add-to-carts on browsing surfaces; on the cart page it is the other way round.
    assert means.loc["home_feed", "p_favorite"] > means.loc["home_feed", "p_add_to_cart"]
    assert means.loc["cart", "p_add_to_cart"] > means.loc["cart", "p_favorite"]


def test_price_effect_differs_by_module(logs, oracle):
    log_price = np.log(logs["price"])
    relative_price = log_price - log_price.groupby(logs["category"]).transform("mean")
    correlation = {
        module: np.corrcoef(relative_price[rows], oracle.loc[rows, "p_click"])[0, 1]
        for module, rows in oracle.groupby("module_name").groups.items()
    }
    assert correlation["home_feed"] > 0.1  # aspirational browsing
    assert correlation["search"] < -0.1 and correlation["cart"] < -0.1  # price-sensitive surfaces


def test_a_listing_appears_at_most_once_per_request(logs):
    assert not logs.duplicated(["request_id", "listing_id"]).any()
    assert not (logs["anchor_listing_id"] == logs["listing_id"]).any()


def test_requests_are_consistent_slates(logs):
    by_request = logs.groupby("request_id", sort=False)
    assert (by_request["timestamp"].nunique() == 1).all()
    assert (by_request["module_name"].nunique() == 1).all()
    assert (by_request["user_id"].nunique() == 1).all()
    positions = by_request["position"].agg(["min", "max", "count"])
    assert (positions["min"] == 0).all() and (positions["max"] == positions["count"] - 1).all()
    assert logs["timestamp"].is_monotonic_increasing
    span_days = (logs["timestamp"].max() - logs["timestamp"].min()) / 86_400
    assert SMALL.days - 2 < span_days <= SMALL.days


def test_request_context_columns_belong_to_their_module(logs):
    search = logs["module_name"] == "search"
    item_page = logs["module_name"] == "item_page"
    assert (logs.loc[search, "query_category"].isin(CATEGORIES)).all()
    assert (logs.loc[~search, "query_category"] == "").all()
    assert (logs.loc[item_page, "anchor_listing_id"] != "").all()
    assert (logs.loc[item_page, "anchor_category"].isin(CATEGORIES)).all()
    assert (logs.loc[~item_page, ["anchor_listing_id", "anchor_category"]] == "").all().all()
    # Search results mostly match the query; item-page candidates mostly share the anchor's category.
    assert (logs.loc[search, "category"] == logs.loc[search, "query_category"]).mean() > 0.6
    assert (logs.loc[item_page, "category"] == logs.loc[item_page, "anchor_category"]).mean() > 0.6


def test_listing_attributes_are_valid(logs):
    assert logs["category"].nunique() >= 20
    assert logs["subcategory"].str.split("/").str[0].eq(logs["category"]).all()
    assert (logs["price"] > 0).all()
    assert (logs["listing_age_days"] > 0).all()
    no_reviews = logs["num_reviews"] == 0
    assert logs.loc[no_reviews, "rating"].isna().all()
    assert logs.loc[~no_reviews, "rating"].between(1, 5).all()
    assert 0 < no_reviews.mean() < 0.6
    assert logs["tags"].map(len).between(0, 4).all()
    assert set(np.concatenate(logs["tags"].to_numpy())) <= set(TAGS)
    assert set(logs["device"]) == {"ios", "android", "web"}
    assert logs["user_country"].str.fullmatch(r"[A-Z]{2}").all()
    # Listing attributes are static: one price per listing.
    assert (logs.groupby("listing_id")["price"].nunique() == 1).all()


def test_oracle_rows_match_impressions(simulated):
    _, _, _, folder = simulated
    impression_parts = sorted((folder / "impressions").glob("part-*.parquet"))
    oracle_parts = sorted((folder / "oracle").glob("part-*.parquet"))
    assert [p.name for p in impression_parts] == [p.name for p in oracle_parts]
    for impression_part, oracle_part in zip(impression_parts, oracle_parts, strict=True):
        keys = pq.read_table(impression_part, columns=["request_id", "listing_id"])
        assert keys.equals(pq.read_table(oracle_part, columns=["request_id", "listing_id"]))


def test_the_position_free_oracle_is_the_oracle_without_examination(oracle, logs):
    decay = logs["module_name"].map({name: module.position_decay for name, module in SMALL.active_modules().items()})
    examination = (1.0 + logs["position"]) ** -decay
    for logged, position_free in zip(PROBABILITIES, POSITION_FREE, strict=True):
        np.testing.assert_allclose(oracle[logged], examination * oracle[position_free], rtol=1e-12, atol=0)
    # Without the position effect the best listing of a request is often another one than with it.
    best = oracle.groupby(logs["request_id"])[["p_click", "p_click_position_free"]].idxmax()
    assert (best["p_click"] != best["p_click_position_free"]).mean() > 0.2


def test_rankings_vary_within_requests(oracle, logs):
    per_request = oracle.groupby(logs["request_id"])["p_click"].agg(["std", "mean"])
    assert (per_request["std"] / per_request["mean"]).median() > 0.5
    # Clicks concentrate at the top: position bias plus a logging policy that was better than random.
    top = logs["position"] < 3
    assert logs.loc[top, "clicked"].mean() > 1.5 * logs.loc[~top, "clicked"].mean()


def earlier_engagement_lift(logs: pd.DataFrame, clicks: pd.Series) -> float:
    """Mean of ``clicks`` on categories the user favorited, carted or bought in an earlier request, over the rest."""
    engaged = logs[["favorited", "added_to_cart", "purchased"]].sum(axis=1) > 0
    per_request = engaged.groupby([logs["user_id"], logs["category"], logs["timestamp"]]).sum()
    earlier = per_request.groupby(level=[0, 1]).cumsum() - per_request
    had_engaged = logs.join(earlier.rename("earlier"), on=["user_id", "category", "timestamp"])["earlier"] > 0
    rates = clicks.groupby(had_engaged.to_numpy()).mean()
    return rates[True] / rates[False]


def later_exposure_to_clicked_categories(logs: pd.DataFrame) -> float:
    """Share of second-half home-feed impressions in categories the user clicked in the first half."""
    home = logs[logs["module_name"] == "home_feed"]
    first_half = home["timestamp"] < home["timestamp"].median()
    clicked = home[first_half & (home["clicked"] == 1)][["user_id", "category"]].drop_duplicates()
    later = home[~first_half & home["user_id"].isin(clicked["user_id"])]
    matches = later.merge(clicked.assign(clicked_before=True), on=["user_id", "category"], how="left")
    return matches["clicked_before"].notna().mean()


@pytest.fixture(scope="module")
def without_history(tmp_path_factory) -> tuple[pd.DataFrame, pd.DataFrame]:
    folder = tmp_path_factory.mktemp("no_history")
    logs, oracle, _ = run(dataclasses.replace(SMALL, history_strength=0.0), folder)
    return logs, oracle


def test_history_raises_later_engagement(logs, oracle, without_history):
    assert earlier_engagement_lift(logs, logs["clicked"]) > 1.2  # observable in the labels
    # The true click probability rises with history beyond what taste alone explains.
    lift = earlier_engagement_lift(logs, oracle["p_click"])
    assert lift > earlier_engagement_lift(without_history[0], without_history[1]["p_click"]) + 0.2


def test_history_shifts_later_exposure(logs, without_history):
    with_history = later_exposure_to_clicked_categories(logs)
    assert with_history > later_exposure_to_clicked_categories(without_history[0]) + 0.03


def test_module_mix_and_slate_sizes_are_configurable(tmp_path):
    config = SimulatorConfig(n_impressions=3_000, seed=3).with_module_mix({"search": 1, "cart": 1})
    logs, _, summary = run(config.with_candidates({"search": 40}), tmp_path)
    assert set(logs["module_name"]) == {"search", "cart"}
    slate_sizes = logs.groupby("request_id")["position"].count()
    assert slate_sizes.max() == 40
    assert set(summary.per_module) == {"search", "cart"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"n_impressions": 0}, "n_impressions"),
        ({"module_mix": "search=1,nowhere=2"}, "nowhere"),
        ({"module_mix": "search"}, "NAME=VALUE"),
        ({"candidates": "search=many"}, "many"),
        ({"n_listings": 10}, "n_listings"),
        ({"seed": -1}, r"seed must be >= 0"),
    ],
)
def test_bad_configuration_names_the_problem(options, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        simulate(SimulatorConfig.from_options(**options), tmp_path)


def test_first_unique_keeps_draw_order_and_flags_shortfalls():
    chosen, found = first_unique(np.array([[4, 4, 2, 9, 2], [1, 1, 1, -1, 1]]), 3)
    assert chosen[0].tolist() == [4, 2, 9] and found[0].all()
    assert chosen[1, 0] == 1 and found[1].tolist() == [True, False, False]


def test_cli_writes_files_and_prints_rates(tmp_path, capsys):
    from pipelines.cli import main

    assert main(["simulate", "--out", str(tmp_path), "--n-impressions", "2000", "--seed", "4"]) == 0
    printed = capsys.readouterr().out
    assert str(tmp_path / "impressions") in printed and str(tmp_path / "oracle") in printed
    assert "| search |" in printed and "purchase %" in printed
    assert len(pd.read_parquet(tmp_path / "impressions")) == 2000


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--n-impressions", "0"], "ranker simulate: SimulatorConfig.n_impressions must be positive, got 0"),
        (["--seed", "-1"], "ranker simulate: SimulatorConfig.seed must be >= 0 (NumPy seeds are non-negative), got -1"),
    ],
)
def test_the_cli_refuses_a_bad_number_in_one_line_before_writing(flags, message, tmp_path):
    from pipelines.cli import main

    with pytest.raises(SystemExit) as refused:
        main(["simulate", "--out", str(tmp_path / "out"), *flags])
    assert str(refused.value.code) == message
    assert not (tmp_path / "out").exists()


def test_the_cli_refuses_an_out_folder_it_cannot_make_or_write_in_one_line(tmp_path, monkeypatch, capsys):
    from pipelines.cli import main

    blocker = tmp_path / "a_file"  # tests may run as root, whom permission bits do not stop: a file in the way
    blocker.write_text("")
    for out in (blocker, blocker / "sim"):
        assert main(["simulate", "--out", str(out), "--n-impressions", "2000"]) == 2
        assert capsys.readouterr().err == f"ranker simulate: --out {out}: {blocker} is a file, not a folder\n"

    def refused(_table, where, *_args, **_kwargs):
        raise PermissionError(13, "Permission denied", str(where))

    monkeypatch.setattr(pq, "write_table", refused)  # e.g. parts left by another user
    out = tmp_path / "sim"
    assert main(["simulate", "--out", str(out), "--n-impressions", "2000"]) == 2
    assert capsys.readouterr().err == (
        f"ranker simulate: --out {out}: cannot write {out / 'impressions' / 'part-00000.parquet'}: Permission denied\n"
    )


@pytest.mark.slow
def test_component_runs_under_kfp_local(kfp_local_root):

    from components.data.simulator_component import simulate_marketplace

    task = simulate_marketplace(n_impressions=2_000, seed=3, module_mix="search=1,home_feed=1")
    impressions = pd.read_parquet(task.outputs["impressions"].path)
    oracle = pd.read_parquet(task.outputs["oracle"].path)
    assert len(impressions) == len(oracle) == 2_000
    assert set(impressions["module_name"]) == {"search", "home_feed"}
    assert task.outputs["impressions"].metadata["rows"] == 2_000


def test_a_new_surface_draws_its_slates_like_a_named_generator(tmp_path):
    from components.data.simulator_config import DEFAULT_MODULES

    push = dataclasses.replace(DEFAULT_MODULES["email_digest"], generator="email_digest", share=0.5, candidates=3)
    browse = dataclasses.replace(DEFAULT_MODULES["search"], generator="search", share=0.5)
    config = SimulatorConfig(n_impressions=3_000, seed=1, modules={"push": push, "category_browse": browse})
    simulate(config, tmp_path)
    logs = pd.read_parquet(tmp_path / "impressions")
    assert set(logs["module_name"]) == {"push", "category_browse"}
    assert logs.groupby("request_id")["listing_id"].nunique().max() == browse.candidates
    assert (logs.loc[logs["module_name"] == "push"].groupby("request_id").size() == 3).all()
    assert logs.loc[logs["module_name"] == "category_browse", "query_category"].ne("").all()


def test_a_surface_without_a_generator_is_refused_naming_it(tmp_path):
    from components.data.simulator_config import DEFAULT_MODULES

    modules = {"push": DEFAULT_MODULES["email_digest"]}
    refused = r"no candidate generator for modules \['push'\]: set ModuleBehavior.generator"
    with pytest.raises(ValueError, match=refused):
        simulate(SimulatorConfig(n_impressions=500, modules=modules), tmp_path)
