"""In-model preprocessing: numeric encodings, missing values, OOV and list features."""

import numpy as np
import pytest
import tensorflow as tf

from ranker_core.schema import Feature, SplitStats
from trainer.features import FeatureEncoder, ModuleEmbedding, NumericEncoder, StringEncoder, trained_modules

NAN = float("nan")


def numeric(encoding: str, **fields) -> Feature:
    defaults = {"mean": 2.0, "std": 4.0, "min": 0.0, "max": 10.0, "quantiles": [2.0, 5.0]}
    return Feature("x", "numeric", encoding=encoding, **{**defaults, **fields})


def test_normalize_standardizes_and_flags_missing():
    out = NumericEncoder(numeric("normalize"), embedding_dim=4)(tf.constant([2.0, 6.0, NAN, float("inf")])).numpy()
    np.testing.assert_allclose(out[:, 0], [0.0, 1.0, 0.0, 0.0])
    np.testing.assert_allclose(out[:, 1], [0.0, 0.0, 1.0, 1.0])


def test_log1p_transform_is_applied_before_normalizing():
    feature = numeric("normalize", transform="log1p", mean=0.0, std=1.0)
    out = NumericEncoder(feature, embedding_dim=4)(tf.constant([np.e - 1.0, 0.0])).numpy()
    np.testing.assert_allclose(out[:, 0], [1.0, 0.0], rtol=1e-6)


def test_piecewise_linear_components_follow_the_quantile_bins():
    encoder = NumericEncoder(numeric("pwl"), embedding_dim=4)
    assert encoder.edges == [0.0, 2.0, 5.0, 10.0]
    encoder(tf.constant([1.0]))
    encoder.projection.set_weights([np.eye(3, 4, dtype=np.float32), np.zeros(4, np.float32)])
    out = encoder(tf.constant([1.0, 3.5, 20.0, NAN])).numpy()
    np.testing.assert_allclose(out[:, :3], [[0.5, 0, 0], [1, 0.5, 0], [1, 1, 1], [0, 0, 0]])
    np.testing.assert_allclose(out[:, 4], [0, 0, 0, 1])


def test_quantile_encoding_gives_each_bucket_and_missing_its_own_embedding():
    encoder = NumericEncoder(numeric("quantile"), embedding_dim=4)
    out = encoder(tf.constant([1.0, 1.5, 3.0, 9.0, NAN])).numpy()
    assert np.allclose(out[0], out[1])  # same bucket
    vectors = {tuple(row[:4]) for row in out[[0, 2, 3, 4]]}
    assert len(vectors) == 4  # three buckets and missing
    assert out[4, 4] == 1.0


def test_override_and_fallback_when_the_spec_has_no_quantiles():
    assert NumericEncoder(numeric("normalize"), 4, encoding="pwl").encoding == "pwl"
    assert NumericEncoder(numeric("pwl", quantiles=None), 4).encoding == "normalize"


def test_unseen_and_empty_categories_map_to_the_oov_bucket():
    encoder = StringEncoder(Feature("c", "categorical", vocabulary=["a", "b"]), embedding_dim=3)
    out = encoder(tf.constant(["a", "never-seen", "", "b"])).numpy()
    np.testing.assert_array_equal(out[1], out[2])
    assert not np.allclose(out[0], out[1])


def test_list_feature_is_the_mean_of_its_token_embeddings():
    encoder = StringEncoder(Feature("tags", "list", vocabulary=["x", "y"]), embedding_dim=3)
    out = encoder(tf.constant(["x", "y", "x|y", "", "y|x|"])).numpy()
    np.testing.assert_allclose(out[2], (out[0] + out[1]) / 2, rtol=1e-6)
    np.testing.assert_array_equal(out[3], np.zeros(3))
    np.testing.assert_allclose(out[4], out[2], rtol=1e-6)


def test_hashed_feature_needs_buckets_and_accepts_any_id():
    with pytest.raises(ValueError, match="hash_buckets"):
        StringEncoder(Feature("user", "hashed"), embedding_dim=3)
    encoder = StringEncoder(Feature("user", "hashed", hash_buckets=8), embedding_dim=3)
    assert encoder(tf.constant(["u1", "brand-new-user"])).shape == (2, 3)


def test_empty_vocabulary_is_a_clear_error():
    with pytest.raises(ValueError, match="'c' has an empty vocabulary"):
        StringEncoder(Feature("c", "categorical", vocabulary=[]), embedding_dim=3)


def test_feature_encoder_width_matches_its_output(spec, raw_batch):
    encoder = FeatureEncoder(spec, embedding_dim=4)
    out = encoder({name: tf.constant(values) for name, values in raw_batch.items()})
    assert out.shape == (12, encoder.output_width)
    assert np.isfinite(out.numpy()).all()


def test_module_dropout_only_in_training_and_unknown_module_is_oov():
    module = ModuleEmbedding(["home", "search"], dim=3, dropout=0.99)
    names = tf.constant(["home"] * 50 + ["unknown"])
    inference = module(names, training=False).numpy()
    assert not np.allclose(inference[0], inference[-1])
    training = module(names, training=True).numpy()
    assert sum(np.allclose(row, inference[-1]) for row in training[:50]) > 40


def test_held_out_and_untrained_modules_are_left_to_the_oov_bucket(spec):
    spec = type(spec).from_dict(spec.to_dict())
    spec.held_out_module = "search"
    spec.splits["train"] = SplitStats(rows=10, rows_per_module={"home_feed": 10, "item_page": 0})
    assert trained_modules(spec) == ["home_feed"]
