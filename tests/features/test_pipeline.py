"""End-to-end extraction with the local Beam runner: contract, splits, point-in-time, dead letters, public data."""

import gzip
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from components.data.spec import SPECS_DIR
from components.features.options import BeamOptions
from components.features.pipeline import ExtractionConfig, ExtractionError, FrameSpill, extract_features
from ranker_core.schema import FEATURE_SPEC_FILE, HELDOUT_SPLIT, SPLITS, FeatureSpec, label_key
from tests.data.impressions import (
    SEQUENCES,
    impressions_frame,
    simulator_spec_with,
    write_csv,
    write_jsonl,
    write_parquet,
)
from trainer.examples import read_split

pytestmark = pytest.mark.slow

LOCAL = BeamOptions(runner="DirectRunner", direct_num_workers=1, direct_running_mode="in_memory")


def run(data, out, spec="simulator", **options) -> tuple:
    config = ExtractionConfig(str(data), spec, str(out), num_shards=3, beam=LOCAL, **options)
    summary = extract_features(config)
    return summary, FeatureSpec.load(out)


def read_all(out, spec: FeatureSpec) -> pd.DataFrame:
    frames = [pd.DataFrame(read_split(out, split, spec)).assign(split=split) for split in spec.splits]
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    return impressions_frame(n_requests=80, candidates=5, seed=1)


@pytest.fixture(scope="module")
def extracted(raw, tmp_path_factory):
    root = tmp_path_factory.mktemp("extracted")
    summary, spec = run(write_parquet(raw, root / "raw", parts=3), root / "examples", held_out_module="email_digest")
    return summary, spec, read_all(root / "examples", spec)


def test_every_row_is_accounted_for(extracted, raw):
    summary, spec, rows = extracted
    assert summary.rows_read == len(raw) == summary.rows_written == len(rows)
    assert summary.dead_letters == 0 and spec.source["rows_read"] == len(raw)
    assert {split: stats.rows for split, stats in spec.splits.items()} == rows["split"].value_counts().to_dict()
    for split, stats in spec.splits.items():
        part = rows[rows["split"] == split]
        assert stats.requests == part["request_id"].nunique()
        assert stats.positives["purchase"] == part[label_key("purchase")].sum()


def test_the_output_holds_what_extraction_promises_and_no_spilled_shard(extracted):
    summary, _, _ = extracted
    written = sorted(path.name for path in Path(summary.output_dir).iterdir())
    assert written == ["dead_letter", "entities", "eval", "feature_spec.json", "heldout", "test", "train"]


def test_the_feature_spec_describes_the_contract(extracted):
    _, spec, rows = extracted
    assert spec.task_names == ("click", "favorite", "add_to_cart", "purchase") and spec.has_groups
    assert spec.roles["item_id"] == "listing_id" and spec.dataset == "marketplace-simulator"
    assert spec.feature("category").vocabulary[0] in {"art", "toys", "jewelry", "home"}
    assert spec.feature("listing_id").hash_buckets == 100_000
    assert len(spec.feature("price").quantiles) > 5 and spec.feature("price").transform == "log1p"
    assert spec.feature("hist_user_category_click_rate").kind == "numeric"
    assert "position" not in spec.feature_names and "module_name" not in spec.feature_names
    assert set(spec.feature_names) <= set(rows.columns)


def test_splits_follow_time_and_never_split_a_request(extracted):
    _, spec, rows = extracted
    assert rows.groupby("request_id")["split"].nunique().max() == 1
    times = rows[rows["split"] != HELDOUT_SPLIT].groupby("split")["timestamp"].agg(["min", "max"])
    assert times.loc["train", "max"] < times.loc["eval", "min"] <= times.loc["eval", "max"] < times.loc["test", "min"]
    boundaries = spec.source["split_boundaries"]
    assert times.loc["train", "max"] < boundaries["eval_start"] <= times.loc["eval", "min"]
    assert times.loc["eval", "max"] < boundaries["test_start"] <= times.loc["test", "min"]


