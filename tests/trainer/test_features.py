"""In-model preprocessing: numeric encodings, missing values, OOV and list features."""

import numpy as np
import pytest
import tensorflow as tf

from ranker_core.schema import Feature, SplitStats
from ranker_core.step_configs import TrainerConfig
from tests.conftest import SYNTHETIC_CATEGORIES
from trainer.features import (
    NORMALIZED_CLIP,
    FeatureEncoder,
    FusedNumericEncoder,
    ModuleEmbedding,
    ModuleTraits,
    SequenceAttention,
    StringEncoder,
    trained_modules,
)

NAN, INF = float("nan"), float("inf")


def numeric(encoding: str, name: str = "x", **fields) -> Feature:
    defaults = {"mean": 2.0, "std": 4.0, "min": 0.0, "max": 10.0, "quantiles": [2.0, 5.0]}
    return Feature(name, "numeric", encoding=encoding, **{**defaults, **fields})


def encode_one(feature: Feature, values: list[float], encoder: FusedNumericEncoder | None = None) -> np.ndarray:
    """One feature through the fused encoder: its own columns (value, projection or embedding, then missing)."""
    encoder = encoder or FusedNumericEncoder([feature], embedding_dim=4)
    out = encoder({feature.name: tf.constant(values, tf.float32)}).numpy()
    return out[:, encoder.output_columns()[feature.name]]


def test_normalize_standardizes_and_flags_missing():
    out = encode_one(numeric("normalize"), [2.0, 6.0, NAN, INF])
    np.testing.assert_allclose(out[:, 0], [0.0, 1.0, 0.0, 0.0])
    np.testing.assert_allclose(out[:, 1], [0.0, 0.0, 1.0, 1.0])


def test_log1p_transform_is_applied_before_normalizing():
    feature = numeric("normalize", transform="log1p", mean=0.0, std=1.0)
    out = encode_one(feature, [np.e - 1.0, 0.0])
    np.testing.assert_allclose(out[:, 0], [1.0, 0.0], rtol=1e-6)


def test_piecewise_linear_components_follow_the_quantile_bins():
    encoder = FusedNumericEncoder([numeric("pwl")], embedding_dim=4)
    encoder({"x": tf.constant([1.0])})
    encoder.pwl_kernel.assign(np.eye(3, 4, dtype=np.float32)[None])
    out = encode_one(numeric("pwl"), [1.0, 3.5, 20.0, NAN], encoder)
    np.testing.assert_allclose(out[:, :3], [[0.5, 0, 0], [1, 0.5, 0], [1, 1, 1], [0, 0, 0]])
    np.testing.assert_allclose(out[:, 4], [0, 0, 0, 1])


def test_quantile_encoding_gives_each_bucket_and_missing_its_own_embedding():
    out = encode_one(numeric("quantile"), [1.0, 1.5, 3.0, 9.0, NAN])
    assert np.allclose(out[0], out[1])  # same bucket
    vectors = {tuple(row[:4]) for row in out[[0, 2, 3, 4]]}
    assert len(vectors) == 4  # three buckets and missing
    assert out[4, 4] == 1.0


def test_override_and_fallback_when_the_spec_has_no_quantiles():
    assert FusedNumericEncoder([numeric("normalize")], 4, encoding="pwl").encodings == {"x": "pwl"}
    assert FusedNumericEncoder([numeric("pwl", quantiles=None)], 4).encodings == {"x": "normalize"}


# -- the fused encoder against a per-feature reference in NumPy ----------------


def reference_encoding(feature: Feature, encoding: str, values: np.ndarray, weights: list[np.ndarray]) -> np.ndarray:
    """One feature encoded on its own, as the per-feature encoders did: value/projection/embedding, then missing."""
    missing = ~np.isfinite(values)
    x = np.sign(values) * np.log1p(np.abs(values)) if feature.transform == "log1p" else values
    clean = np.where(missing, np.float32(0), x).astype(np.float32)
    indicator = missing.astype(np.float32)[:, None]
    if encoding == "normalize":
        std = np.float32(feature.std if feature.std and feature.std > 0 else 1.0)
        normalized = np.clip((clean - np.float32(feature.mean)) / std, -NORMALIZED_CLIP, NORMALIZED_CLIP)
        return np.concatenate([np.where(missing, 0.0, normalized)[:, None], indicator], axis=1)
    if encoding == "pwl":
        edges = np.array(sorted({feature.min, feature.max, *feature.quantiles}))
        left, width = edges[:-1].astype(np.float32), np.diff(edges).astype(np.float32)
        parts = np.clip((clean[:, None] - left) / width, 0.0, 1.0) * (1.0 - indicator)
        kernel, bias = weights
        return np.concatenate([np.maximum(parts @ kernel + bias, 0.0), indicator], axis=1)
    boundaries = np.array(sorted(set(feature.quantiles)), np.float32)
    buckets = np.where(missing, len(boundaries) + 1, np.searchsorted(boundaries, clean, side="right"))
    return np.concatenate([weights[0][buckets], indicator], axis=1)


