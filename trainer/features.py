"""Preprocessing inside the model: raw feature values in, dense vectors out.

Every lookup table, hash, normalization constant and bucket boundary comes from
the feature spec and is saved with the model, so training and serving run the
same code on the same raw values (no training/serving skew)::

    encoder = FeatureEncoder(spec, embedding_dim=8)
    vectors = encoder({"price": tf.constant([12.5, float("nan")]), "category": tf.constant(["toys", "??"]), ...})
    vectors.shape   # (2, encoder.output_width)

Missing values never fail: a NaN numeric becomes 0 plus a missing indicator,
an empty or unseen string maps to an out-of-vocabulary bucket.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import tensorflow as tf

from ranker_core.schema import LIST_SEPARATOR, Feature, FeatureSpec

logger = logging.getLogger(__name__)

# Normalized numerics are clipped to this many standard deviations (outliers would dominate a layer).
NORMALIZED_CLIP = 8.0


def transform_numeric(values: tf.Tensor, transform: str) -> tf.Tensor:
    """The spec's transform; ``log1p`` is sign-symmetric so negative values stay finite."""
    if transform == "log1p":
        return tf.sign(values) * tf.math.log1p(tf.abs(values))
    return values


class NumericEncoder(tf.keras.layers.Layer):
    """One numeric feature: transform, then normalize, quantile-bucket embedding or piecewise-linear encoding.

    ``pwl`` is the piecewise-linear encoding of Gorishniy et al. (2022), "On
    Embeddings for Numerical Features in Tabular Deep Learning": one component
    per quantile bin, ``clip((x - left) / (right - left), 0, 1)``, followed by a
    linear layer and ReLU. Every encoding appends a missing indicator (NaN or
    infinite input), and a missing value encodes as zeros besides it.

    Example::

        encoder = NumericEncoder(spec.feature("price"), embedding_dim=8)
        encoder(tf.constant([3.0, float("nan")])).shape   # (2, 9)
    """

    def __init__(self, feature: Feature, embedding_dim: int, encoding: str | None = None, **kwargs) -> None:
        super().__init__(name=kwargs.pop("name", f"numeric_{_safe(feature.name)}"), **kwargs)
        self.feature = feature
        self.encoding = _usable_encoding(feature, encoding or feature.encoding)
        self.mean = float(feature.mean)
        self.std = float(feature.std) if feature.std and feature.std > 0 else 1.0
        if self.encoding == "quantile":
            self.boundaries = sorted(set(feature.quantiles or []))
            # bucket ids 0..len(boundaries); one more id for missing values
            self.embedding = tf.keras.layers.Embedding(len(self.boundaries) + 2, embedding_dim)
            self.output_width = embedding_dim + 1
        elif self.encoding == "pwl":
            self.edges = _pwl_edges(feature)
            self.projection = tf.keras.layers.Dense(embedding_dim, activation="relu")
            self.output_width = embedding_dim + 1
        else:
            self.output_width = 2

    def call(self, values: tf.Tensor) -> tf.Tensor:
        values = tf.cast(values, tf.float32)
        missing = tf.logical_not(tf.math.is_finite(values))
        clean = tf.where(missing, tf.zeros_like(values), transform_numeric(values, self.feature.transform))
        indicator = tf.cast(missing, tf.float32)[:, None]
        if self.encoding == "quantile":
            buckets = tf.raw_ops.Bucketize(input=clean, boundaries=self.boundaries)
            buckets = tf.where(missing, len(self.boundaries) + 1, buckets)
            return tf.concat([self.embedding(buckets), indicator], axis=1)
        if self.encoding == "pwl":
            left, right = self.edges[:-1], self.edges[1:]
            widths = [r - lo for lo, r in zip(left, right, strict=True)]
            parts = tf.clip_by_value((clean[:, None] - left) / widths, 0.0, 1.0)
            parts = parts * (1.0 - indicator)
            return tf.concat([self.projection(parts), indicator], axis=1)
        normalized = tf.clip_by_value((clean - self.mean) / self.std, -NORMALIZED_CLIP, NORMALIZED_CLIP)
        normalized = tf.where(missing, tf.zeros_like(normalized), normalized)
        return tf.concat([normalized[:, None], indicator], axis=1)