def test_the_held_out_module_is_only_in_its_own_split(extracted):
    _, spec, rows = extracted
    assert spec.held_out_module == "email_digest" and "email_digest" not in spec.modules
    assert set(rows.loc[rows["split"] == HELDOUT_SPLIT, "module_name"]) == {"email_digest"}
    assert "email_digest" not in set(rows.loc[rows["split"].isin(SPLITS), "module_name"])


def test_features_never_see_the_future(raw, tmp_path):
    cutoff = raw["timestamp"].quantile(0.5)
    later = raw["timestamp"] >= cutoff
    perturbed = raw.copy()
    for column in ("clicked", "favorited", "added_to_cart", "purchased"):
        perturbed.loc[later, column] = 1 - perturbed.loc[later, column]
    perturbed.loc[later, ["favorited", "added_to_cart", "purchased"]] = 0  # keep the funnel plausible
    with_sequences = simulator_spec_with(tmp_path, sequences=SEQUENCES)
    _, spec = run(write_parquet(raw, tmp_path / "a"), tmp_path / "ea", spec=with_sequences)
    _, spec_b = run(write_parquet(perturbed, tmp_path / "b"), tmp_path / "eb", spec=with_sequences)
    history = [name for name in spec.feature_names if name.startswith("hist_")]
    assert spec.feature("hist_user_recent_click_listing_id").kind == "list"
    assert {"hist_user_recent_click_listing_id", "hist_user_recent_favorite_category"} <= set(history)
    key = ["request_id", "position"]
    a = read_all(tmp_path / "ea", spec).set_index(key).sort_index()
    b = read_all(tmp_path / "eb", spec_b).set_index(key).sort_index()
    visible = a["timestamp"] <= cutoff  # rows AT the cutoff must not see the cutoff's own labels either
    pd.testing.assert_frame_equal(a.loc[visible, history], b.loc[visible, history])
    pd.testing.assert_frame_equal(a.loc[visible, MATCHES], b.loc[visible, MATCHES])
    pairs = zip(a["hist_user_recent_click_listing_id"].astype(str), a["listing_id"].astype(str), strict=True)
    hits = [sequence.split("|").count(listing) if sequence else 0 for sequence, listing in pairs]
    assert a["match_recent_click_listing_id"].tolist() == hits and sum(hits) > 0
    assert not a.loc[~visible, history].equals(b.loc[~visible, history])


def test_malformed_rows_go_to_dead_letters_with_file_row_and_reason(raw, tmp_path):
    path = write_jsonl(raw.head(200), tmp_path / "logs.jsonl")
    lines = path.read_text().splitlines()
    record = json.loads(lines[9])
    lines[4] = lines[4][:30]  # truncated JSON
    lines[9] = json.dumps({**record, "position": -3})
    lines[19] = json.dumps({**record, "clicked": 2})
    lines[29] = json.dumps({key: value for key, value in record.items() if key != "user_id"})
    path.write_text("\n".join(lines) + "\n")
    spec_file = simulator_spec_as(tmp_path, "jsonl")
    summary, spec = run(path, tmp_path / "examples", spec=spec_file, dead_letter_threshold=0.05)
    assert (summary.rows_read, summary.rows_written, summary.dead_letters) == (200, 196, 4)
    assert spec.source["dead_letter_reasons"] == {"malformed JSON": 1, "position": 1, "clicked": 1, "user_id": 1}
    letters = dead_letters_of(tmp_path / "examples")
    assert sorted(letter["row"] for letter in letters) == [5, 10, 20, 30]
    assert {letter["file"] for letter in letters} == {str(path)}
    assert any(letter["reason"].startswith("position: -3 is negative") for letter in letters)

    with pytest.raises(ExtractionError, match=r"2.00% of 200 rows are malformed, more than the threshold"):
        run(path, tmp_path / "examples", spec=spec_file, dead_letter_threshold=0.01)
    assert not (tmp_path / "examples" / FEATURE_SPEC_FILE).exists()


