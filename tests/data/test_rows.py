"""Row parsing: every kind of malformed row becomes a dead letter naming the file, row and field."""

import numpy as np
import pandas as pd
import pytest

from components.data.readers import RawBatch
from components.data.rows import UID, parse_batch
from components.data.spec import load_dataset_spec, parse_dataset_spec
from ranker_core.schema import DEFAULT_MODULE, LIST_SEPARATOR, MODULE, POSITION, REQUEST_ID, TIMESTAMP, label_key
from tests.data.impressions import impressions_frame


@pytest.fixture(scope="module")
def spec():
    return load_dataset_spec("simulator")


def batch_of(frame: pd.DataFrame, first_row: int = 1) -> RawBatch:
    return RawBatch(frame.reset_index(drop=True), np.arange(first_row, first_row + len(frame), dtype=np.int64))


def test_valid_rows_map_to_the_canonical_layout(spec):
    frame = impressions_frame(n_requests=4, candidates=3)
    parsed = parse_batch(batch_of(frame), spec, file_index=2, path="logs/part-0.parquet")
    assert parsed.dead_letters == [] and parsed.rows_read == 12 and len(parsed.frame) == 12
    out = parsed.frame
    assert out[REQUEST_ID].tolist() == frame["request_id"].tolist()
    assert out[MODULE].tolist() == frame["module_name"].tolist()
    assert out[POSITION].dtype == np.int64 and out[TIMESTAMP].dtype == np.int64
    assert out[label_key("add_to_cart")].tolist() == frame["added_to_cart"].tolist()
    assert out[UID].tolist() == [(2 << 40) | row for row in range(1, 13)]
    expected_tags = [LIST_SEPARATOR.join(tags) for tags in frame["tags"]]
    assert out["tags"].tolist() == expected_tags
    assert np.isnan(out["rating"]).sum() == frame["rating"].isna().sum()


BAD_ROWS = [
    ({"request_id": None}, "request_id: missing value is not a valid request_id"),
    ({"user_id": ""}, "user_id: '' is not a valid user_id"),
    ({"timestamp": "yesterday"}, "timestamp: 'yesterday' is not a timestamp"),
    ({"timestamp": -5}, "timestamp: -5 is before 1970-01-01"),
    ({"timestamp": "1969-12-31T23:59:59Z"}, "timestamp: '1969-12-31T23:59:59Z' is before 1970-01-01"),
    ({"timestamp": 1e20}, "timestamp: 1e+20 is after 2100-01-01"),
    ({"timestamp": 1_700_000_000_000}, "timestamp: 1700000000000 is after 2100-01-01 (epoch seconds expected"),
    ({"timestamp": float("inf")}, "timestamp: inf is not a timestamp"),
    ({"position": -1}, "position: -1 is negative"),
    ({"position": 1.5}, "position: 1.5 is not an integer position"),
    ({"position": "top"}, "position: 'top' is not a position"),
    ({"clicked": 2}, "clicked: 2 is not 0/1"),
    ({"clicked": np.nan}, "clicked: missing value is not 0/1"),
    ({"purchased": "yes"}, "purchased: 'yes' is not 0/1"),
    ({"price": "cheap"}, "price: 'cheap' is not a finite number"),
    ({"price": float("inf")}, "price: inf is not a finite number"),
    ({"module_name": None}, "module_name: missing value is not a module name"),
]


@pytest.mark.parametrize(("change", "reason"), BAD_ROWS)
def test_each_kind_of_malformed_row_is_a_dead_letter(spec, change, reason):
    frame = impressions_frame(n_requests=2, candidates=3).astype(object)
    for column, value in change.items():
        frame.at[4, column] = value
    parsed = parse_batch(batch_of(frame, first_row=10), spec, file_index=0, path="logs/part-7.parquet")
    assert len(parsed.frame) == 5 and parsed.rows_read == 6
    [letter] = parsed.dead_letters
    assert letter["file"] == "logs/part-7.parquet" and letter["row"] == 14
    assert letter["reason"].startswith(reason)
    assert letter["record"]["request_id"] == frame.at[4, "request_id"]


def test_reader_errors_are_dead_letters_and_count_as_read(spec):
    frame = impressions_frame(n_requests=1, candidates=2)
    batch = RawBatch(frame, np.array([2, 4]), errors=[(3, "malformed CSV line: ...")])
    parsed = parse_batch(batch, spec, file_index=0, path="a.csv")
    assert parsed.rows_read == 3 and len(parsed.frame) == 2
    assert parsed.dead_letters == [{"file": "a.csv", "row": 3, "reason": "malformed CSV line: ...", "record": None}]


