"""Random feature values drawn from a feature spec: requests for load tests, inputs for a model's smoke test.

Numbers follow the spec's mean and standard deviation (clipped to its min and
max), categorical and list features its vocabularies, hashed features are
random ids::

    columns = synthetic_columns(FeatureSpec.load("work/model/feature_spec.json"), rows=8)
    columns["category"][:2]     # ["toys", "art"]
"""

from __future__ import annotations

import numpy as np

from ranker_core.schema import LIST_SEPARATOR, Feature, FeatureSpec


def synthetic_columns(spec: FeatureSpec, rows: int, seed: int = 0) -> dict[str, list]:
    """``rows`` random values of every feature of ``spec`` (not ``module_name``), keyed by feature name."""
    rng = np.random.default_rng(seed)
    return {feature.name: synthetic_values(feature, rows, rng) for feature in spec.features}


def synthetic_values(feature: Feature, size: int, rng: np.random.Generator) -> list:
    """``size`` random values of one feature, drawn from its statistics or vocabulary."""
    if feature.kind == "numeric":
        values = rng.normal(feature.mean, feature.std or 1.0, size)
        lower, upper = sorted((feature.min, feature.max))
        if feature.transform == "log1p":
            values, lower, upper = np.expm1(values), np.expm1(lower), np.expm1(upper)
        return np.clip(values, lower, upper).round(4).tolist() if upper > lower else values.tolist()
    if feature.vocabulary:
        tokens = rng.choice(feature.vocabulary, size=(size, 2 if feature.kind == "list" else 1))
        return [LIST_SEPARATOR.join(sorted(set(row))) for row in tokens.tolist()]
    return [f"{feature.name}-{value}" for value in rng.integers(0, 1 << 20, size).tolist()]