def test_a_held_out_module_that_matches_no_row_fails_and_lists_the_modules(raw, tmp_path):
    data = write_parquet(raw.head(100), tmp_path / "raw", parts=1)
    with pytest.raises(ExtractionError, match=r"held-out module 'email' matches no row; modules in the data: .*search"):
        run(data, tmp_path / "examples", held_out_module="email")
    assert not (tmp_path / "examples" / FEATURE_SPEC_FILE).exists()


def test_holding_out_the_only_module_fails_naming_it(raw, tmp_path):
    data = write_parquet(raw.head(100).assign(module_name="search"), tmp_path / "raw", parts=1)
    message = "every row is in the held-out module 'search', the only module in the data; hold out none"
    with pytest.raises(ExtractionError, match=message):
        run(data, tmp_path / "examples", held_out_module="search")
    assert not (tmp_path / "examples" / FEATURE_SPEC_FILE).exists()


def test_a_task_without_a_positive_anywhere_fails_the_extraction_naming_it(raw, tmp_path):
    data = write_parquet(raw.head(100).assign(purchased=0), tmp_path / "raw", parts=1)
    with pytest.raises(ExtractionError, match=r"task\(s\) 'purchase' have no positive in any of the 100 rows written"):
        run(data, tmp_path / "examples")
    assert not (tmp_path / "examples" / FEATURE_SPEC_FILE).exists()


MATCHES = ["match_recent_click_listing_id", "match_recent_favorite_category"]


def test_the_snapshot_keeps_each_users_sequences_as_of_the_cutoff(raw, tmp_path):
    _, spec = run(
        write_parquet(raw, tmp_path / "raw"),
        tmp_path / "examples",
        spec=simulator_spec_with(tmp_path, sequences=SEQUENCES),
    )
    users = pd.read_parquet(tmp_path / "examples" / "entities" / "user.parquet").set_index("user_id")
    cutoff = spec.source["split_boundaries"]["test_start"]
    clicked = raw[(raw["timestamp"] < cutoff) & (raw["clicked"] == 1)].sort_values(["timestamp", "listing_id"])
    expected = clicked.groupby("user_id")["listing_id"].agg(lambda ids: "|".join(ids.iloc[::-1][:3]))
    found = users["hist_user_recent_click_listing_id"]
    assert found[expected.index].tolist() == expected.tolist() and len(expected) > 5
    assert (found.drop(expected.index) == "").all()  # users with no click before the cutoff: an empty list


def simulator_spec_as(folder, file_format: str, **source: str) -> str:
    """The simulator's spec, reading another file format (and other ``source`` settings)."""
    spec = yaml.safe_load((SPECS_DIR / "simulator.yaml").read_text())
    spec["source"] = {"format": file_format, "pattern": f"*.{file_format}", **source}
    path = folder / ("_".join([file_format, *source.values()]) + ".yaml")
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def dead_letters_of(out) -> list[dict]:
    return [
        json.loads(line) for file in (out / "dead_letter").glob("*.jsonl") for line in file.read_text().splitlines()
    ]


def test_ali_ccp_sample_extracts_by_files_without_groups(shared_datasets, tmp_path):
    summary, spec = run(shared_datasets / "ali_ccp", tmp_path, spec="ali_ccp")
    assert {split: stats.rows for split, stats in spec.splits.items()} == {"train": 100, "eval": 50, "test": 50}
    assert not spec.has_groups and spec.task_names == ("click", "purchase") and summary.dead_letters == 0
    train = pd.read_csv(shared_datasets / "ali_ccp" / "ali_ccp_train_sample.csv")
    assert spec.splits["train"].positives == {"click": train["click"].sum(), "purchase": train["purchase"].sum()}
    assert spec.modules == sorted(train["301"].astype(str).unique())
    rows = read_split(tmp_path, "test", spec)
    assert len(set(rows["request_id"])) == 50  # every row is its own group


def ali_ccp_spec_with(folder, columns: dict, **changes) -> str:
    """The shipped Ali-CCP spec with other role columns (and other top-level keys; ``None`` drops one)."""
    spec = yaml.safe_load((SPECS_DIR / "ali_ccp.yaml").read_text()) | {"columns": columns} | changes
    path = folder / "ali_ccp_variant.yaml"
    path.write_text(yaml.safe_dump({key: value for key, value in spec.items() if value is not None}))
    return str(path)


