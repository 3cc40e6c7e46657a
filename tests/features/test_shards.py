"""How many shards an extraction uses: as asked, or one per ROWS_PER_SHARD rows of Parquet input."""

from __future__ import annotations

import pytest

from components.features import pipeline
from components.features.pipeline import MIN_SHARDS, ExtractionConfig, ExtractionError, plan_extraction, shard_count
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
