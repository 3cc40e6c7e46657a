"""`ranker extract-features` and the kfp component run the same extraction."""

import json

import pytest

from components.features.options import artifact_beam_uri
from pipelines.cli import main as ranker
from ranker_core.schema import FeatureSpec
from tests.data.impressions import impressions_frame, write_parquet

LOCAL_FLAGS = ["--direct-num-workers", "1", "--direct-running-mode", "in_memory", "--num-shards", "2"]


def test_artifacts_on_gcs_or_bigquery_are_read_and_written_directly():
    # on Vertex AI an artifact's path is the step's /gcs/ mount, which Dataflow's workers do not have
    assert artifact_beam_uri("gs://bucket/impressions", "/gcs/bucket/impressions") == "gs://bucket/impressions"
    assert artifact_beam_uri("bq://p.d.t", "/gcs/whatever") == "bq://p.d.t"
    assert artifact_beam_uri("/gcs/bucket/logs/*.parquet", "/gcs/bucket/logs/*.parquet") == "gs://bucket/logs/*.parquet"
    assert artifact_beam_uri("/tmp/root/impressions", "/tmp/root/impressions") == "/tmp/root/impressions"
    assert artifact_beam_uri("/gcs/", "/gcs/") == "/gcs/"


@pytest.mark.slow
def test_cli_prints_the_counts_and_where_outputs_are(tmp_path, capsys):
    raw = write_parquet(impressions_frame(n_requests=30), tmp_path / "raw")
    argv = ["extract-features", "--data-uri", str(raw), "--dataset-spec", "simulator", "--out", str(tmp_path / "ex")]
    argv += LOCAL_FLAGS
    assert ranker([*argv, "--held-out-module", "search", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows_read"] == summary["rows_written"] == 150 and summary["split_rows"]["heldout"] > 0
    assert FeatureSpec.load(tmp_path / "ex").held_out_module == "search"
    assert ranker(argv) == 0
    out = capsys.readouterr().out
    assert "rows read" in out and f"{tmp_path / 'ex'}/feature_spec.json" in out


def test_cli_reports_a_bad_spec_without_a_traceback(tmp_path, capsys):
    raw = write_parquet(impressions_frame(n_requests=4).drop(columns=["price"]), tmp_path / "raw")
    argv = ["extract-features", "--data-uri", str(raw), "--dataset-spec", "simulator", "--out", str(tmp_path)]
    assert ranker(argv) == 1
    assert "missing column 'price'" in capsys.readouterr().out


@pytest.mark.slow
def test_component_runs_under_kfp_local(tmp_path, kfp_local_root):
    from kfp import dsl

    from components.features.component import extract_features

    raw = write_parquet(impressions_frame(n_requests=30), tmp_path / "raw")
    beam = json.dumps({"direct_num_workers": 1, "direct_running_mode": "in_memory"})

    @dsl.pipeline
    def extraction_only(raw_uri: str):
        impressions = dsl.importer(artifact_uri=raw_uri, artifact_class=dsl.Dataset)
        extract_features(
            raw_data=impressions.output,
            dataset_spec="simulator",
            held_out_module="item_page",
            num_shards=2,
            beam_options_json=beam,
        )

    extraction_only(raw_uri=str(raw))
    [spec_path] = kfp_local_root.rglob("feature_spec.json")
    spec = FeatureSpec.load(spec_path)
    assert sum(stats.rows for stats in spec.splits.values()) == 150 and spec.held_out_module == "item_page"
    [dead_letters] = [path for path in kfp_local_root.rglob("dead_letters") if path.is_dir()]
    assert [path.read_text() for path in dead_letters.glob("*.jsonl")] == [""]
    [metrics] = kfp_local_root.rglob("executor_output.json")
    assert "rows_written" in metrics.read_text()


def test_on_vertex_the_step_hands_beam_gcs_uris_not_its_gcs_mount(monkeypatch):
    from kfp.dsl import Dataset, Metrics

    from components.features.component import extract_features

    class ReachedError(Exception):
        pass

    def extraction_reached(config):
        raise ReachedError(config)

    monkeypatch.setattr("components.features.pipeline.extract_features", extraction_reached)
    monkeypatch.setenv("RANKER_DATAFLOW_MAX_WORKERS", "99")  # the step reads only what the run sends
    dataflow = {"runner": "DataflowRunner", "project": "p", "region": "europe-west4", "temp_location": "gs://b/tmp"}
    root = "gs://b/root/run/extract-features"
    with pytest.raises(ReachedError) as reached:
        extract_features.python_func(
            raw_data=Dataset(uri="/gcs/b/logs/*.parquet"),
            dataset_spec="simulator",
            examples=Dataset(uri=f"{root}/examples"),
            dead_letters=Dataset(uri=f"{root}/dead_letters"),
            metrics=Metrics(uri=f"{root}/metrics"),
            beam_options_json=json.dumps(dataflow),
        )
    (config,) = reached.value.args
    assert config.beam.max_num_workers == 0
    assert (config.data_uri, config.output_dir, config.dead_letter_dir) == (
        "gs://b/logs/*.parquet", f"{root}/examples", f"{root}/dead_letters"
    )  # fmt: skip