def test_a_split_without_a_file_pattern_is_carved_from_the_train_files(shared_datasets, tmp_path, caplog):
    # UCI-style data: train and test files only; eval is a hashed share of the train files' requests
    split = {"by": "files", "files": {"train": "*train*", "test": "*test*"}, "eval_fraction": 0.3}
    spec_path = ali_ccp_spec_with(tmp_path, {"module": "301"}, split=split)  # every row its own request
    data = tmp_path / "data"
    data.mkdir()
    for name in ("ali_ccp_train_sample.csv", "ali_ccp_test_sample.csv"):  # no val file
        (data / name).write_bytes((shared_datasets / "ali_ccp" / name).read_bytes())
    summary, spec = run(data, tmp_path / "out", spec=spec_path)
    rows = {name: spec.splits[name].rows for name in SPLITS}
    assert rows["test"] == 50 and rows["train"] + rows["eval"] == summary.rows_written - 50
    assert 0.15 < rows["eval"] / (rows["train"] + rows["eval"]) < 0.45  # about eval_fraction of the train file
    again = run(data, tmp_path / "again", spec=spec_path)[1]
    assert {name: again.splits[name].rows for name in SPLITS} == rows  # the share is a hash: the same each run
    # conversions are rare: this sample's train split has none (its test split has some), a warning, not a failure
    assert not spec.splits["train"].positives.get("purchase") and spec.splits["test"].positives["purchase"]
    assert "task 'purchase' has no positive in the train split" in caplog.text


def test_ali_ccp_sample_extracts_without_id_columns_and_splits_by_hash(shared_datasets, tmp_path):
    spec_path = ali_ccp_spec_with(tmp_path, {"module": "301"}, split=None)  # a plain table: no ids, no time
    summary, spec = run(shared_datasets / "ali_ccp", tmp_path / "out", spec=spec_path)
    assert summary.rows_written == 200 and summary.dead_letters == 0
    assert spec.roles == {"module": "301"} and not spec.has_groups and spec.source["split_by"] == "hash"
    assert all(spec.splits[split].rows > 0 for split in SPLITS)
    assert {"101", "205"} <= set(spec.feature_names)  # the id fields are still features


def test_one_column_can_be_the_request_and_the_user(shared_datasets, tmp_path):
    features = yaml.safe_load((SPECS_DIR / "ali_ccp.yaml").read_text())["features"]
    features["hashed"].pop("101")  # the request id cannot also be a feature; the item id "205" stays one
    columns = {"request_id": "101", "user_id": "101", "item_id": "205", "module": "301"}
    summary, spec = run(
        shared_datasets / "ali_ccp", tmp_path / "out", spec=ali_ccp_spec_with(tmp_path, columns, features=features)
    )
    assert spec.has_groups and spec.roles["user_id"] == spec.roles["request_id"] == "101"
    assert summary.dead_letters == summary.duplicates  # the sample repeats a few rows of one user
    rows = read_split(tmp_path / "out", "train", spec)
    train = pd.read_csv(shared_datasets / "ali_ccp" / "ali_ccp_train_sample.csv")
    assert sorted(set(rows["request_id"])) == sorted(train["101"].astype(str).unique())
    assert "205" in spec.feature_names


def test_kuairand_sample_derives_long_view_and_splits_by_hash(shared_datasets, tmp_path):
    summary, spec = run(shared_datasets / "kuairand", tmp_path, spec="kuairand")
    raw = pd.read_csv(shared_datasets / "kuairand" / "kuairand_sample.csv")
    assert summary.rows_written == len(raw) and spec.task_names == ("click", "long_view")
    long_views = (raw["play_time_ms"] >= 0.5 * raw["duration_ms"]).sum()
    assert sum(stats.positives["long_view"] for stats in spec.splits.values()) == long_views
    assert all(spec.splits[split].rows > 0 for split in SPLITS)
    assert "play_time_ms" not in spec.feature_names