MIXED_FEATURES = [
    numeric("normalize", "plain"),
    numeric("normalize", "logged", transform="log1p", mean=1.0, std=0.5),
    numeric("normalize", "no_std", std=0.0),
    numeric("pwl", "pwl_two_bins", quantiles=[4.0]),
    numeric("pwl", "pwl_logged", transform="log1p", min=-1.0, max=3.0, quantiles=[0.0, 0.5, 1.0, 2.0]),
    numeric("quantile", "quantile_one", quantiles=[3.0]),
    numeric("quantile", "quantile_many", quantiles=[-1.0, 0.0, 2.0, 2.0, 6.0]),
    numeric("quantile", "quantile_logged", transform="log1p", quantiles=[0.5, 1.5]),
]


def random_columns(features: list[Feature], rows: int, seed: int) -> dict[str, np.ndarray]:
    """Wide values of both signs, with NaN, +-inf and exact boundary values mixed in."""
    rng = np.random.default_rng(seed)
    columns = {}
    for feature in features:
        values = rng.normal(0.0, 8.0, rows).astype(np.float32)
        values[rng.random(rows) < 0.1] = NAN
        values[rng.random(rows) < 0.05] = rng.choice([INF, -INF])
        on_boundary = rng.random(rows) < 0.1
        values[on_boundary] = rng.choice([feature.min, feature.max, *feature.quantiles], on_boundary.sum())
        columns[feature.name] = values
    return columns


@pytest.mark.parametrize("forced", [None, "normalize", "pwl", "quantile"])
def test_fused_encoder_matches_the_per_feature_reference(forced):
    encoder = FusedNumericEncoder(MIXED_FEATURES, embedding_dim=3, encoding=forced)
    columns = random_columns(MIXED_FEATURES, rows=400, seed=7)
    out = encoder({name: tf.constant(values) for name, values in columns.items()}).numpy()
    assert out.shape == (400, encoder.output_width)
    placed = encoder.output_columns()
    assert sorted(column for columns in placed.values() for column in columns) == list(range(encoder.output_width))
    for feature in MIXED_FEATURES:
        encoding = encoder.encodings[feature.name]
        assert encoding == (forced or feature.encoding)
        expected = reference_encoding(feature, encoding, columns[feature.name], encoder.feature_weights(feature.name))
        np.testing.assert_allclose(out[:, placed[feature.name]], expected, rtol=1e-5, atol=1e-6, err_msg=feature.name)


def test_fused_pwl_kernels_start_like_one_dense_layer_per_feature():
    encoder = FusedNumericEncoder(MIXED_FEATURES, embedding_dim=3, encoding="pwl")
    encoder(random_columns(MIXED_FEATURES, rows=2, seed=1))
    for feature in MIXED_FEATURES:
        kernel, bias = encoder.feature_weights(feature.name)
        assert np.abs(kernel).max() <= np.sqrt(6.0 / (kernel.shape[0] + 3)) and not bias.any()  # Glorot-uniform
    used = sum(encoder.feature_weights(feature.name)[0].shape[0] for feature in MIXED_FEATURES)
    assert np.count_nonzero(np.abs(encoder.pwl_kernel.numpy()).sum(axis=2)) == used  # padded bins are zeros


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


TRAITS = {
    "home": {"layout": "grid", "channel": "app"},
    "search": {"layout": "list", "channel": "app"},
    "shop": {"layout": "grid", "channel": "web"},  # declared, never trained: "web" is no trained module's
}


def test_module_traits_give_each_declared_module_its_trained_values_and_the_oov_row_otherwise():
    traits = ModuleTraits.of(["home", "search"], TRAITS)
    assert traits.modules == ["home", "search", "shop"] and traits.names == ["channel", "layout"]
    # channel: OOV 0, app 1; layout: OOV 2, grid 3, list 4
    assert traits.ids.tolist() == [[0, 2], [1, 3], [1, 4], [0, 3]] and traits.rows == 5


