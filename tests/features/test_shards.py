"""How many shards an extraction uses (as asked, or one per ROWS_PER_SHARD rows of Parquet input), the
shards spilled between the join and the writer, and the frames spilled between shuffles."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import pytest

from components.features import pipeline
from components.features.options import BeamOptions
from components.features.pipeline import (
    MIN_SHARDS,
    SPILL_DIR,
    ExtractionConfig,
    ExtractionError,
    FrameSpill,
    frame_spill,
    plan_extraction,
    remove_spilled_shards,
    shard_count,
    spill_shard,
)
from tests.data.impressions import impressions_frame, write_parquet


@pytest.fixture
def parquet(tmp_path):
    """400 rows (80 requests of 5 candidates) in 3 Parquet files."""
    return write_parquet(impressions_frame(n_requests=80, candidates=5, seed=1), tmp_path / "raw", parts=3)


def test_parquet_input_gets_a_shard_per_rows_per_shard_rows_read_from_the_footers(parquet, monkeypatch):
    files = sorted(str(path) for path in parquet.glob("*.parquet"))
    monkeypatch.setattr(pipeline, "ROWS_PER_SHARD", 60)
    assert shard_count(0, "parquet", files) == 7  # ceil(400 / 60)
    monkeypatch.setattr(pipeline, "ROWS_PER_SHARD", 1_000)
    assert shard_count(0, "parquet", files) == MIN_SHARDS  # small data keeps the minimum
    assert shard_count(3, "parquet", files) == 3  # asked for: as asked


def test_other_sources_get_the_minimum_unless_asked():
    assert shard_count(0, "csv", ["never/read.csv"]) == MIN_SHARDS
    assert shard_count(0, "bigquery", []) == MIN_SHARDS
    assert shard_count(40, "jsonl", ["never/read.jsonl"]) == 40


def test_the_plan_sizes_its_shards_and_refuses_a_negative_count(parquet, tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "ROWS_PER_SHARD", 100)
    assert plan_extraction(ExtractionConfig(str(parquet), "simulator", str(tmp_path / "out"))).num_shards == 4
    monkeypatch.setattr(pipeline, "ROWS_PER_SHARD", 50)
    assert plan_extraction(ExtractionConfig(str(parquet), "simulator", str(tmp_path / "out"))).num_shards == 8
    with pytest.raises(ExtractionError, match=r"num_shards must be 0 \(sized by the data\) or more"):
        plan_extraction(ExtractionConfig(str(parquet), "simulator", str(tmp_path / "out"), num_shards=-1))


def test_spilled_shards_are_removed_with_their_folder_and_a_missing_folder_is_no_error(tmp_path):
    spilled = [spill_shard((shard, pd.DataFrame({"x": [shard]})), str(tmp_path / SPILL_DIR))[1] for shard in (0, 1)]
    assert [Path(path).name for path in spilled] == ["shard-00000.pkl", "shard-00001.pkl"]
    assert pd.read_pickle(spilled[1])["x"].tolist() == [1]
    remove_spilled_shards(str(tmp_path))
    assert not (tmp_path / SPILL_DIR).exists()
    remove_spilled_shards(str(tmp_path))  # nothing left: nothing to do


def test_a_spilled_frame_travels_as_a_path_and_comes_back_equal(tmp_path):
    frame = pd.DataFrame({"uid": [3, 1], "tags": [["a"], []], "price": [1.5, None]})
    handle = FrameSpill(str(tmp_path / "frames")).put(frame)
    assert isinstance(handle, str) and Path(handle).parent == tmp_path / "frames"
    pd.testing.assert_frame_equal(FrameSpill.get([handle, frame])[0], frame)
    assert FrameSpill().put(frame) is frame  # no folder: the frame itself goes through the shuffle


def test_frames_spill_to_a_temporary_folder_on_the_local_runner_only(monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # TMPDIR, as Python read it at its first use
    with frame_spill(BeamOptions(runner="DirectRunner")) as spill:
        handle = spill.put(pd.DataFrame({"x": [1]}))
        assert Path(spill.folder).parent == tmp_path and Path(handle).exists()
    assert not Path(spill.folder).exists()  # removed when the run ends
    dataflow = BeamOptions(runner="DataflowRunner", project="p", region="r", temp_location="gs://b/tmp")
    with frame_spill(dataflow) as spill:
        assert spill == FrameSpill()  # Dataflow's shuffle is not in memory: frames pass as they are
