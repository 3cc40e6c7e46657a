"""Split assignment: by time, by hash or by file; whole requests together; the held-out module apart."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from components.data.rows import FILE_INDEX
from components.data.spec import SplitSpec, load_dataset_spec
from components.features.history import Timeline
from components.features.pipeline import ExtractionPlan, assign_splits
from ranker_core.schema import MODULE, REQUEST_ID, TIMESTAMP, label_key


def plan_for(split: SplitSpec, held_out_module: str | None = None, file_splits=None) -> ExtractionPlan:
    spec = dataclasses.replace(load_dataset_spec("simulator"), split=split)
    return ExtractionPlan(spec, "data", ("a", "b"), file_splits or {}, held_out_module, num_shards=2, batch_rows=10)


@pytest.fixture
def rows() -> pd.DataFrame:
    requests = np.repeat(np.arange(500), 4)
    return pd.DataFrame(
        {
            REQUEST_ID: [f"r{r}" for r in requests],
            TIMESTAMP: requests // 2 + np.tile([0, 0, 0, 1], 500),  # one candidate logged a second late
            MODULE: np.where(requests % 5 == 0, "email", "search"),
            FILE_INDEX: requests % 2,
            label_key("click"): 0,
        }
    )


def test_time_split_keeps_requests_whole_and_ordered(rows):
    timeline = Timeline.of(rows, ("click",), "email")
    splits = assign_splits(rows, plan_for(SplitSpec("time", 0.2, 0.1), "email"), timeline)
    frame = rows.assign(split=splits)
    assert frame.groupby(REQUEST_ID)["split"].nunique().max() == 1
    assert set(frame.loc[frame[MODULE] == "email", "split"]) == {"heldout"}
    kept = frame[frame[MODULE] != "email"]
    shares = kept["split"].value_counts(normalize=True)
    assert shares["train"] == pytest.approx(0.7, abs=0.02) and shares["test"] == pytest.approx(0.1, abs=0.02)
    request_times = kept.groupby([REQUEST_ID, "split"])[TIMESTAMP].min().reset_index()
    times = request_times.groupby("split")[TIMESTAMP].agg(["min", "max"])  # requests placed by their first time
    assert times.loc["train", "max"] < times.loc["eval", "min"] and times.loc["eval", "max"] < times.loc["test", "min"]


def test_hash_split_is_stable_and_keeps_requests_whole(rows):
    plan = plan_for(SplitSpec("hash", 0.25, 0.25))
    first = assign_splits(rows, plan, Timeline.of(rows, ("click",), None))
    again = assign_splits(rows.sample(frac=1, random_state=0).sort_index(), plan, Timeline.of(rows, ("click",), None))
    assert (first == again).all()
    frame = rows.assign(split=first)
    assert frame.groupby(REQUEST_ID)["split"].nunique().max() == 1
    assert frame["split"].value_counts(normalize=True)["train"] == pytest.approx(0.5, abs=0.1)


def test_file_split_follows_the_source_file(rows):
    files = {"train": "a", "eval": "c", "test": "b"}
    plan = plan_for(SplitSpec("files", files=files), file_splits={0: "train", 1: "test"})
    splits = assign_splits(rows, plan, Timeline.of(rows, ("click",), None))
    assert (splits == np.where(rows[FILE_INDEX] == 0, "train", "test")).all()


def test_a_split_without_a_file_pattern_takes_its_fraction_of_the_train_files_requests(rows):
    plan = plan_for(SplitSpec("files", 0.2, files={"train": "a", "test": "b"}), file_splits={0: "train", 1: "test"})
    splits = assign_splits(rows, plan, Timeline.of(rows, ("click",), None))
    frame = rows.assign(split=splits)
    assert set(frame.loc[frame[FILE_INDEX] == 1, "split"]) == {"test"}  # the test file stays whole
    from_train = frame.loc[frame[FILE_INDEX] == 0, "split"]
    assert set(from_train) == {"train", "eval"} and (from_train == "eval").mean() == pytest.approx(0.2, abs=0.06)
    assert frame.groupby(REQUEST_ID)["split"].nunique().max() == 1
    shuffled = rows.sample(frac=1, random_state=0).sort_index()
    assert (assign_splits(shuffled, plan, Timeline.of(rows, ("click",), None)) == splits).all()  # a stable hash