def test_a_module_vector_is_its_own_vector_plus_its_trait_vectors():
    module = ModuleEmbedding(["home", "search"], dim=3, traits=TRAITS)
    vectors = module(tf.constant(["home", "search", "shop", "unknown"])).numpy()
    own, trait = module.embedding.get_weights()[0], module.trait_embedding.get_weights()[0]
    # own rows: 0 OOV, 1 home, 2 search; trait rows as in the test above
    expected = [own[1] + trait[1] + trait[3], own[2] + trait[1] + trait[4], own[0] + trait[0] + trait[3]]
    expected.append(own[0] + trait[0] + trait[2])
    np.testing.assert_allclose(vectors, np.stack(expected), rtol=1e-6)
    assert not np.allclose(vectors[2], vectors[3])  # the unseen shop is composed from its grid layout


def test_module_dropout_drops_the_own_vector_and_each_trait_independently():
    module = ModuleEmbedding(["home", "search"], dim=3, dropout=0.5, traits=TRAITS)
    trained = module(tf.constant(["home"] * 400), training=True).numpy()
    own, trait = (layer.get_weights()[0] for layer in (module.embedding, module.trait_embedding))
    seen = {tuple(np.round(row, 5)) for row in trained}
    combinations = [a + b + c for a in own[[0, 1]] for b in trait[[0, 1]] for c in trait[[2, 3]]]
    assert seen == {tuple(np.round(row, 5)) for row in combinations}  # all 8 of them, nothing else
    served = module(tf.constant(["home"]), training=False).numpy()[0]
    np.testing.assert_allclose(served, own[1] + trait[1] + trait[3], rtol=1e-6)


def test_without_traits_the_module_embedding_has_no_trait_table():
    module = ModuleEmbedding(["home", "search"], dim=3, traits={})
    module(tf.constant(["home"]))
    assert len(module.weights) == 1


def test_held_out_and_untrained_modules_are_left_to_the_oov_bucket(spec):
    spec = type(spec).from_dict(spec.to_dict())
    spec.held_out_module = "search"
    spec.splits["train"] = SplitStats(rows=10, rows_per_module={"home_feed": 10, "item_page": 0})
    assert trained_modules(spec) == ["home_feed"]


def test_dot_interaction_appends_every_pairwise_dot_product_of_the_string_embeddings(spec, raw_batch):
    inputs = {name: tf.constant(values) for name, values in raw_batch.items()}
    plain = FeatureEncoder(spec, embedding_dim=4)
    crossed = FeatureEncoder(spec, embedding_dim=4, interaction="dot")
    plain(inputs), crossed(inputs)
    crossed.set_weights(plain.get_weights())  # DotInteraction has no weights: the same embeddings
    base, out = plain(inputs).numpy(), crossed(inputs).numpy()
    strings = len(plain.strings)
    assert strings >= 2 and out.shape == (12, crossed.output_width)
    assert crossed.output_width == plain.output_width + strings * (strings - 1) // 2
    np.testing.assert_allclose(out[:, : plain.output_width], base)  # the features themselves are unchanged
    embeddings = [encoder(inputs[encoder.feature.name]).numpy() for encoder in plain.strings]
    expected = [np.sum(embeddings[i] * embeddings[j], axis=1) for i in range(strings) for j in range(i)]
    crosses, expected = np.sort(out[:, plain.output_width :], axis=1), np.sort(np.stack(expected, 1), axis=1)
    np.testing.assert_allclose(crosses, expected, rtol=1e-5, atol=1e-6)


def test_an_unknown_feature_interaction_is_a_clear_error(spec):
    with pytest.raises(ValueError, match="feature interaction must be 'none' or 'dot', got 'fm'"):
        FeatureEncoder(spec, embedding_dim=4, interaction="fm")


def sequence_spec(spec):
    """The synthetic spec with a behaviour sequence of listings, as extraction writes `history.sequences`."""
    spec = type(spec).from_dict(spec.to_dict())
    spec.features.append(Feature("recent_listings", "list", vocabulary=["l1", "l2"], target="listing_id"))
    return spec


