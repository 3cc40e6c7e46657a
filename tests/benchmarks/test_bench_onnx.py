"""The ONNX Runtime benchmark measures the served model's own computation, cut where the strings end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.bench_model_call import synthetic_columns
from benchmarks.bench_onnx import convert, measure, onnx_feeds, run, session, split_at_strings, tensorflow_ids


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """A ranker with one feature of every kind (log1p numbers, hashed ids, a list), exported untrained."""
    from tests.conftest import synthetic_feature_spec
    from trainer.config import TrainerConfig
    from trainer.export import export_model
    from trainer.model import build_model

    config = TrainerConfig(expert_units=[16, 8], tower_units=[8], embedding_dim=4)
    folder = tmp_path_factory.mktemp("onnx") / "model"
    return Path(export_model(build_model(synthetic_feature_spec(), config), str(folder)))


def test_the_dense_part_fed_tensorflows_hashes_scores_as_the_saved_model(exported):
    result = measure(exported, candidates=64, threads=1, rounds=1, block=2)

    differences = result["max_abs_difference"]["dense part, TensorFlow's hashes"]
    assert set(differences) == {"click", "favorite", "add_to_cart", "purchase", "score"}
    assert max(differences.values()) < 1e-5
    assert result["hashed_id_tensors"] == 2  # user_id and listing_id
    assert result["onnx_nodes"]["dense part"] < result["onnx_nodes"]["whole"]
    assert set(result["cpu_ms_per_call"]) == {
        "tensorflow/signature",
        "onnxruntime/whole graph",
        "onnxruntime/string part",
        "onnxruntime/dense part",
    }
    assert all(ms > 0 for ms in result["cpu_ms_per_call"].values())
    assert sum(result["onnxruntime_kernel_ms_by_op"].values()) > 0


def test_onnxruntime_extensions_hash_ids_into_other_buckets_than_tensorflow(exported):
    """Why the whole converted graph is not the served model: its hashed ids land in other embedding rows."""
    from trainer.predict import load_ranker

    parts = split_at_strings(convert(exported))
    string_part = session(parts.string_part, threads=1)
    feeds = onnx_feeds(load_ranker(exported), synthetic_columns(exported, 64))
    own = {**feeds, **run(string_part, feeds)}
    tensorflows = tensorflow_ids(parts, own)

    assert parts.hashes
    for output in parts.hashes:
        assert own[output].shape == tensorflows[output].shape
        assert np.mean(own[output] != tensorflows[output]) > 0.5
    # every other id (vocabulary lookups, list tokens) is the same
    for output in set(parts.ids) - set(parts.hashes):
        np.testing.assert_array_equal(own[output], tensorflows[output])
