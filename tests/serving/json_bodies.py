"""Hypothesis strategies for v1 ranking request bodies: random JSON, near-valid requests and raw bytes."""

from __future__ import annotations

import json

from hypothesis import strategies as st

KEYS = ("module_name", "listing_id", "user_id", "category", "price", "listing_ctr", "tags", "user_category_affinity")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)
huge_integers = st.sampled_from([10**400, -(10**400), 2**64, -(2**63) - 1])  # beyond float64, and 64-bit ids' edges
feature_values = (
    st.none() | st.booleans() | st.integers() | huge_integers | st.floats() | st.text(max_size=6) | json_values
)
rows = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), feature_values, max_size=6)
columns = st.dictionaries(st.sampled_from(KEYS), st.lists(feature_values, max_size=5) | feature_values, max_size=4)
instances = st.fixed_dictionaries(
    {"context": rows | json_values, "candidates": st.lists(rows, max_size=5) | columns | json_values},
    optional={"extra": json_values},
)
near_valid = st.fixed_dictionaries(
    {"instances": st.lists(instances, max_size=3) | json_values},
    optional={"parameters": st.fixed_dictionaries({}, optional={"top_k": json_values}) | json_values},
)
# json, not orjson: it also writes integers beyond 64 bits and NaN / Infinity (not JSON, but clients send them).
bodies = (
    near_valid.map(json.dumps).map(str.encode) | json_values.map(json.dumps).map(str.encode) | st.binary(max_size=64)
)