def _usable_encoding(feature: Feature, encoding: str) -> str:
    """Bucketized encodings need quantile boundaries; without them fall back to normalize (logged)."""
    if encoding in ("quantile", "pwl") and len(set(feature.quantiles or [])) < 1:
        logger.warning("numeric feature %r has no quantiles in the spec: encoding it as normalize", feature.name)
        return "normalize"
    if encoding == "pwl" and len(_pwl_edges(feature)) < 2:
        logger.warning("numeric feature %r has a single value: encoding it as normalize", feature.name)
        return "normalize"
    return encoding


def _pwl_edges(feature: Feature) -> list[float]:
    """Bin edges ``[min, q1, ..., qk, max]``, strictly increasing.

    Like the mean and std, min, max and quantiles in the spec are statistics of
    the transformed value.
    """
    edges = sorted({float(feature.min), float(feature.max), *(float(q) for q in feature.quantiles or [])})
    return edges


class StringEncoder(tf.keras.layers.Layer):
    """A categorical (vocabulary + OOV buckets), hashed or list feature as an embedding.

    List features hold tokens joined by ``LIST_SEPARATOR``; their encoding is
    the mean of the token embeddings (zeros for an empty list). ``l2`` adds
    ``l2 * (summed squares of the looked-up rows) / batch`` to the model's
    losses: only the rows a batch uses are penalized, so the update stays sparse.

    Example::

        encoder = StringEncoder(spec.feature("tags"), embedding_dim=8, l2=1e-4)
        encoder(tf.constant(["gift|sale", ""])).shape   # (2, 8)
    """

    def __init__(
        self,
        feature: Feature,
        embedding_dim: int,
        oov_buckets: int = 1,
        l2: float = 0.0,
        max_hash_buckets: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(name=kwargs.pop("name", f"{feature.kind}_{_safe(feature.name)}"), **kwargs)
        self.feature, self.l2 = feature, l2
        if feature.kind == "hashed":
            if not feature.hash_buckets or feature.hash_buckets < 1:
                raise ValueError(f"hashed feature {feature.name!r} needs hash_buckets >= 1 in the feature spec")
            rows = min(feature.hash_buckets, max_hash_buckets or feature.hash_buckets)
            self.lookup = tf.keras.layers.Hashing(num_bins=rows)
        else:
            vocabulary = _checked_vocabulary(feature)
            self.lookup = tf.keras.layers.StringLookup(
                vocabulary=vocabulary, num_oov_indices=oov_buckets, mask_token=None
            )
            rows = len(vocabulary) + oov_buckets
        self.embedding = tf.keras.layers.Embedding(rows, embedding_dim)
        self.output_width = embedding_dim

    def call(self, values: tf.Tensor) -> tf.Tensor:
        if self.feature.kind != "list":
            vectors = self.embedding(self.lookup(values))
            self._penalize(vectors, tf.shape(values)[0])
            return vectors
        tokens = tf.strings.split(values, LIST_SEPARATOR)
        tokens = tf.ragged.boolean_mask(tokens, tf.strings.length(tokens) > 0)
        vectors = tf.ragged.map_flat_values(self.embedding, tf.ragged.map_flat_values(self.lookup, tokens))
        self._penalize(vectors.flat_values, tf.shape(values)[0])
        counts = tf.cast(tokens.row_lengths(), tf.float32)[:, None]
        return tf.reduce_sum(vectors, axis=1) / tf.maximum(counts, 1.0)

    def _penalize(self, rows: tf.Tensor, batch: tf.Tensor) -> None:
        if self.l2 > 0:
            self.add_loss(self.l2 * tf.reduce_sum(tf.square(rows)) / tf.cast(tf.maximum(batch, 1), tf.float32))


def _checked_vocabulary(feature: Feature) -> list[str]:
    vocabulary = list(feature.vocabulary or [])
    if not vocabulary:
        raise ValueError(f"{feature.kind} feature {feature.name!r} has an empty vocabulary in the feature spec")
    duplicates = sorted({token for token in vocabulary if vocabulary.count(token) > 1})
    if duplicates:
        raise ValueError(f"feature {feature.name!r} repeats vocabulary entries {duplicates[:5]}")
    return vocabulary


class FeatureEncoder(tf.keras.layers.Layer):
    """Every feature of the spec (not ``module_name``), encoded and concatenated in spec order.

    Example::

        encoder = FeatureEncoder(spec, embedding_dim=8, numeric_encoding="pwl", embedding_l2=1e-4)
        encoder(raw_features).shape   # (batch, encoder.output_width)
    """

    def __init__(
        self,
        spec: FeatureSpec,
        embedding_dim: int,
        numeric_encoding: str | None = None,
        oov_buckets: int = 1,
        embedding_l2: float = 0.0,
        max_hash_buckets: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(name=kwargs.pop("name", "features"), **kwargs)
        if not spec.features:
            raise ValueError("the feature spec has no features")
        self.encoders: list[NumericEncoder | StringEncoder] = [
            NumericEncoder(feature, embedding_dim, numeric_encoding)
            if feature.kind == "numeric"
            else StringEncoder(feature, embedding_dim, oov_buckets, embedding_l2, max_hash_buckets)
            for feature in spec.features
        ]
        self.output_width = sum(encoder.output_width for encoder in self.encoders)

    def call(self, features: Mapping[str, tf.Tensor]) -> tf.Tensor:
        return tf.concat([encoder(features[encoder.feature.name]) for encoder in self.encoders], axis=1)


class ModuleEmbedding(tf.keras.layers.Layer):
    """The ``module_name`` embedding, with an OOV bucket that is trained by module dropout.

    An unknown module maps to the OOV bucket. Training replaces a ``dropout``
    share of the modules by that bucket too, so it learns an "average module"
    and a module never seen in training still gets sensible scores.

    Example::

        module = ModuleEmbedding(["home_feed", "search"], dim=8, dropout=0.1)
        module(tf.constant(["search", "brand_new_surface"])).shape   # (2, 8)
    """

    def __init__(self, modules: Sequence[str], dim: int, dropout: float = 0.0, oov_buckets: int = 1, **kwargs):
        super().__init__(name=kwargs.pop("name", "module_embedding"), **kwargs)
        if not modules:
            raise ValueError("the feature spec lists no modules to embed")
        self.modules = list(modules)
        self.dropout = dropout
        self.lookup = tf.keras.layers.StringLookup(
            vocabulary=self.modules, num_oov_indices=oov_buckets, mask_token=None
        )
        self.embedding = tf.keras.layers.Embedding(len(self.modules) + oov_buckets, dim)
        self.output_width = dim

    def call(self, module_names: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        ids = self.lookup(module_names)
        if training and self.dropout > 0:
            dropped = tf.random.uniform(tf.shape(ids)) < self.dropout
            ids = tf.where(dropped, tf.zeros_like(ids), ids)  # index 0 is the (first) OOV bucket
        return self.embedding(ids)


def trained_modules(spec: FeatureSpec) -> list[str]:
    """The modules with training rows: a held-out (or absent) module must map to the OOV bucket."""
    train_rows = spec.splits["train"].rows_per_module if "train" in spec.splits else {}
    modules = [module for module in spec.modules if module != spec.held_out_module]
    if train_rows:
        modules = [module for module in modules if train_rows.get(module, 0) > 0]
    return modules


def _safe(name: str) -> str:
    """A Keras layer name for a feature name (they allow only ``[A-Za-z0-9_.-]``)."""
    return "".join(char if char.isalnum() or char in "_.-" else "_" for char in name)
