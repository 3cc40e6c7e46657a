"""Export, reload and predict: the contract the evaluation and the server build against."""

import json

import numpy as np
import pytest
import tensorflow as tf

from ranker_core.schema import Feature, FeatureSpec
from tests.trainer.conftest import TINY_CONFIG
from trainer.config import TrainerConfig
from trainer.export import SIGNATURE, export_model, input_specs
from trainer.model import build_model
from trainer.predict import load_ranker

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ranker(trained_model_dir):
    return load_ranker(trained_model_dir)


def test_model_dir_holds_the_saved_model_spec_config_and_diagnostics(trained_model_dir, spec):
    names = {path.name for path in trained_model_dir.iterdir()}
    assert {"saved_model.pb", "feature_spec.json", "trainer_config.json", "gate_usage.json", "metrics.json"} <= names
    config = json.loads((trained_model_dir / "trainer_config.json").read_text())
    assert config["architecture"] == "mmoe" and config["epochs"] == 8


def test_signature_takes_one_rank1_tensor_per_raw_feature(ranker, spec):
    signature = ranker.input_signature
    assert set(signature) == {"module_name", *spec.feature_names}
    for name, tensor_spec in signature.items():
        expected = tf.float32 if name != "module_name" and not spec.feature(name).is_string else tf.string
        assert tensor_spec.dtype == expected and tensor_spec.shape.as_list() == [None], name
    assert ranker.task_names == spec.task_names


