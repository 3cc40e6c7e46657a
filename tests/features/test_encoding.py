"""The column-wise encoder writes exactly the examples trainer.examples.encode_example writes."""

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from components.features.encoding import encode_frame
from tests.conftest import synthetic_feature_spec, synthetic_rows
from trainer.examples import encode_example, parse_features


@pytest.fixture
def frame() -> pd.DataFrame:
    frame = pd.DataFrame(synthetic_rows(n_requests=20, candidates=4, seed=3))
    frame.loc[0, "price"] = np.nan
    frame.loc[1, "category"] = None
    frame.loc[2, "tags"] = "ünïcode|" + "x" * 300  # multi-byte characters and a length over 127
    frame.loc[3, "timestamp"] = -5  # a negative int64 is a 10-byte varint
    frame.loc[4, "listing_ctr"] = 1e30
    return frame


def test_records_parse_to_the_same_examples(frame):
    spec = synthetic_feature_spec()
    records = encode_frame(frame, spec)
    assert len(records) == len(frame)
    for record, row in zip(records, frame.to_dict("records"), strict=True):
        row = {key: (None if isinstance(value, float) and np.isnan(value) and key != "price" else value)
               for key, value in row.items()}  # fmt: skip
        assert tf.train.Example.FromString(record) == tf.train.Example.FromString(encode_example(row, spec))


def test_records_parse_through_the_trainer_input_pipeline(frame):
    spec = synthetic_feature_spec()
    parsed = parse_features(tf.constant(encode_frame(frame, spec)), spec)
    assert parsed["tags"].numpy()[2].decode() == frame.loc[2, "tags"]
    assert np.isnan(parsed["price"].numpy()[0]) and parsed["timestamp"].numpy()[3] == -5
    np.testing.assert_allclose(parsed["user_category_affinity"].numpy(), frame["user_category_affinity"], rtol=1e-6)


def test_a_missing_key_is_named(frame):
    with pytest.raises(KeyError, match="rows lack example keys: price"):
        encode_frame(frame.drop(columns=["price"]), synthetic_feature_spec())