def test_sequence_attention_pools_past_listings_by_their_match_with_the_candidate(spec):
    spec = sequence_spec(spec)
    listing = StringEncoder(spec.feature("listing_id"), embedding_dim=4)
    attention = SequenceAttention(spec.feature("recent_listings"), listing)
    candidates = tf.constant(["l1", "l1", "l2", "l3"])
    lists = tf.constant(["l2|l3", "", "l2|l3", "l3"])
    query = listing(candidates)
    out = attention(lists, query).numpy()
    # training pools every row's own flat tokens; serving pools each distinct sequence once: the same output
    np.testing.assert_allclose(attention(lists, query, training=True).numpy(), out, rtol=1e-6, atol=1e-7)
    past = listing(tf.constant(["l2", "l3"])).numpy()
    for row in (0, 2):
        scores = past @ query.numpy()[row] / 2.0  # scaled by sqrt(dim)
        weights = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
        pooled = weights @ past
        np.testing.assert_allclose(out[row, :4], pooled, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(out[row, 4], pooled @ query.numpy()[row], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out[1], np.zeros(5))  # no history: zeros
    np.testing.assert_allclose(out[3, :4], past[1], rtol=1e-6)  # one past listing: itself
    assert not np.allclose(out[0], out[2])  # the same history weighs differently for another candidate


def test_sequences_share_their_targets_table_or_are_plain_lists(spec, raw_batch):
    spec = sequence_spec(spec)
    rows = len(raw_batch["module_name"])
    inputs = {name: tf.constant(values) for name, values in raw_batch.items()}
    inputs["recent_listings"] = tf.constant(["l1|l2", ""] * (rows // 2))
    attended = FeatureEncoder(spec, embedding_dim=4)
    plain = FeatureEncoder(spec, embedding_dim=4, sequence_pooling="mean")
    assert attended(inputs).shape == (rows, attended.output_width) and plain(inputs).shape == (rows, plain.output_width)
    assert [encoder.feature.name for encoder in attended.sequences] == ["recent_listings"]
    assert "recent_listings" not in [encoder.feature.name for encoder in attended.strings]
    assert attended.sequences[0].target.embedding is attended.strings[1].embedding  # listing_id's own table
    assert attended.output_width == plain.output_width + 1 and not plain.sequences
    with pytest.raises(ValueError, match="sequence pooling must be one of attention, mean, got 'max'"):
        FeatureEncoder(spec, embedding_dim=4, sequence_pooling="max")


def test_a_sequences_tokens_add_no_embedding_penalty_to_the_targets_table(spec, raw_batch):
    spec = sequence_spec(spec)
    encoder = FeatureEncoder(spec, embedding_dim=4, embedding_l2=1.0)
    rows = len(raw_batch["module_name"])
    inputs = {name: tf.constant(values) for name, values in raw_batch.items()}

    def penalty(sequence: str) -> float:
        encoder({**inputs, "recent_listings": tf.constant([sequence] * rows)})
        return float(tf.add_n(encoder.losses))

    assert penalty("l3|l4|l5|l6") == pytest.approx(penalty("")) and penalty("") > 0


def test_sequence_dropout_drops_tokens_in_training_only(spec):
    spec = sequence_spec(spec)
    listing = StringEncoder(spec.feature("listing_id"), embedding_dim=4)
    kept_all = SequenceAttention(spec.feature("recent_listings"), listing)
    dropping = SequenceAttention(spec.feature("recent_listings"), listing, dropout=0.5)
    lists = tf.constant(["l1|l2|l3|l1"] * 64)
    query = listing(tf.constant(["l1"] * 64))
    served = kept_all(lists, query).numpy()
    np.testing.assert_array_equal(dropping(lists, query).numpy(), served)  # inference: every token
    # no dropout set: the training path, equal to float32 rounding
    np.testing.assert_allclose(kept_all(lists, query, training=True).numpy(), served, rtol=1e-6, atol=1e-7)
    tf.random.set_seed(0)
    trained = dropping(lists, query, training=True).numpy()
    changed = ~np.isclose(trained, served).all(axis=1)
    assert 0 < changed.sum() < 64  # rows lose different tokens; some keep all four
    past, candidate = listing(tf.constant(["l1", "l2", "l3", "l1"])).numpy(), query.numpy()[0]

    def pooled(kept: list[bool]) -> np.ndarray:  # attention over the kept tokens, as the layer computes it
        if not any(kept):
            return np.zeros(5)
        scores = past[kept] @ candidate / 2.0
        vector = (np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()) @ past[kept]
        return np.append(vector, vector @ candidate)

    subsets = [pooled([bool(mask >> bit & 1) for bit in range(4)]) for mask in range(16)]
    for row in trained:  # each row is the attention pool of some subset of its tokens
        assert min(np.abs(row - subset).max() for subset in subsets) < 1e-5
    with pytest.raises(ValueError, match="sequence_dropout must be in"):
        TrainerConfig(sequence_dropout=1.0)


def test_frequency_scaling_penalizes_each_row_once_per_epoch_however_often_it_is_used(spec):
    encoder = FeatureEncoder(spec, embedding_dim=4, embedding_l2=2.0, l2_by_frequency=True)
    by_name = {encoder.feature.name: encoder for encoder in encoder.strings}
    category, listing, tags = by_name["category"], by_name["listing_id"], by_name["tags"]
    first, second = SYNTHETIC_CATEGORIES[:2]
    train = tf.data.Dataset.from_tensor_slices(
        {
            "category": [first] * 5 + [second],
            "listing_id": ["l1"] * 3 + ["l2"] * 3,
            "user_id": ["u1"] * 6,
            "tags": ["gift|sale", "gift", "", "gift", "vintage", "gift|gift"],
        }
    ).batch(4)

    used = encoder.weigh_l2_by_frequency(encoder.count_ids(train))
    assert used == {"user_id": 1, "listing_id": 2, "category": 2, "tags": 3}

    def penalty(layer: StringEncoder, values: list[str]) -> float:
        layer(tf.constant(values))
        return float(tf.add_n(layer.losses))

    def squares(layer: StringEncoder, value: str) -> float:
        return float(tf.reduce_sum(tf.square(layer.embedding(layer.rows_of(tf.constant([value]))))))

    # a row seen 5 times costs a fifth of one seen once; each lookup is averaged over the batch of 2
    expected = 2.0 * (squares(category, first) / 5 + squares(category, second) / 1) / 2
    assert penalty(category, [first, second]) == pytest.approx(expected, rel=1e-5)
    expected = 2.0 * (squares(listing, "l1") / 3) / 1
    assert penalty(listing, ["l1"]) == pytest.approx(expected, rel=1e-5)
    # a list feature counts each token: gift 5 times, sale and vintage once
    expected = 2.0 * (squares(tags, "gift") / 5 + squares(tags, "sale")) / 1
    assert penalty(tags, ["gift|sale"]) == pytest.approx(expected, rel=1e-5)
    # an unseen value (the OOV row) keeps the full penalty
    expected = 2.0 * squares(category, "never-seen") / 1
    assert penalty(category, ["never-seen"]) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="embedding_l2_scaling"):
        TrainerConfig(embedding_l2_scaling="per_row")


def test_the_shared_rare_row_is_penalized_by_the_uses_of_all_its_ids(spec):
    encoder = FeatureEncoder(spec, embedding_dim=4, embedding_l2=1.0, rare_id_rows=True, l2_by_frequency=True)
    listing = next(e for e in encoder.strings if e.feature.name == "listing_id")
    values = {"listing_id": ["l1"] * 4 + ["l2", "l3", "l5"], "user_id": ["u1"] * 7}
    values |= {"category": [SYNTHETIC_CATEGORIES[0]] * 7, "tags": [""] * 7}
    train = tf.data.Dataset.from_tensor_slices(values).batch(3)
    id_counts = encoder.count_ids(train)  # one pass serves both steps
    encoder.keep_frequent_ids(id_counts, min_count=2)
    used = encoder.weigh_l2_by_frequency(id_counts)

    weights = listing.l2_row_weights.numpy()
    assert used["listing_id"] == 2  # l1's row and the shared row of l2, l3 and l5
    assert weights[listing.rows_of(tf.constant(["l1"])).numpy()[0]] == pytest.approx(1 / 4)
    assert weights[-1] == pytest.approx(1 / 3)  # the shared row: three ids seen once each
    assert weights[listing.rows_of(tf.constant(["l2"])).numpy()[0]] == pytest.approx(1 / 3)


def test_lookup_scaling_penalizes_every_lookup_alike(spec):
    category = StringEncoder(spec.feature("category"), embedding_dim=4, l2=2.0)
    value = SYNTHETIC_CATEGORIES[0]
    category(tf.constant([value] * 3))
    once = float(tf.reduce_sum(tf.square(category.embedding(category.rows_of(tf.constant([value]))))))
    assert float(tf.add_n(category.losses)) == pytest.approx(2.0 * 3 * once / 3, rel=1e-5)
    assert category.l2_row_weights is None  # no weights, no extra variable in the export


def test_hashed_buckets_seen_too_rarely_in_training_share_one_row(spec):
    encoder = FeatureEncoder(spec, embedding_dim=4, rare_id_rows=True)
    listing = next(e for e in encoder.strings if e.feature.name == "listing_id")
    user = next(e for e in encoder.strings if e.feature.name == "user_id")
    assert listing.embedding.input_dim == 257  # 256 buckets and the shared row
    seen = ["l1", "l1", "l1", "l2", "l3", "l3"]
    train = tf.data.Dataset.from_tensor_slices({"listing_id": seen, "user_id": ["u1"] * 6}).batch(4)
    before = listing(tf.constant(["l2", "l4", "l1"])).numpy()
    assert not np.allclose(before[0], before[1])  # every bucket its own row until counted

    id_counts = encoder.count_ids(train)
    assert set(id_counts) == {"listing_id", "user_id"}  # the hashed features only: no penalty per row to weigh
    rare = encoder.keep_frequent_ids(id_counts, min_count=2)
    assert rare == {"listing_id": 256 - 2, "user_id": 64 - 1}  # l1, l3 and u1 keep their rows
    after = listing(tf.constant(["l2", "l4", "never-seen", "l1", "l3"])).numpy()
    np.testing.assert_array_equal(after[0], after[1])  # seen once, and never: the shared row
    np.testing.assert_array_equal(after[0], after[2])
    np.testing.assert_array_equal(after[3], before[2])  # a frequent id keeps its own row
    assert not np.allclose(after[3], after[4]) and not np.allclose(after[0], after[3])
    assert user(tf.constant(["u1"])).numpy().tolist() != user(tf.constant(["u2"])).numpy().tolist()
    with pytest.raises(ValueError, match="rare_id_min_count must be >= 0"):
        TrainerConfig(rare_id_min_count=-1)


def _with_empty_vocabularies(spec):
    """``spec`` plus a categorical, a list and a behaviour sequence whose train split had no value."""
    import dataclasses

    empty = [
        Feature("anchor_category", "categorical", vocabulary=[], missing_fraction=1.0),
        Feature("anchor_tags", "list", vocabulary=None, missing_fraction=1.0),
        Feature("hist_anchor_category", "list", vocabulary=[], missing_fraction=1.0, target="anchor_category"),
    ]
    return dataclasses.replace(spec, features=[*spec.features, *empty]), [feature.name for feature in empty]


def test_features_without_a_vocabulary_are_left_out_with_a_warning_and_still_accepted(spec, raw_batch, caplog):
    emptied, names = _with_empty_vocabularies(spec)
    encoder, reference = FeatureEncoder(emptied, embedding_dim=4), FeatureEncoder(spec, embedding_dim=4)
    assert encoder.output_width == reference.output_width
    assert not {e.feature.name for e in (*encoder.strings, *encoder.sequences)} & set(names)
    for name in names:
        assert f"{name!r} has an empty vocabulary in the feature spec" in caplog.text, caplog.text
    rows = len(raw_batch["module_name"])
    features = {name: tf.constant(values) for name, values in raw_batch.items()}
    empty = encoder({**features, **{name: tf.constant([""] * rows) for name in names}}).numpy()
    valued = encoder({**features, **{name: tf.constant(["toys|gift"] * rows) for name in names}}).numpy()
    np.testing.assert_array_equal(empty, valued)


def test_a_sequence_whose_target_has_no_vocabulary_is_an_ordinary_list_feature(spec, raw_batch):
    import dataclasses

    emptied, _ = _with_empty_vocabularies(spec)
    sequence = Feature("hist_anchor_tags", "list", vocabulary=["gift", "sale"], target="anchor_category")
    encoder = FeatureEncoder(dataclasses.replace(emptied, features=[*emptied.features, sequence]), embedding_dim=4)
    assert [e.feature.name for e in encoder.strings][-1] == "hist_anchor_tags" and not encoder.sequences
    rows = len(raw_batch["module_name"])
    values = {name: tf.constant(column) for name, column in raw_batch.items()}
    assert encoder({**values, "hist_anchor_tags": tf.constant(["gift"] * rows)}).shape == (rows, encoder.output_width)


def test_a_spec_whose_every_feature_lacks_a_vocabulary_has_nothing_to_encode():
    from ranker_core.schema import FeatureSpec

    spec = FeatureSpec(tasks=["click"], features=[Feature("c", "categorical", vocabulary=[])], modules=["feed"])
    with pytest.raises(ValueError, match="every feature of the spec has an empty vocabulary"):
        FeatureEncoder(spec, embedding_dim=3)