@pytest.mark.parametrize("interaction", ["none", "dot"])
def test_export_reload_and_predict_match_the_in_memory_model(spec, raw_batch, tmp_path, interaction):
    # names TensorFlow must sanitize as signature arguments still arrive under the spec's names
    spec = FeatureSpec.from_dict(spec.to_dict())
    spec.features += [
        Feature("item-price.usd", "numeric", std=2.0),
        Feature("shop/name", "categorical", vocabulary=["a"]),
        Feature("recent/listings", "list", vocabulary=["l1"], target="listing_id"),  # a behaviour sequence
        Feature("měna", "categorical", vocabulary=["kč", "eur"]),  # TensorFlow takes ASCII names only
    ]
    rows = len(raw_batch["module_name"])
    batch = {**raw_batch, "item-price.usd": np.linspace(-3, 3, rows), "shop/name": np.array(["a", "b"] * (rows // 2))}
    batch["měna"] = np.array(["kč", "eur", "usd"] * (rows // 3))
    batch["recent/listings"] = np.array(["l1|l9", "", "l9"] * (rows // 3))
    config = TrainerConfig(
        **{**TINY_CONFIG, "score_weights": {"search": {"click": 3.0}}, "feature_interaction": interaction}
    )
    model = build_model(spec, config)
    export_model(model, str(tmp_path))
    ranker = load_ranker(tmp_path)
    assert ranker.input_signature["item-price.usd"].name == "item_price_usd"
    assert ranker.input_signature["měna"].name == "m_na"
    reloaded = ranker.predict(batch)
    in_memory = model(
        {
            name: tf.constant(values, tf.string if values.dtype.kind == "U" else tf.float32)
            for name, values in batch.items()
        }
    )
    assert set(reloaded) == set(in_memory)
    for name, values in in_memory.items():
        np.testing.assert_allclose(reloaded[name], values.numpy(), rtol=1e-6, atol=1e-7, err_msg=name)
    without = ranker.predict({**batch, "item-price.usd": None})
    assert not np.allclose(without["score"], reloaded["score"])


def test_an_untrained_module_declared_with_traits_is_served_from_them(spec, raw_batch, tmp_path):
    traits = {"home_feed": {"layout": "grid"}, "search": {"layout": "list"}, "shop_page": {"layout": "grid"}}
    spec = FeatureSpec.from_dict({**spec.to_dict(), "module_traits": traits})
    model = build_model(spec, TrainerConfig(**TINY_CONFIG, module_traits=True))
    export_model(model, str(tmp_path))
    ranker = load_ranker(tmp_path)
    assert ranker.feature_spec.module_traits["shop_page"] == {"layout": "grid"}
    rows = len(raw_batch["module_name"])
    scores = {
        module: ranker.predict({**raw_batch, "module_name": np.array([module] * rows)})["score"]
        for module in ("shop_page", "brand_new_surface")
    }
    assert not np.allclose(scores["shop_page"], scores["brand_new_surface"])  # grid's vector, not only the OOV one
    untraited = build_model(spec, TrainerConfig(**TINY_CONFIG))  # off by default
    assert untraited.module_embedding.traits.names == []


def test_feature_names_that_collide_as_signature_arguments_are_rejected(spec):
    spec = FeatureSpec.from_dict(spec.to_dict())
    spec.features += [Feature("a-b", "numeric"), Feature("a.b", "numeric")]
    with pytest.raises(ValueError, match=r"'a-b' and 'a\.b' both become serving input 'a_b'"):
        input_specs(spec)


def test_serving_signature_accepts_a_dict_of_raw_values(trained_model_dir, raw_batch, spec):
    serve = tf.saved_model.load(str(trained_model_dir)).signatures[SIGNATURE]
    dtypes = {name: tensor_spec.dtype for name, tensor_spec in serve.structured_input_signature[1].items()}
    outputs = serve(**{name: tf.constant(values, dtype=dtypes[name]) for name, values in raw_batch.items()})
    assert set(outputs) == {*spec.task_names, "score"}
    for values in outputs.values():
        assert values.shape == (12,)
        assert (values.numpy() >= 0).all()


def test_predict_fills_missing_inputs_and_casts_python_values(ranker, raw_batch):
    request = {
        "module_name": ["search", "never_seen_module", None],
        "price": [12.0, None, "7.5"],
        "category": ["toys", "not-a-category", None],
        "user_id": [17, None, 18],  # ids sent as JSON numbers
        "listing_ctr": np.array([0.1, np.nan, 0.2]),
        "request_id": ["ignored", "ignored", "ignored"],
    }
    outputs = ranker.predict(request)
    for name in (*ranker.task_names, "score"):
        assert outputs[name].shape == (3,)
        assert np.isfinite(outputs[name]).all()
    for task in ranker.task_names:
        assert ((outputs[task] > 0) & (outputs[task] < 1)).all()


def test_predict_errors_name_the_feature_and_row(ranker):
    with pytest.raises(ValueError, match=r"'price' row 1: 'cheap' is not a number"):
        ranker.predict({"module_name": ["search", "search"], "price": [1.0, "cheap"]})
    with pytest.raises(ValueError, match="different lengths"):
        ranker.predict({"module_name": ["search", "search"], "price": [1.0]})
    with pytest.raises(ValueError, match="no model input"):
        ranker.predict({"request_id": ["r1"]})


def test_loading_a_folder_without_a_model_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="no SavedModel"):
        load_ranker(tmp_path)


def test_predict_through_two_matrices_matches_the_named_signature(trained_model_dir, ranker, raw_batch):
    serve = tf.saved_model.load(str(trained_model_dir)).signatures[SIGNATURE]
    dtypes = {name: tensor_spec.dtype for name, tensor_spec in serve.structured_input_signature[1].items()}
    named = serve(**{name: tf.constant(values, dtype=dtypes[name]) for name, values in raw_batch.items()})
    strings, numbers = ranker.to_tensors(raw_batch)
    assert strings.shape == (len(ranker.string_inputs), 12) and numbers.shape == (len(ranker.number_inputs), 12)
    assert set(ranker.string_inputs) | set(ranker.number_inputs) == set(ranker.input_signature)
    outputs = ranker.predict(raw_batch)
    for name in ranker.output_names:
        np.testing.assert_array_equal(outputs[name], named[name].numpy(), err_msg=name)
    empty = ranker.predict({name: values[:0] for name, values in raw_batch.items()})
    assert all(values.shape == (0,) for values in empty.values())


def test_a_spec_without_numeric_features_is_served(spec, raw_batch, tmp_path):
    spec = FeatureSpec.from_dict(spec.to_dict())
    spec.features = [feature for feature in spec.features if feature.is_string]
    export_model(build_model(spec, TrainerConfig(**TINY_CONFIG)), str(tmp_path))
    ranker = load_ranker(tmp_path)
    assert ranker.number_inputs == ()
    assert ranker.predict(raw_batch)["score"].shape == (12,)


def test_a_feature_left_out_for_its_empty_vocabulary_is_still_a_serving_input(spec, raw_batch, tmp_path):
    spec = FeatureSpec.from_dict(spec.to_dict())
    spec.features.append(Feature("anchor_category", "categorical", vocabulary=[], missing_fraction=1.0))
    export_model(build_model(spec, TrainerConfig(**TINY_CONFIG)), str(tmp_path))
    ranker = load_ranker(tmp_path)
    assert ranker.input_signature["anchor_category"].dtype == tf.string
    rows = len(raw_batch["module_name"])
    empty = ranker.predict({**raw_batch, "anchor_category": np.array([""] * rows)})
    valued = ranker.predict({**raw_batch, "anchor_category": np.array(["toys"] * rows)})
    for name, values in empty.items():
        np.testing.assert_array_equal(values, valued[name], err_msg=name)
