import json

import numpy as np
import pytest

from components.baseline.encoding import FeatureEncoder
from ranker_core.targets import ENGAGEMENT, graded_relevance, target_labels, targets
from tests.conftest import synthetic_feature_spec


@pytest.fixture
def columns():
    return {
        "module_name": np.array(["search", "home_feed", "email"], dtype=object),
        "user_id": np.array(["u1", "u2", ""], dtype=object),
        "listing_id": np.array(["l1", "l2", "l3"], dtype=object),
        "category": np.array(["toys", "unknown", ""], dtype=object),
        "tags": np.array(["gift|sale", "", "vintage|other"], dtype=object),
        "price": np.array([10.0, np.nan, 3.0]),
        "listing_ctr": np.array([0.1, 0.2, 0.3]),
        "user_category_affinity": np.array([0.0, 1.0, -1.0]),
    }


def test_encodes_every_kind_from_the_spec(columns):
    encoder = FeatureEncoder.from_spec(synthetic_feature_spec())
    matrix = encoder.encode(columns)
    by_name = dict(zip(encoder.names, matrix.T, strict=True))
    assert set(encoder.dropped) == {"user_id", "listing_id"}
    np.testing.assert_array_equal(by_name["module_name"], [2.0, 0.0, np.nan])  # email is not a spec module
    np.testing.assert_array_equal(by_name["category"], [1.0, np.nan, np.nan])  # toys; OOV and empty are missing
    np.testing.assert_array_equal(by_name["price"], [10.0, np.nan, 3.0])
    tags = matrix[:, [i for i, column in enumerate(encoder.columns) if column.source == "tags"]]
    # vocabulary order: vintage, handmade, gift, sale; unknown tokens are ignored
    np.testing.assert_array_equal(tags, [[0, 0, 1, 1], [0, 0, 0, 0], [1, 0, 0, 0]])
    assert set(encoder.categorical_names) == {"module_name", "category"}


def test_hashed_policy_keeps_ids_as_bucket_codes(columns):
    encoder = FeatureEncoder.from_spec(synthetic_feature_spec(), hashed="hash")
    user = encoder.encode(columns)[:, encoder.names.index("user_id")]
    assert 0 <= user[0] < 64 and 0 <= user[1] < 64 and np.isnan(user[2])
    assert "user_id" in encoder.categorical_names


def test_round_trips_through_a_dict_and_names_missing_columns(columns):
    encoder = FeatureEncoder.from_spec(synthetic_feature_spec(), max_list_tokens=2)
    restored = FeatureEncoder.from_dict(encoder.to_dict())
    np.testing.assert_array_equal(restored.encode(columns), encoder.encode(columns))
    del columns["price"]
    with pytest.raises(KeyError, match="price"):
        encoder.encode(columns)


def test_declared_module_traits_are_categorical_columns_of_the_global_model_only(columns):
    spec = synthetic_feature_spec()  # trained modules: home_feed, item_page, search
    spec.module_traits = {
        "home_feed": {"layout": "grid", "channel": "app"},
        "search": {"layout": "list"},  # no channel: missing
        "email": {"layout": "list", "channel": "email"},  # untrained: "email" is no trained module's channel
    }
    encoder = FeatureEncoder.from_spec(spec)
    by_name = dict(zip(encoder.names, encoder.encode(columns).T, strict=True))  # rows: search, home_feed, email
    np.testing.assert_array_equal(by_name["module_name_layout"], [1.0, 0.0, 1.0])  # categories: grid, list
    np.testing.assert_array_equal(by_name["module_name_channel"], [np.nan, 0.0, np.nan])
    assert {"module_name_layout", "module_name_channel"} <= set(encoder.categorical_names)
    per_module = {encoder.names[i] for i in encoder.without_module()}
    assert not per_module & {"module_name", "module_name_layout", "module_name_channel"}
    restored = FeatureEncoder.from_dict(json.loads(json.dumps(encoder.to_dict())))  # as the manifest stores it
    np.testing.assert_array_equal(restored.encode(columns), encoder.encode(columns))


def test_the_logged_position_is_never_a_column_even_when_the_spec_lists_it():
    from ranker_core.schema import Feature

    spec = synthetic_feature_spec()
    spec.features.append(Feature("position", "numeric", mean=5.0, std=3.0, min=0.0, max=9.0))
    encoder = FeatureEncoder.from_spec(spec)
    assert "position" in encoder.dropped
    assert all(column.source != "position" for column in encoder.columns)


def test_rejects_an_unknown_hashed_policy():
    with pytest.raises(ValueError, match="'drop' or 'hash'"):
        FeatureEncoder.from_spec(synthetic_feature_spec(), hashed="embed")


def test_graded_relevance_is_the_deepest_positive_task():
    labels = {
        "label_click": np.array([0, 1, 1, 1, 0]),
        "label_favorite": np.array([0, 0, 1, 0, 1]),
        "label_add_to_cart": np.array([0, 0, 0, 1, 0]),
        "label_purchase": np.array([0, 0, 0, 1, 0]),
    }
    tasks = synthetic_feature_spec().task_names
    np.testing.assert_array_equal(graded_relevance(labels, tasks), [0, 1, 2, 4, 2])
    np.testing.assert_array_equal(target_labels(labels, "favorite", tasks), [0, 0, 1, 0, 1])
    assert targets(synthetic_feature_spec())[-1] == ENGAGEMENT
    with pytest.raises(KeyError, match="unknown target"):
        target_labels(labels, "share", tasks)