def test_a_dead_letters_timestamp_is_iso_text_that_reads_back(spec):
    """Parquet timestamps were written as epoch milliseconds, which the reader refuses: a fixed dead letter could
    not be fed back in as it was."""
    frame = impressions_frame(n_requests=1, candidates=2).astype({"clicked": object})
    frame["timestamp"] = pd.to_datetime([1_704_067_200_123_456_789, 1_704_067_201_000_000_000], utc=True)
    frame.at[1, "clicked"], frame.at[1, "price"] = 7, 1234.567890123
    [letter] = parse_batch(batch_of(frame), spec, 0, "x").dead_letters
    assert letter["record"]["timestamp"] == "2024-01-01T00:00:01.000000000Z"
    assert letter["record"]["price"] == 1234.567890123  # to_json's default kept 10 digits: 1234.5678901
    frame = frame.astype({"timestamp": object})
    frame.at[1, "timestamp"], frame.at[1, "clicked"] = letter["record"]["timestamp"], 1
    assert parse_batch(batch_of(frame), spec, 0, "x").frame[TIMESTAMP].tolist() == [1_704_067_200, 1_704_067_201]


def test_iso_timestamps_and_datetimes_become_epoch_seconds(spec):
    frame = impressions_frame(n_requests=1, candidates=3).astype({"timestamp": object})
    frame["timestamp"] = ["2024-01-01T00:00:00Z", "2024-01-01T00:01:00+00:00", "1704067320"]
    parsed = parse_batch(batch_of(frame), spec, 0, "x")
    assert parsed.frame[TIMESTAMP].tolist() == [1_704_067_200, 1_704_067_260, 1_704_067_320]
    frame["timestamp"] = pd.to_datetime([1_704_067_200, 1_704_067_201, 1_704_067_202], unit="s")
    assert parse_batch(batch_of(frame), spec, 0, "x").frame[TIMESTAMP].tolist()[-1] == 1_704_067_202
    frame["timestamp"] = pd.to_datetime(["1960-01-01", "2024-01-01", "2099-12-31"])
    parsed = parse_batch(batch_of(frame), spec, 0, "x")
    assert parsed.frame[TIMESTAMP].tolist() == [1_704_067_200, 4_102_358_400]
    assert [letter["reason"] for letter in parsed.dead_letters] == [
        "timestamp: Timestamp('1960-01-01 00:00:00') is before 1970-01-01"
    ]


def test_labels_are_0_1_numbers_booleans_or_the_text_true_and_false(spec):
    frame = impressions_frame(n_requests=1, candidates=6).astype({"clicked": object})
    frame["clicked"] = ["1", "0", "True", "false", " TRUE ", "yes"]  # as CSV cells arrive
    parsed = parse_batch(batch_of(frame), spec, 0, "x")
    assert parsed.frame[label_key("click")].tolist() == [1, 0, 1, 0, 1]
    assert [letter["reason"] for letter in parsed.dead_letters] == ["clicked: 'yes' is not 0/1"]
    frame["clicked"] = [True, False] * 3  # Parquet booleans, JSON true / false
    assert parse_batch(batch_of(frame), spec, 0, "x").frame[label_key("click")].tolist() == [1, 0] * 3


def test_optional_roles_default_and_expressions_label(spec):
    minimal = parse_dataset_spec(
        {
            "name": "minimal",
            "columns": {"user_id": "u", "item_id": "i"},
            "tasks": [{"name": "click", "column": "y"}, {"name": "long", "expression": "play >= 0.5 * length"}],
            "features": {"list": ["tags"], "hashed": {"i": 10}},
            "split": {"by": "hash"},
        }
    )
    raw = pd.DataFrame(
        {
            "u": [1, 2, 3],
            "i": [10.0, np.nan, 12.0],
            "y": [True, False, True],
            "play": [6, 1, None],
            "length": [10, 10, 10],
            "tags": ["a|b", None, " c "],
        }
    )
    parsed = parse_batch(batch_of(raw), minimal, 0, "dir/f.csv")
    assert [letter["reason"] for letter in parsed.dead_letters] == [
        "i: missing value is not a valid item_id",
        "play: missing value is not a number (needed by 'play >= 0.5 * length')",
    ]
    out = parsed.frame
    assert out[REQUEST_ID].tolist() == ["f.csv:1"] and out[MODULE].tolist() == [DEFAULT_MODULE]
    assert out["i"].tolist() == ["10"] and out["u"].tolist() == ["1"]
    assert out[label_key("long")].tolist() == [1] and out[label_key("click")].tolist() == [1]
    assert out["tags"].tolist() == ["a|b"]


def test_labels_from_text_columns_are_compared_without_surrounding_spaces():
    events = parse_dataset_spec(
        {
            "name": "events",
            "tasks": [
                {"name": "cart", "expression": "event in ('cart', 'purchase')"},
                {"name": "purchase", "expression": "event == 'purchase' and amount > 0"},
            ],
            "features": {"numeric": {"price": {}}},
        }
    )
    raw = pd.DataFrame({"event": [" purchase", "view ", "cart", None, "purchase"], "amount": [5, 0, 0, 3, 0]})
    raw["price"] = [1.0, 2.0, 3.0, 4.0, 5.0]
    parsed = parse_batch(batch_of(raw), events, 0, "dir/events.csv")
    assert [letter["reason"] for letter in parsed.dead_letters] == [
        "event: missing value is missing (needed by \"event in ('cart', 'purchase')\")"
    ]
    assert parsed.frame[label_key("cart")].tolist() == [1, 0, 1, 1]
    assert parsed.frame[label_key("purchase")].tolist() == [1, 0, 0, 0]
