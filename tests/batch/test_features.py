"""Feature assembly and the ranker's string inputs accept Arrow-backed strings (Parquet as batch ranking reads it)."""

import numpy as np
import pandas as pd
import pyarrow as pa
import tensorflow as tf

from batch.features import FILE, ROW, FeatureAssembler
from ranker_core.schema import FeatureSpec
from trainer.predict import _arrow_string_tensor, _string_tensor

ROWS = {
    "user_id": ["u1", None, "u2", "u3"],
    "listing_id": ["l1", "l2", "l3", "l4"],
    "module_name": ["email", "email", "email", "email"],
    "category": ["art", None, "toys", "é"],
    "price": ["10.5", "3", "abc", None],
}


def spec() -> FeatureSpec:
    return FeatureSpec.from_dict(
        {
            "dataset": "t",
            "features": [
                {"name": "category", "kind": "categorical", "vocabulary": ["art", "toys"]},
                {"name": "price", "kind": "numeric"},
            ],
            "tasks": [{"name": "click", "label_column": "clicked"}],
            "modules": ["email"],
            "roles": {"user_id": "user_id", "item_id": "listing_id"},
        }
    )


def chunk(arrow: bool) -> pd.DataFrame:
    frame = pd.DataFrame(ROWS)
    if arrow:
        frame = pa.Table.from_pandas(frame).to_pandas(types_mapper=pd.ArrowDtype)
    return frame.assign(**{FILE: "f.parquet", ROW: np.arange(1, 5)})


def test_arrow_backed_strings_assemble_like_python_strings():
    assembler = FeatureAssembler(spec(), "user_id", "listing_id", "module_name")

    (plain, plain_dead), (arrow, arrow_dead) = (assembler.assemble(chunk(arrow)) for arrow in (False, True))

    assert (
        arrow_dead
        == plain_dead
        == [
            {"file": "f.parquet", "row": 2, "reason": "user_id: missing value"},
            {"file": "f.parquet", "row": 3, "reason": "price: 'abc' is not a number"},
        ]
    )
    assert isinstance(arrow["user_id"].dtype, pd.ArrowDtype)
    for column in ("user_id", "listing_id", "module_name", "category"):
        assert arrow[column].tolist() == plain[column].tolist(), column
    np.testing.assert_array_equal(arrow["price"], plain["price"])


def test_arrow_strings_become_the_same_tensor_as_python_strings():
    values = pd.array(["a", None, "", "é€", "longer value"], dtype=pd.ArrowDtype(pa.string()))[1:]

    tensor = _arrow_string_tensor(values)

    assert tensor.numpy().tolist() == [b"", b"", "é€".encode(), b"longer value"]
    plain = _string_tensor("f", np.array(["x", None], dtype=object), 2)
    assert plain.dtype == tf.string and plain.numpy().tolist() == [b"x", b""]
    empty = _arrow_string_tensor(pd.array([None, ""], dtype=pd.ArrowDtype(pa.large_string())))
    assert empty.numpy().tolist() == [b"", b""]
