"""Preprocessing inside the model: raw feature values in, dense vectors out.

Every lookup table, hash, normalization constant and bucket boundary comes from
the feature spec and is saved with the model, so training and serving run the
same code on the same raw values (no training/serving skew)::

    encoder = FeatureEncoder(spec, embedding_dim=8)
    vectors = encoder({"price": tf.constant([12.5, float("nan")]), "category": tf.constant(["toys", "??"]), ...})
    vectors.shape   # (2, encoder.output_width)

Missing values never fail: a NaN numeric becomes 0 plus a missing indicator,
an empty or unseen string maps to an out-of-vocabulary bucket. All numeric
features are encoded together as one matrix (:class:`FusedNumericEncoder`):
a model call runs about a hundred ops for them in all, not ~26 per feature.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from ranker_core.schema import LIST_SEPARATOR, Feature, FeatureSpec, ModuleTraitMap, trait_names, trait_values
from ranker_core.step_configs import FEATURE_INTERACTIONS, SEQUENCE_POOLINGS

logger = logging.getLogger(__name__)

# Normalized numerics are clipped to this many standard deviations (outliers would dominate a layer).
NORMALIZED_CLIP = 8.0


def transform_numeric(values: tf.Tensor, transform: str) -> tf.Tensor:
    """The spec's transform; ``log1p`` is sign-symmetric so negative values stay finite."""
    if transform == "log1p":
        return tf.sign(values) * tf.math.log1p(tf.abs(values))
    return values