def test_csv_input_gives_the_same_examples_as_parquet(raw, tmp_path):
    small = raw.head(60)
    _, spec = run(write_parquet(small, tmp_path / "pq", parts=1), tmp_path / "a")
    (tmp_path / "csv").mkdir()
    write_csv(small, tmp_path / "csv" / "rows.csv")
    _, spec_csv = run(tmp_path / "csv", tmp_path / "b", spec=simulator_spec_as(tmp_path, "csv"))
    a = read_all(tmp_path / "a", spec).sort_values(["request_id", "position"], ignore_index=True)
    b = read_all(tmp_path / "b", spec_csv).sort_values(["request_id", "position"], ignore_index=True)
    pd.testing.assert_frame_equal(a, b)
    assert np.isclose(spec.feature("price").mean, spec_csv.feature("price").mean)


def test_the_same_rows_in_another_order_give_byte_identical_example_files(raw, tmp_path):
    # Beam hands a shard its rows in an order that varies between runs; the files must not.
    _, spec = run(write_parquet(raw, tmp_path / "a_raw", parts=3), tmp_path / "a")
    shuffled = raw.sample(frac=1.0, random_state=3).reset_index(drop=True)
    run(write_parquet(shuffled, tmp_path / "b_raw", parts=2), tmp_path / "b")
    for split in spec.splits:
        files = sorted(path.name for path in (tmp_path / "a" / split).iterdir())
        assert files == sorted(path.name for path in (tmp_path / "b" / split).iterdir())
        for name in files:
            a, b = (gzip.decompress((tmp_path / side / split / name).read_bytes()) for side in "ab")
            assert a == b, f"{split}/{name} differs"


def test_frames_spilled_between_shuffles_give_the_examples_of_frames_shuffled_as_they_are(raw, tmp_path, monkeypatch):
    data = write_parquet(raw, tmp_path / "raw", parts=3)
    handles, put = [], FrameSpill.put

    def recorded_put(spill: FrameSpill, frame: pd.DataFrame) -> pd.DataFrame | str:
        handles.append(put(spill, frame))
        return handles[-1]

    monkeypatch.setattr(FrameSpill, "put", recorded_put)
    run(data, tmp_path / "spilled", held_out_module="email_digest")
    assert handles and all(isinstance(handle, str) for handle in handles)  # every shuffled frame went to a file
    assert not any(Path(handle).exists() for handle in handles)  # and were removed when the run ended
    monkeypatch.setattr(FrameSpill, "put", lambda self, frame: frame)
    run(data, tmp_path / "kept", held_out_module="email_digest")
    for split in ("train", "eval", "test", "heldout"):
        for path in sorted((tmp_path / "kept" / split).iterdir()):
            spilled = tmp_path / "spilled" / split / path.name
            assert gzip.decompress(path.read_bytes()) == gzip.decompress(spilled.read_bytes()), f"{split}/{path.name}"


