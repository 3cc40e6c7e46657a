"""Exact duplicate rows: found whatever their order, the first copy by file and row kept, the others named."""

import numpy as np
import pandas as pd

from components.data.readers import RawBatch
from components.data.rows import FILE_INDEX, parse_batch, raw_column_names
from components.data.spec import load_dataset_spec
from components.features.duplicates import find_duplicates, repeated_items, split_module_requests
from tests.data.impressions import impressions_frame

FILES = ["logs/a.csv", "logs/b.csv"]


def parsed(frame: pd.DataFrame, file_index: int) -> pd.DataFrame:
    batch = RawBatch(frame.reset_index(drop=True), np.arange(2, len(frame) + 2, dtype=np.int64))
    return parse_batch(batch, load_dataset_spec("simulator"), file_index, FILES[file_index]).frame


def test_copies_are_found_in_any_order_and_the_first_by_file_and_row_is_kept():
    frame = impressions_frame(n_requests=3, candidates=4)
    frame.loc[:, "rating"] = np.nan  # missing values are equal to each other
    rows = pd.concat([parsed(frame.iloc[[5, 1]], 1), parsed(frame, 0)]).sample(frac=1, random_state=0)
    raw_names = raw_column_names(load_dataset_spec("simulator"))
    found = find_duplicates(rows, drop=True, source_name=FILES.__getitem__, raw_names=raw_names)
    assert found.count == 2 and len(found.rows) == len(frame)
    assert set(found.rows[FILE_INDEX]) == {0}  # both copies from b.csv dropped
    letters = sorted(found.dead_letters, key=lambda letter: letter["row"])
    assert [(letter["file"], letter["row"]) for letter in letters] == [("logs/b.csv", 2), ("logs/b.csv", 3)]
    assert letters[0]["reason"] == "duplicate: every column equals row 7 of a.csv, which is kept"
    assert letters[0]["record"]["request_id"] == frame.at[5, "request_id"] and "_uid" not in letters[0]["record"]
    assert letters[0]["record"]["clicked"] == frame.at[5, "clicked"]  # the data's own name, as other dead letters
    assert "label_click" not in letters[0]["record"]


def test_rows_that_differ_in_one_column_are_not_copies_and_keep_only_counts():
    frame = impressions_frame(n_requests=2, candidates=3)
    changed = frame.iloc[[0]].assign(price=frame.at[0, "price"] + 0.01)
    rows = pd.concat([parsed(frame, 0), parsed(pd.concat([changed, frame.iloc[[1]]]), 1)])
    found = find_duplicates(rows, drop=False, source_name=FILES.__getitem__)
    assert found.count == 1 and found.dead_letters == [] and len(found.rows) == len(rows)


def test_every_row_of_a_request_in_two_modules_is_a_dead_letter_naming_the_request_and_its_modules():
    frame = impressions_frame(n_requests=3, candidates=4)
    mixed = frame["request_id"] == frame.at[0, "request_id"]
    frame.loc[mixed & (frame["position"] == 0), "module_name"] = "zz_other_surface"
    rows = parsed(frame, 0)
    spec = load_dataset_spec("simulator")
    found = split_module_requests(rows, FILES.__getitem__, raw_names=raw_column_names(spec))
    assert found.count == 1 and len(found.dead_letters) == mixed.sum() == 4
    assert len(found.rows) == len(frame) - 4 and frame.at[0, "request_id"] not in set(found.rows["request_id"])
    reason = found.dead_letters[0]["reason"]
    assert reason.startswith(f"request spans modules: request {frame.at[0, 'request_id']!r} has rows in modules ")
    assert "zz_other_surface" in reason and "its 4 rows are left out" in reason
    assert found.dead_letters[0]["record"]["module_name"] and "_uid" not in found.dead_letters[0]["record"]
    assert split_module_requests(parsed(impressions_frame(n_requests=2), 0), FILES.__getitem__).count == 0


def test_a_repeated_request_item_pair_that_is_not_a_copy_is_counted():
    frame = impressions_frame(n_requests=2, candidates=3)
    frame["listing_id"] = [f"l{row}" for row in range(len(frame))]
    again = frame.iloc[[0]].assign(position=7)  # the same listing shown again lower in the same list
    rows = parsed(pd.concat([frame, again]), 0)
    assert find_duplicates(rows, drop=True, source_name=FILES.__getitem__).count == 0
    assert repeated_items(rows, "listing_id") == 1 and repeated_items(parsed(frame, 0), "listing_id") == 0
    assert repeated_items(rows, None) == 0