class FusedNumericEncoder(tf.keras.layers.Layer):
    """Every numeric feature at once: transform, then normalize, quantile-bucket embedding or piecewise-linear.

    The features are one ``[features, batch]`` matrix, so the encoder runs
    about a hundred wide ops however many features the spec has (an encoder
    per feature ran ~26 ops each). Per feature the math is the same:

    * ``log1p`` (sign-symmetric, so negative values stay finite) on the features whose transform asks for it;
    * ``normalize``: ``clip((x - mean) / std, -8, 8)``;
    * ``pwl``: the piecewise-linear encoding of Gorishniy et al. (2022), "On
      Embeddings for Numerical Features in Tabular Deep Learning": one
      component per quantile bin, ``clip((x - left) / (right - left), 0, 1)``,
      then the feature's own linear layer and ReLU. Bins are padded to the
      widest feature and masked; the projections are one batched matmul with
      a ``[features, bins, embedding_dim]`` kernel;
    * ``quantile``: the bucket among the spec's quantiles, embedded; every
      feature has its own rows (bucket ids ``0..len(boundaries)``, then one
      for missing) in one shared table, looked up in one gather.

    A NaN or infinite input is missing: it encodes as zeros (its own embedding
    row for ``quantile``) and sets the feature's missing indicator.

    The output is blocks, not one slice per feature: the normalized values,
    one missing indicator per feature, the pwl projections, then the quantile
    embeddings (``embedding_dim`` columns per feature); ``output_columns``
    says where each feature's columns are. Inside, the features are rows
    (``[features, batch]``): stacking, slicing and gathering whole rows are
    contiguous copies, where the same on axis 1 copies one value at a time.

    Example::

        encoder = FusedNumericEncoder([spec.feature("price"), spec.feature("rating")], embedding_dim=8)
        encoder({"price": tf.constant([3.0, float("nan")]), "rating": tf.constant([4.5, 4.0])}).shape
        # (2, 1 + 2 + 8) with price pwl-encoded (log1p) and rating normalized
        encoder.output_columns()["price"]   # [3, ..., 10, 1]: projection, then missing indicator
    """

    def __init__(self, features: Sequence[Feature], embedding_dim: int, encoding: str | None = None, **kwargs) -> None:
        super().__init__(name=kwargs.pop("name", "numeric"), **kwargs)
        if not features:
            raise ValueError("FusedNumericEncoder needs at least one numeric feature")
        self.embedding_dim = embedding_dim
        # matrix columns: the log1p-transformed features first (one transform over a contiguous block)
        logged = [feature for feature in features if feature.transform == "log1p"]
        self.features = logged + [feature for feature in features if feature.transform != "log1p"]
        self.logged = len(logged)
        self.encodings = {feature.name: _usable_encoding(feature, encoding or feature.encoding) for feature in features}
        self.groups = {
            kind: [column for column, feature in enumerate(self.features) if self.encodings[feature.name] == kind]
            for kind in ("normalize", "pwl", "quantile")
        }
        self.output_width = len(self.features) + sum(self._width(kind) for kind in self.groups)
        self._normalize = _normalize_constants(self._group("normalize"))
        self._pwl = _pwl_constants(self._group("pwl"))
        self._quantile = _quantile_constants(self._group("quantile"))

    def _group(self, kind: str) -> list[Feature]:
        return [self.features[column] for column in self.groups[kind]]

    def build(self, input_shape) -> None:
        if self.groups["pwl"]:
            bins, limits = self._pwl["mask"], np.sqrt(6.0 / (self._pwl["mask"].sum(axis=1) + self.embedding_dim))
            # each feature's [bins, dim] slice as Glorot-uniform as its own Dense layer; padded bins stay zero
            self.pwl_kernel = self.add_weight(
                "pwl_kernel",
                [*bins.shape, self.embedding_dim],
                initializer=lambda shape, dtype=None: (
                    tf.random.uniform(shape, -1.0, 1.0) * (limits[:, None, None] * bins[:, :, None]).astype(np.float32)
                ),
            )
            self.pwl_bias = self.add_weight("pwl_bias", [bins.shape[0], self.embedding_dim], initializer="zeros")
        if self.groups["quantile"]:
            self.quantile_embeddings = self.add_weight(
                "quantile_embeddings",
                [int(self._quantile["rows"]), self.embedding_dim],
                initializer=tf.keras.initializers.RandomUniform(-0.05, 0.05),  # as tf.keras.layers.Embedding
            )
        super().build(input_shape)

    def call(self, features: Mapping[str, tf.Tensor]) -> tf.Tensor:
        values = self._matrix(features)
        missing = tf.logical_not(tf.math.is_finite(values))
        clean = tf.where(missing, tf.zeros_like(values), values)
        scalars = [tf.cast(missing, tf.float32)]
        if self.groups["normalize"]:
            scalars.insert(0, self._normalized(*self._rows("normalize", clean, missing)))
        blocks = [tf.transpose(tf.concat(scalars, axis=0) if len(scalars) > 1 else scalars[0])]
        vectors = []  # each [features, batch, dim]
        if self.groups["pwl"]:
            vectors.append(self._piecewise_linear(*self._rows("pwl", clean, missing)))
        if self.groups["quantile"]:
            vectors.append(self._bucket_embeddings(*self._rows("quantile", clean, missing)))
        if vectors:
            stacked = tf.transpose(tf.concat(vectors, axis=0) if len(vectors) > 1 else vectors[0], [1, 0, 2])
            blocks.append(tf.reshape(stacked, [-1, self.output_width - len(self.features) - self._width("normalize")]))
        return tf.concat(blocks, axis=1) if len(blocks) > 1 else blocks[0]

    def _width(self, kind: str) -> int:
        """Output columns of one encoding group: one per normalized feature, ``embedding_dim`` per other one."""
        return len(self.groups[kind]) * (1 if kind == "normalize" else self.embedding_dim)

    def _matrix(self, features: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """``[features, batch]`` float32, the log1p block transformed."""
        columns = [tf.cast(features[feature.name], tf.float32) for feature in self.features]
        blocks = [transform_numeric(tf.stack(columns[: self.logged]), "log1p")] if self.logged else []
        if self.logged < len(columns):
            blocks.append(tf.stack(columns[self.logged :]))
        return blocks[0] if len(blocks) == 1 else tf.concat(blocks, axis=0)

    def _rows(self, kind: str, clean: tf.Tensor, missing: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        if len(self.groups[kind]) == len(self.features):
            return clean, missing
        return tf.gather(clean, self.groups[kind]), tf.gather(missing, self.groups[kind])

    def _normalized(self, values: tf.Tensor, missing: tf.Tensor) -> tf.Tensor:
        """``[features, batch]``."""
        mean, std = self._normalize["mean"][:, None], self._normalize["std"][:, None]
        normalized = tf.clip_by_value((values - mean) / std, -NORMALIZED_CLIP, NORMALIZED_CLIP)
        return tf.where(missing, tf.zeros_like(normalized), normalized)

    def _piecewise_linear(self, values: tf.Tensor, missing: tf.Tensor) -> tf.Tensor:
        """``[features, batch, dim]``: one batched matmul of the ``[features, batch, bins]`` components."""
        left, width, mask = (self._pwl[key][:, None, :] for key in ("left", "width", "mask"))
        parts = tf.clip_by_value((values[:, :, None] - left) / width, 0.0, 1.0)
        parts = parts * mask * (1.0 - tf.cast(missing, tf.float32))[:, :, None]
        return tf.nn.relu(tf.matmul(parts, self.pwl_kernel) + self.pwl_bias[:, None, :])

    def _bucket_embeddings(self, values: tf.Tensor, missing: tf.Tensor) -> tf.Tensor:
        """``[features, batch, dim]``; a bucket is how many boundaries are <= x (Bucketize's id)."""
        boundaries = self._quantile["boundaries"][:, None, :]  # padded with +inf, which no value reaches
        buckets = tf.reduce_sum(tf.cast(values[:, :, None] >= boundaries, tf.int32), axis=2)
        ids = tf.where(missing, self._quantile["missing_ids"][:, None], buckets + self._quantile["offsets"][:, None])
        return tf.gather(self.quantile_embeddings, ids)

    def feature_weights(self, name: str) -> list[np.ndarray]:
        """One feature's own weights, as a layer of its own would hold them.

        ``pwl``: ``[kernel (bins, dim), bias (dim,)]``; ``quantile``:
        ``[embeddings (len(boundaries) + 2, dim)]`` (the last row is missing);
        ``normalize``: ``[]``.
        """
        column = [feature.name for feature in self.features].index(name)
        kind = self.encodings[name]
        if kind == "normalize":
            return []
        index = self.groups[kind].index(column)
        if kind == "pwl":
            bins = int(self._pwl["mask"][index].sum())
            return [self.pwl_kernel.numpy()[index, :bins], self.pwl_bias.numpy()[index]]
        first, last = self._quantile["offsets"][index], self._quantile["missing_ids"][index]
        return [self.quantile_embeddings.numpy()[first : last + 1]]

    def output_columns(self) -> dict[str, list[int]]:
        """Each feature's output columns: its normalized value, projection or embedding, then its missing indicator.

        The blocks: normalized values, missing indicators (every feature), pwl
        projections, quantile embeddings; features in ``self.features`` order.
        """
        columns = {self.features[column].name: [index] for index, column in enumerate(self.groups["normalize"])}
        indicators = len(self.groups["normalize"])
        start = indicators + len(self.features)
        for kind in ("pwl", "quantile"):
            for column in self.groups[kind]:
                columns[self.features[column].name] = list(range(start, start + self.embedding_dim))
                start += self.embedding_dim
        for column, feature in enumerate(self.features):
            columns[feature.name].append(indicators + column)
        return columns


def _normalize_constants(features: Sequence[Feature]) -> dict[str, np.ndarray]:
    """Per-column mean and std (1 where the spec's std is missing or zero)."""
    return {
        "mean": np.array([float(feature.mean) for feature in features], np.float32),
        "std": np.array([float(f.std) if f.std and f.std > 0 else 1.0 for f in features], np.float32),
    }


def _pwl_constants(features: Sequence[Feature]) -> dict[str, np.ndarray]:
    """Left edges, widths and a validity mask per feature and bin, padded to the most bins (``[features, bins]``)."""
    edges = [_pwl_edges(feature) for feature in features]
    bins = max((len(feature_edges) - 1 for feature_edges in edges), default=0)
    left, width, mask = np.zeros((len(edges), bins)), np.ones((len(edges), bins)), np.zeros((len(edges), bins))
    for row, feature_edges in enumerate(edges):
        count = len(feature_edges) - 1
        left[row, :count] = feature_edges[:-1]
        width[row, :count] = np.diff(feature_edges)
        mask[row, :count] = 1.0
    return {"left": left.astype(np.float32), "width": width.astype(np.float32), "mask": mask.astype(np.float32)}


def _quantile_constants(features: Sequence[Feature]) -> dict[str, np.ndarray]:
    """Boundaries padded with +inf (``[features, boundaries]``), each feature's first row and missing row."""
    boundaries = [sorted(set(feature.quantiles or [])) for feature in features]
    width = max((len(feature_boundaries) for feature_boundaries in boundaries), default=0)
    padded = np.full((len(boundaries), width), np.inf)
    for row, feature_boundaries in enumerate(boundaries):
        padded[row, : len(feature_boundaries)] = feature_boundaries
    rows = np.array([len(feature_boundaries) + 2 for feature_boundaries in boundaries], np.int32)
    offsets = np.concatenate([[0], np.cumsum(rows)[:-1]]).astype(np.int32)
    return {
        "boundaries": padded.astype(np.float32),
        "offsets": offsets,
        "missing_ids": offsets + rows - 1,
        "rows": np.int32(rows.sum()),
    }


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
    With ``frequency_weighted`` each looked-up row's square is divided by how often
    the train split uses that row (:meth:`weigh_l2_by_counts`; DIN's mini-batch
    aware regularization, Zhou et al., 2018): a row's penalty over an epoch is the
    same however often it is used, so frequent values are no longer shrunk hardest.

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
        rare_row: bool = False,
        frequency_weighted: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(name=kwargs.pop("name", f"{feature.kind}_{_safe(feature.name)}"), **kwargs)
        self.feature, self.l2 = feature, l2
        self.bucket_rows: tf.Variable | None = None
        self.l2_row_weights: tf.Variable | None = None
        if feature.kind == "hashed":
            if not feature.hash_buckets or feature.hash_buckets < 1:
                raise ValueError(f"hashed feature {feature.name!r} needs hash_buckets >= 1 in the feature spec")
            rows = min(feature.hash_buckets, max_hash_buckets or feature.hash_buckets)
            self.lookup = tf.keras.layers.Hashing(num_bins=rows)
            if rare_row:  # bucket -> embedding row; see keep_frequent_buckets
                self.bucket_rows = tf.Variable(tf.range(rows, dtype=tf.int64), trainable=False, name="bucket_rows")
                rows += 1
        else:
            vocabulary = _checked_vocabulary(feature)
            self.lookup = tf.keras.layers.StringLookup(
                vocabulary=vocabulary, num_oov_indices=oov_buckets, mask_token=None
            )
            rows = len(vocabulary) + oov_buckets
        self.embedding = tf.keras.layers.Embedding(rows, embedding_dim)
        self.output_width = embedding_dim
        if frequency_weighted:  # 1 / (train-split uses) per row; every row 1 until weigh_l2_by_counts
            self.l2_row_weights = tf.Variable(tf.ones([rows]), trainable=False, name=f"{self.name}_l2_row_weights")

    @property
    def rows(self) -> int:
        """Rows of the embedding table."""
        return self.embedding.input_dim

    def keep_frequent_buckets(self, counts: np.ndarray, min_count: int) -> int:
        """Give the hashed buckets seen fewer than ``min_count`` times (``counts``, from the train split) one shared
        row, the last: trained on all of them, it also stands for ids never seen in training. Returns how many.
        """
        buckets = len(counts)  # the shared row is the one after the buckets
        rare = counts < min_count
        self.bucket_rows.assign(np.where(rare, buckets, np.arange(buckets)).astype(np.int64))
        return int(rare.sum())

    def weigh_l2_by_counts(self, counts: np.ndarray) -> None:
        """Divide each row's penalty by its uses in the train split (``counts``, one per row; an unused row keeps 1)."""
        self.l2_row_weights.assign(1.0 / np.maximum(counts, 1).astype(np.float32))

    def id_counts(self, values: tf.Tensor) -> np.ndarray:
        """How often ``values`` (a batch of this feature; a list feature's tokens each count) use each id: the
        vocabulary index or hash bucket, before :meth:`keep_frequent_buckets` maps buckets to rows."""
        if self.feature.kind == "list":
            values, _ = _tokens(values)
        return np.bincount(self.lookup(values).numpy().ravel(), minlength=self.rows)

    def row_counts(self, id_counts: np.ndarray) -> np.ndarray:
        """Each embedding row's uses, from :meth:`id_counts`: the shared rare row sums the ids it stands for."""
        if self.bucket_rows is None:
            return id_counts
        buckets = self.bucket_rows.shape[0]
        return np.bincount(self.bucket_rows.numpy(), weights=id_counts[:buckets], minlength=self.rows)

    def rows_of(self, values: tf.Tensor) -> tf.Tensor:
        """The embedding row of each value."""
        ids = self.lookup(values)
        return ids if self.bucket_rows is None else tf.gather(self.bucket_rows, ids)

    def call(self, values: tf.Tensor) -> tf.Tensor:
        if self.feature.kind != "list":
            return self.embed(values, tf.shape(values)[0])
        vectors, rows = self.embed_tokens(values)
        batch = tf.shape(values, out_type=rows.dtype)[0]
        counts = tf.math.unsorted_segment_sum(tf.ones_like(rows, tf.float32), rows, batch)[:, None]
        return tf.math.unsorted_segment_sum(vectors, rows, batch) / tf.maximum(counts, 1.0)

    def embed(self, values: tf.Tensor, batch: tf.Tensor | None) -> tf.Tensor:
        """Each value's embedding row, penalized per ``batch`` rows (``None``: not penalized)."""
        rows = self.rows_of(values)
        vectors = self.embedding(rows)
        if self.l2 > 0 and batch is not None:
            squares = tf.reduce_sum(tf.square(vectors), axis=-1)
            if self.l2_row_weights is not None:
                squares *= tf.gather(self.l2_row_weights, rows)
            self.add_loss(self.l2 * tf.reduce_sum(squares) / tf.cast(tf.maximum(batch, 1), tf.float32))
        return vectors

    def embed_tokens(self, lists: tf.Tensor, penalize: bool = True) -> tuple[tf.Tensor, tf.Tensor]:
        """The embeddings of every non-empty token of ``lists`` (one string per row) and each token's row."""
        flat, rows = _tokens(lists)
        return self.embed(flat, tf.shape(lists)[0] if penalize else None), rows


def _tokens(lists: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The non-empty tokens of ``lists`` (one joined string per row), flat, and the row of each."""
    # flat tokens and their rows, summed by segment: the ragged ops did the same in ~2x the ops
    tokens = tf.strings.split(lists, LIST_SEPARATOR)
    kept = tf.strings.length(tokens.flat_values) > 0
    return tf.boolean_mask(tokens.flat_values, kept), tf.boolean_mask(tokens.value_rowids(), kept)


class SequenceAttention(tf.keras.layers.Layer):
    """A behaviour sequence pooled with attention to the candidate (DIN's target attention, Zhou et al., 2018).

    The sequence's tokens are values of the candidate feature ``target`` (the listings a user
    clicked, their categories, ...) and are looked up in that feature's own embedding table, so a
    past listing and a candidate listing live in one space. Each token is weighted by the softmax
    of its scaled dot product with the candidate's embedding; the output is the weighted mean and
    its dot product with the candidate (an explicit user x item affinity, which an MLP learns
    poorly), ``dim + 1`` columns; an empty sequence gives zeros. The penalty on looked-up rows
    (``embedding_l2``) is the target's alone: a sequence's tokens add none, else 20 past listings
    per row would pull the candidate's table to zero 20 times as hard (measured: worse rankings).
    In training, ``dropout`` drops that share of the tokens (each on its own) before pooling: a
    regularizer for the unpenalized tokens, so a row cannot be fitted by one memorized past listing.

    Example::

        listing = StringEncoder(spec.feature("listing_id"), embedding_dim=8)
        attention = SequenceAttention(spec.feature("hist_user_recent_click_listing_id"), listing)
        candidates = listing(values["listing_id"])
        attention(values["hist_user_recent_click_listing_id"], candidates).shape   # (batch, 9)
    """

    def __init__(self, feature: Feature, target: StringEncoder, dropout: float = 0.0, **kwargs) -> None:
        super().__init__(name=kwargs.pop("name", f"sequence_{_safe(feature.name)}"), **kwargs)
        self.feature, self.target, self.dropout = feature, target, dropout
        self.output_width = target.output_width + 1

    def call(self, lists: tf.Tensor, candidates: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        # The same pooling, computed two ways: training batches hold mostly distinct, short sequences
        # (flat tokens and segment ops, no padding); a served request's candidates share one user's
        # full sequence (each distinct sequence looked up once, dense ops on padded blocks; the model call
        # it saves is in docs/model.md, "What sequences cost"). A test checks that both give the same output.
        pooled = self._pool_flat(lists, candidates) if training else self._pool_distinct(lists, candidates)
        return tf.concat([pooled, tf.reduce_sum(pooled * candidates, axis=1, keepdims=True)], axis=1)

    def _pool_flat(self, lists: tf.Tensor, candidates: tf.Tensor) -> tf.Tensor:
        vectors, rows = self.target.embed_tokens(lists, penalize=False)
        if self.dropout > 0:  # training only: this path is the training one
            kept = tf.random.uniform(tf.shape(rows)) >= self.dropout
            vectors, rows = tf.boolean_mask(vectors, kept), tf.boolean_mask(rows, kept)
        batch = tf.shape(lists, out_type=rows.dtype)[0]
        scores = tf.reduce_sum(vectors * tf.gather(candidates, rows), axis=1) * self._scale(candidates)
        scores -= tf.gather(tf.stop_gradient(tf.math.unsorted_segment_max(scores, rows, batch)), rows)  # stable softmax
        weights = tf.exp(scores)
        weights /= tf.gather(tf.math.unsorted_segment_sum(weights, rows, batch), rows)
        return tf.math.unsorted_segment_sum(vectors * weights[:, None], rows, batch)

    def _pool_distinct(self, lists: tf.Tensor, candidates: tf.Tensor) -> tf.Tensor:
        distinct, sequence_of_row = tf.unique(lists)
        vectors, owners = self.target.embed_tokens(distinct, penalize=False)
        by_sequence = tf.RaggedTensor.from_value_rowids(vectors, owners, nrows=tf.size(distinct, owners.dtype))
        past = tf.gather(by_sequence.to_tensor(), sequence_of_row)  # [rows, tokens, dim], zero-padded
        kept = tf.gather(tf.sequence_mask(by_sequence.row_lengths()), sequence_of_row)  # [rows, tokens]
        scores = tf.where(kept, tf.einsum("rtd,rd->rt", past, candidates) * self._scale(candidates), tf.float32.min)
        weights = tf.nn.softmax(scores, axis=1) * tf.cast(kept, tf.float32)  # an empty sequence: all zeros
        return tf.einsum("rt,rtd->rd", weights, past)

    @staticmethod
    def _scale(candidates: tf.Tensor) -> tf.Tensor:
        return tf.math.rsqrt(tf.cast(tf.shape(candidates)[1], tf.float32))


def _checked_vocabulary(feature: Feature) -> list[str]:
    vocabulary = list(feature.vocabulary or [])
    if not vocabulary:
        raise ValueError(f"{feature.kind} feature {feature.name!r} has an empty vocabulary in the feature spec")
    duplicates = sorted({token for token in vocabulary if vocabulary.count(token) > 1})
    if duplicates:
        raise ValueError(f"feature {feature.name!r} repeats vocabulary entries {duplicates[:5]}")
    return vocabulary


class FeatureEncoder(tf.keras.layers.Layer):
    """Every feature of the spec (not ``module_name``), encoded and concatenated.

    Layout: the numeric block of :class:`FusedNumericEncoder` (its
    ``output_columns`` locate each feature), then each string feature's
    embedding in spec order, then each behaviour sequence pooled with attention to its target
    (:class:`SequenceAttention`; with ``sequence_pooling="mean"`` a sequence is an ordinary list
    feature among the string features), then with ``interaction="dot"`` the dot product of
    every pair of string embeddings (DLRM's interaction, ``tfrs`` ``DotInteraction``:
    ``n * (n - 1) / 2`` columns for ``n`` string features), so a user x item
    affinity is one column instead of something an MLP must learn to multiply.
    A categorical or list feature with an empty vocabulary (no value in the train split) is
    left out, with a warning: the encoder accepts it among its inputs and ignores it.

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
        interaction: str = "none",
        sequence_pooling: str = "attention",
        sequence_dropout: float = 0.0,
        rare_id_rows: bool = False,
        l2_by_frequency: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(name=kwargs.pop("name", "features"), **kwargs)
        if not spec.features:
            raise ValueError("the feature spec has no features")
        if interaction not in FEATURE_INTERACTIONS:
            choices = " or ".join(repr(choice) for choice in FEATURE_INTERACTIONS)
            raise ValueError(f"feature interaction must be {choices}, got {interaction!r}")
        if sequence_pooling not in SEQUENCE_POOLINGS:
            raise ValueError(
                f"sequence pooling must be one of {', '.join(SEQUENCE_POOLINGS)}, got {sequence_pooling!r}"
            )
        features = _with_values(spec.features)
        if not features:
            raise ValueError("every feature of the spec has an empty vocabulary: nothing to encode")
        numeric = [feature for feature in features if feature.kind == "numeric"]
        self.numeric = FusedNumericEncoder(numeric, embedding_dim, numeric_encoding) if numeric else None
        attended = _attended_sequences(features) if sequence_pooling == "attention" else []
        self.strings = [
            StringEncoder(
                feature, embedding_dim, oov_buckets, embedding_l2, max_hash_buckets, rare_id_rows, l2_by_frequency
            )
            for feature in features
            if feature.is_string and feature not in attended
        ]
        by_name = {encoder.feature.name: encoder for encoder in self.strings}
        self.sequences = [SequenceAttention(feature, by_name[feature.target], sequence_dropout) for feature in attended]
        self.l2_by_frequency = l2_by_frequency
        pairs = len(self.strings) * (len(self.strings) - 1) // 2
        self.interaction = tfrs.layers.feature_interaction.DotInteraction() if interaction == "dot" and pairs else None
        self.output_width = sum(encoder.output_width for encoder in (*self.strings, *self.sequences))
        self.output_width += self.numeric.output_width if self.numeric else 0
        self.output_width += pairs if self.interaction else 0

    def call(self, features: Mapping[str, tf.Tensor], training: bool | None = None) -> tf.Tensor:
        embeddings = [encoder(features[encoder.feature.name]) for encoder in self.strings]
        blocks = [self.numeric(features)] if self.numeric else []
        blocks += embeddings
        candidates = dict(zip((encoder.feature.name for encoder in self.strings), embeddings, strict=True))
        blocks += [
            sequence(features[sequence.feature.name], candidates[sequence.target.feature.name], training=training)
            for sequence in self.sequences
        ]
        if self.interaction is not None:
            blocks.append(self.interaction(embeddings))
        return blocks[0] if len(blocks) == 1 else tf.concat(blocks, axis=1)

    @property
    def embedding_tables(self) -> list[tf.Variable]:
        """Every string feature's embedding table (behaviour sequences share their target's)."""
        return [encoder.embedding.embeddings for encoder in self.strings]

    def freeze_embeddings(self) -> None:
        """Stop training the :attr:`embedding_tables`; the numeric encoders and the sequence attention train on.

        A model compiled before this call must rebuild its train function (``make_train_function(force=True)``).
        """
        for encoder in self.strings:
            encoder.trainable = False

    def reset_embeddings(self, seed: int) -> None:
        """Draw every :attr:`embedding_tables` row afresh from its initializer, seeded by ``seed`` (one draw per seed:
        Keras's unseeded initializers repeat their first draw)."""
        for index, encoder in enumerate(self.strings):
            table, initializer = encoder.embedding.embeddings, encoder.embedding.embeddings_initializer
            reseeded = type(initializer).from_config({**initializer.get_config(), "seed": seed + index})
            table.assign(reseeded(table.shape, table.dtype))

    def count_ids(self, batches: tf.data.Dataset) -> dict[str, np.ndarray]:
        """Id uses over ``batches`` (the train split, one pass), by feature name, of every string feature that needs
        them: with ``l2_by_frequency`` all of them, else the hashed ones with a shared rare row (``rare_id_rows``).
        Feed them to :meth:`keep_frequent_ids`, then :meth:`weigh_l2_by_frequency`."""
        counted = [e for e in self.strings if self.l2_by_frequency or e.bucket_rows is not None]
        counts = {encoder.feature.name: np.zeros(encoder.rows, np.int64) for encoder in counted}
        for batch in batches:
            for encoder in counted:
                counts[encoder.feature.name] += encoder.id_counts(batch[encoder.feature.name])
        return counts

    def keep_frequent_ids(self, id_counts: dict[str, np.ndarray], min_count: int) -> dict[str, int]:
        """Give every hashed feature's buckets seen fewer than ``min_count`` times in ``id_counts``
        (:meth:`count_ids`) one shared row (:meth:`StringEncoder.keep_frequent_buckets`); the rare buckets per
        feature. Needs ``rare_id_rows``."""
        hashed = [encoder for encoder in self.strings if encoder.bucket_rows is not None]
        return {  # the last count is the shared row's, which no id uses
            encoder.feature.name: encoder.keep_frequent_buckets(id_counts[encoder.feature.name][:-1], min_count)
            for encoder in hashed
        }

    def weigh_l2_by_frequency(self, id_counts: dict[str, np.ndarray]) -> dict[str, int]:
        """Divide every row's ``embedding_l2`` penalty by its uses in ``id_counts`` (:meth:`count_ids`;
        :meth:`StringEncoder.weigh_l2_by_counts`); the rows used per feature. Needs ``l2_by_frequency``; after
        :meth:`keep_frequent_ids`, the shared rare row counts all its ids."""
        used = {}
        for encoder in self.strings:
            rows = encoder.row_counts(id_counts[encoder.feature.name])
            encoder.weigh_l2_by_counts(rows)
            used[encoder.feature.name] = int(np.count_nonzero(rows))
        return used


def _attended_sequences(features: Sequence[Feature]) -> list[Feature]:
    """Behaviour sequences whose target is a string feature of ``features`` (not itself a sequence)."""
    strings = {feature.name for feature in features if feature.is_string and not feature.target}
    return [feature for feature in features if feature.kind == "list" and feature.target in strings]


def _with_values(features: Sequence[Feature]) -> list[Feature]:
    """``features`` without the categorical and list ones whose vocabulary is empty, each left out with a warning.

    An empty vocabulary means the train split had no value of the column (null in every row): every value would
    map to one OOV row, a constant that cannot help the model. The model still takes such a feature as an input
    (its serving signature and the request parser follow the feature spec, which lists it) and ignores it.
    """
    empty = [feature for feature in features if feature.kind in ("categorical", "list") and not feature.vocabulary]
    for feature in empty:
        logger.warning(
            "%s feature %r has an empty vocabulary in the feature spec (no value in the train split): "
            "left out of the model, which still accepts it as an input",
            feature.kind,
            feature.name,
        )
    return [feature for feature in features if feature not in empty]


class ModuleEmbedding(tf.keras.layers.Layer):
    """The ``module_name`` embedding: the module's own vector, plus one vector per trait value when traits are given.

    An unknown module maps to the OOV bucket. Training replaces a ``dropout``
    share of the modules by that bucket too, so it learns an "average module"
    and a module never seen in training still gets sensible scores.

    ``traits`` (``{module: {trait: value}}``, the dataset spec's
    ``module_traits``) say what each surface is: its layout, channel, ... A
    module's vector is then its own vector plus one vector per trait value, so a
    module that did not train but whose traits are declared (the held-out
    module, a surface added to the spec) is the OOV vector plus the vectors of
    the traits it shares with trained modules. Dropout exercises that
    composition: it drops the module's own vector and, independently, each
    trait value to its trait's OOV row. A value that no trained module has is
    that OOV row too.

    Example::

        module = ModuleEmbedding(["home_feed", "search"], dim=8, dropout=0.1)
        module(tf.constant(["search", "brand_new_surface"])).shape   # (2, 8)

        traits = {"home_feed": {"layout": "grid"}, "search": {"layout": "list"}, "shop_page": {"layout": "grid"}}
        module = ModuleEmbedding(["home_feed", "search"], dim=8, traits=traits)
        module(tf.constant(["shop_page"]))   # the OOV vector + the "grid" vector
    """

    def __init__(
        self,
        modules: Sequence[str],
        dim: int,
        dropout: float = 0.0,
        oov_buckets: int = 1,
        traits: ModuleTraitMap | None = None,
        **kwargs,
    ):
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
        self.traits = ModuleTraits.of(self.modules, traits or {})
        if self.traits.names:
            self.declared_lookup = tf.keras.layers.StringLookup(
                vocabulary=self.traits.modules, num_oov_indices=1, mask_token=None
            )
            self.trait_embedding = tf.keras.layers.Embedding(self.traits.rows, dim, name="trait_embedding")

    def call(self, module_names: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        ids = self.lookup(module_names)
        if training and self.dropout > 0:
            dropped = tf.random.uniform(tf.shape(ids)) < self.dropout
            ids = tf.where(dropped, tf.zeros_like(ids), ids)  # index 0 is the (first) OOV bucket
        vectors = self.embedding(ids)
        if not self.traits.names:
            return vectors
        trait_ids = tf.gather(tf.constant(self.traits.ids), self.declared_lookup(module_names))  # (batch, traits)
        if training and self.dropout > 0:
            dropped = tf.random.uniform(tf.shape(trait_ids)) < self.dropout
            trait_ids = tf.where(dropped, tf.constant(self.traits.ids[0]), trait_ids)  # row 0: each trait's OOV
        return vectors + tf.reduce_sum(self.trait_embedding(trait_ids), axis=1)


@dataclasses.dataclass(frozen=True)
class ModuleTraits:
    """Trait value ids per declared module, rows of one embedding table shared by all traits.

    ``ids[0]`` is a module that declares no traits: every trait's OOV row. Row
    ``i + 1`` is ``modules[i]``. Each trait owns a block of rows: its OOV row,
    then one row per value that a trained module declares.

    >>> traits = ModuleTraits.of(["feed"], {"feed": {"layout": "grid"}, "shop": {"layout": "list"}})
    >>> traits.modules, traits.names, traits.ids.tolist(), traits.rows
    (['feed', 'shop'], ['layout'], [[0], [1], [0]], 2)
    """

    modules: list[str]
    names: list[str]
    ids: np.ndarray  # (len(modules) + 1, len(names)), int64
    rows: int

    @classmethod
    def of(cls, trained: Sequence[str], traits: ModuleTraitMap) -> ModuleTraits:
        modules = sorted(traits)
        names = trait_names(traits)
        ids = np.zeros((len(modules) + 1, len(names)), np.int64)
        first_row = 0
        for column, name in enumerate(names):
            trained_values = trait_values(traits, name, trained)
            row_of = {value: first_row + 1 + index for index, value in enumerate(trained_values)}
            ids[0, column] = first_row
            for index, module in enumerate(modules, start=1):
                ids[index, column] = row_of.get(traits[module].get(name, ""), first_row)
            first_row += len(trained_values) + 1
        return cls(modules, names, ids, first_row)


def trained_modules(spec: FeatureSpec) -> list[str]:
    """The modules with training rows: a held-out (or absent) module must map to the OOV bucket."""
    train_rows = spec.splits["train"].rows_per_module if "train" in spec.splits else {}
    modules = [module for module in spec.modules if module != spec.held_out_module]
    if train_rows:
        modules = [module for module in modules if train_rows.get(module, 0) > 0]
    return modules


def _safe(name: str) -> str:
    """A Keras layer name for a feature name (they allow only ASCII ``[A-Za-z0-9_.-]``)."""
    return "".join(char if (char.isascii() and char.isalnum()) or char in "_.-" else "_" for char in name)
