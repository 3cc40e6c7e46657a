"""A BigQuery source runs through the same pipeline; only the read itself is replaced (no GCP here)."""

import apache_beam as beam
import pytest

from components.features import pipeline
from components.features.options import BeamOptions
from components.features.pipeline import ExtractionConfig, extract_features
from ranker_core.schema import FeatureSpec
from tests.data.impressions import impressions_frame


@pytest.mark.slow
def test_bigquery_rows_are_extracted_like_files(tmp_path, monkeypatch):
    frame = impressions_frame(n_requests=30)
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    records[7]["position"] = -1  # one malformed row: a dead letter named by its read batch
    reads = []

    def fake_read(**kwargs):
        reads.append(kwargs)
        return beam.Create(records)

    monkeypatch.setattr(pipeline.beam.io, "ReadFromBigQuery", fake_read)
    beam_options = BeamOptions(direct_num_workers=1, direct_running_mode="in_memory", project="my-project")
    config = ExtractionConfig("bq://my-project.logs.impressions", "simulator", str(tmp_path), beam=beam_options)
    summary = extract_features(config)

    [kwargs] = reads
    assert kwargs["table"] == "my-project.logs.impressions" and kwargs["method"] == "DIRECT_READ"
    assert kwargs["project"] == "my-project" and "tags" in kwargs["selected_fields"]
    assert (summary.rows_read, summary.rows_written, summary.dead_letters) == (150, 149, 1)
    spec = FeatureSpec.load(tmp_path)
    assert spec.source["files"] == 0 and spec.source["data_uri"] == "bq://my-project.logs.impressions"
    [letter_file] = (tmp_path / "dead_letter").glob("*.jsonl")
    assert "bigquery table my-project.logs.impressions" in letter_file.read_text()
    assert sum(stats.rows for stats in spec.splits.values()) == 149