def test_bad_bytes_impossible_times_and_duplicates_are_dead_letters_the_rest_is_read(raw, tmp_path, caplog):
    rows = raw.head(100).astype({"timestamp": float})
    rows.loc[20, "timestamp"], rows.loc[30, "timestamp"] = -5, 1e20
    rows.loc[10, "device"] = "caf\u00e9"
    (tmp_path / "csv").mkdir()
    first = write_csv(rows.iloc[:60], tmp_path / "csv" / "a.csv")
    first.write_bytes(first.read_bytes().replace("caf\u00e9".encode(), b"caf\xe9"))  # not UTF-8 on line 12
    write_csv(pd.concat([rows.iloc[60:], rows.iloc[[3, 4]]]), tmp_path / "csv" / "b.csv")  # a.csv lines 5, 6 again
    out = tmp_path / "examples"
    with caplog.at_level(logging.INFO):
        summary, spec = run(tmp_path / "csv", out, spec=simulator_spec_as(tmp_path, "csv"), dead_letter_threshold=0.1)
    assert (summary.rows_read, summary.rows_written, summary.dead_letters, summary.duplicates) == (102, 97, 5, 2)
    assert spec.source["dead_letter_reasons"] == {"device": 1, "timestamp": 2, "duplicate": 2}
    assert spec.source["duplicates"] == 2 and "duplicates                2  (dropped)" in summary.format()
    letters = {(letter["file"].rsplit("/", 1)[-1], letter["row"]): letter["reason"] for letter in dead_letters_of(out)}
    assert letters[("a.csv", 12)].startswith("device: b'caf\\xe9' is not UTF-8 text")
    assert letters[("a.csv", 22)] == "timestamp: '-5.0' is before 1970-01-01"
    assert letters[("a.csv", 32)].startswith("timestamp: '1e+20' is after 2100-01-01")
    assert letters[("b.csv", 42)] == "duplicate: every column equals row 5 of a.csv, which is kept"
    assert letters[("b.csv", 43)] == "duplicate: every column equals row 6 of a.csv, which is kept"
    examples = read_all(out, spec)
    assert not examples.duplicated(["request_id", "position"]).any()
    assert not [record for record in caplog.records if "prism" in record.getMessage().lower()]

    keep = simulator_spec_as(tmp_path, "csv", duplicates="keep")
    kept, spec = run(tmp_path / "csv", out, spec=keep, dead_letter_threshold=0.1)
    assert (kept.rows_written, kept.dead_letters, kept.duplicates) == (99, 3, 2)
    assert "duplicate" not in spec.source["dead_letter_reasons"] and "(kept)" in kept.format()
    # 5 dead letters (4.9%), of which 3 malformed (2.94%): dropped duplicates do not fail a run
    run(tmp_path / "csv", out, spec=simulator_spec_as(tmp_path, "csv"), dead_letter_threshold=0.03)
    with pytest.raises(ExtractionError, match=r"2.94% of 102 rows .* \(dead letters: device: 1, duplicate: 2, "):
        run(tmp_path / "csv", out, spec=simulator_spec_as(tmp_path, "csv"), dead_letter_threshold=0.02)


def test_a_request_in_two_modules_is_dead_letters_and_a_repeated_item_is_counted(raw, tmp_path, caplog):
    rows = raw.head(100).copy()
    spanning = rows["request_id"] == rows.at[0, "request_id"]
    rows.loc[spanning & (rows["position"] == 4), "module_name"] = (
        "search" if rows.at[0, "module_name"] != "search" else "cart"
    )
    request = rows["request_id"] == rows.at[10, "request_id"]
    rows = pd.concat([rows, rows[request].head(1).assign(position=9)], ignore_index=True)  # its listing again
    with caplog.at_level(logging.WARNING):
        summary, spec = run(
            write_parquet(rows, tmp_path / "raw", parts=2), tmp_path / "examples", dead_letter_threshold=0.1
        )
    assert (summary.rows_read, summary.rows_written, summary.dead_letters) == (101, 96, 5)
    assert spec.source["dead_letter_reasons"] == {"request spans modules": 5}
    repeated = int(rows[~spanning.reindex(rows.index, fill_value=False)].duplicated(["request_id", "listing_id"]).sum())
    assert repeated >= 1 and (spec.source["mixed_module_requests"], spec.source["repeated_items"]) == (1, repeated)
    assert "mixed requests            1" in summary.format() and f"repeated items {repeated:>12,}" in summary.format()
    letters = dead_letters_of(tmp_path / "examples")
    assert all(f"request {rows.at[0, 'request_id']!r} has rows in modules " in letter["reason"] for letter in letters)
    assert rows.at[0, "request_id"] not in set(read_all(tmp_path / "examples", spec)["request_id"].astype(str))
    assert "1 request(s) span two or more modules" in caplog.text
    with pytest.raises(
        ExtractionError, match=r"\(dead letters: request spans modules: 5\); 1 requests span two or more"
    ):
        run(write_parquet(rows, tmp_path / "raw2", parts=1), tmp_path / "examples2", dead_letter_threshold=0.01)
