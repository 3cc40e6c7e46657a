"""TrainerConfig: JSON round trip, precedence of the sources, clear errors."""

import json

import pytest

from ranker_core.cli_support import InvalidValueError
from ranker_core.settings import read_json_object
from trainer.config import TrainerConfig, load_config, save_config


def test_json_round_trip_keeps_every_field(tmp_path):
    config = TrainerConfig(
        architecture="ple",
        expert_types=["mlp", "cross"],
        numeric_encoding="pwl",
        score_weights={"search": {"purchase": 4.0}},
        positive_weights={"purchase": 3.0},
        cross_projection_dim=8,
    )
    assert TrainerConfig.from_json(config.to_json()) == config
    save_config(config, tmp_path / "trainer_config.json")
    assert load_config(tmp_path) == config


def test_sources_override_in_order_flags_environment_file_defaults(tmp_path):
    file = tmp_path / "config.json"
    file.write_text(json.dumps({"epochs": 3, "seed": 1, "learning_rate": 0.1}))
    environ = {"RANKER_TRAIN_SEED": "7", "RANKER_TRAIN_EPOCHS": "9", "RANKER_TRAIN_BATCH_SIZE": "64"}
    config = TrainerConfig.from_sources(str(file), {"learning_rate": 0.5, "seed": None}, environ=environ)
    assert (config.batch_size, config.epochs, config.seed, config.learning_rate) == (64, 9, 7, 0.5)
    inline = TrainerConfig.from_sources('{"epochs": 3}', environ=environ)  # an inline object is a flag
    assert (inline.epochs, inline.seed) == (3, 7)


def test_environment_parses_every_field_type():
    environ = {
        "RANKER_TRAIN_EXPERT_TYPES": '["cross", "mlp"]',
        "RANKER_TRAIN_DETERMINISTIC": "false",
        "RANKER_TRAIN_NUMERIC_ENCODING": "quantile",
        "RANKER_TRAIN_CROSS_PROJECTION_DIM": "null",
        "RANKER_TRAIN_GATE_TEMPERATURE": "0.5",
        "RANKER_TRAIN_ARCHITECTURE": "shared_bottom",
        "RANKER_TRAIN_POSITION_BIAS": "true",
        "RANKER_TRAIN_POSITION_REFERENCE": "null",
    }
    config = TrainerConfig.load(environ=environ)
    assert config.expert_types == ["cross", "mlp"]
    assert config.deterministic is False
    assert config.numeric_encoding == "quantile"
    assert config.cross_projection_dim is None
    assert config.gate_temperature == 0.5
    assert config.architecture == "shared_bottom"
    assert config.position_bias is True
    assert config.position_reference is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"architecture": "moe"}, "architecture: Input should be"),
        ({"expert_types": ["mlp", "transformer"]}, "expert_types"),
        ({"numeric_encoding": "binary"}, "numeric_encoding"),
        ({"batch_size": 0}, "batch_size"),
        ({"gate_temperature": 0.0}, "gate_temperature"),
        ({"not_a_field": 1}, "not_a_field"),
        ({"position_dropout": 1.0}, "position_dropout"),
        ({"position_buckets": 0}, "position_buckets"),
        ({"position_reference": -1}, "position_reference"),
        ({"embedding_l2": -0.1}, "embedding_l2"),
        ({"listwise_weight": -0.5}, "listwise_weight must be a finite number >= 0, got -0.5"),
        ({"listwise_weight": float("nan")}, "listwise_weight must be a finite number >= 0"),
        ({"listwise_tasks": ["favorite", "favorite"]}, "listwise_tasks names a task twice"),
        ({"logged_order_weight": -1.0}, "logged_order_weight must be a finite number >= 0, got -1.0"),
        ({"logged_order_weight": float("inf")}, "logged_order_weight must be a finite number >= 0"),
        ({"max_hash_buckets": 0}, "max_hash_buckets"),
        ({"early_stopping_metric": "map"}, "early_stopping_metric 'map' is not 'loss', 'auc', 'ndcg' or 'ndcg@<k>'"),
        ({"early_stopping_metric": "ndcg@0"}, "early_stopping_metric"),
        ({"early_stopping_metric": "val_ranking_loss"}, "early_stopping_metric"),
        # NaN and infinity pass a "<= 0" check: every float field must be finite
        ({"learning_rate": float("nan")}, "learning_rate must be a finite number > 0, got nan"),
        ({"learning_rate": float("inf")}, "learning_rate must be a finite number > 0, got inf"),
        ({"gate_temperature": float("nan")}, "gate_temperature must be a finite number > 0, got nan"),
        ({"gate_temperature": float("inf")}, "gate_temperature must be a finite number > 0, got inf"),
        ({"embedding_l2": float("nan")}, "embedding_l2 must be a finite number >= 0, got nan"),
        ({"embedding_l2": float("inf")}, "embedding_l2 must be a finite number >= 0, got inf"),
        ({"default_score_weights": {"click": float("nan")}}, r"default_score_weights\['click'\] must be a finite"),
        ({"score_weights": {"search": {"click": float("inf")}}}, r"score_weights\['search'\]\['click'\] must be a"),
        # whole numbers that abort in oneDNN, fail in tf.data or mean nothing
        ({"tower_units": [8, 0]}, r"tower_units must be positive, got \[8, 0\]"),
        ({"cross_projection_dim": 0}, "cross_projection_dim must be positive or null, got 0"),
        ({"shuffle_buffer": 0}, "shuffle_buffer must be positive, got 0"),
        ({"seed": -1}, r"seed must be in \[0, 2\*\*32\), got -1"),
        ({"cross_layers": 0}, "cross_layers must be positive, got 0"),
        ({"cross_layers": -1}, "cross_layers must be positive, got -1"),
        ({"early_stopping_patience": -1}, "early_stopping_patience must be >= 0, got -1"),
        ({"cache_max_rows": -1}, "cache_max_rows must be >= 0, got -1"),
        ({"ple_task_experts": -1}, "ple_task_experts must be >= 0, got -1"),
    ],
)
def test_bad_values_name_the_field(overrides, message):
    with pytest.raises(ValueError, match=message):
        TrainerConfig().replace(**overrides)


@pytest.mark.parametrize(
    "overrides",
    [
        {"early_stopping_patience": 0},  # stop at the first epoch without a better metric
        {"cache_max_rows": 0},  # never hold the train split in memory
        {"ple_task_experts": 0},  # PLE levels of shared experts only
        {"tower_units": []},  # each tower is its logit layer alone
        {"embedding_l2": 0.0, "cross_projection_dim": None},
        {"default_score_weights": {"click": -1.0}},  # a negative score weight is a valid term of the score
    ],
)
def test_zero_and_null_settings_with_a_meaning_are_accepted(overrides):
    assert TrainerConfig().replace(**overrides).model_dump(include=set(overrides)) == overrides


@pytest.mark.parametrize("metric", ["loss", "auc", "ndcg@10", "ndcg@5", "ndcg"])
def test_early_stopping_metric_is_the_loss_the_auc_or_an_ndcg_name(metric):
    assert TrainerConfig.from_sources(json.dumps({"early_stopping_metric": metric})).early_stopping_metric == metric


def test_bad_environment_value_names_the_variable():
    with pytest.raises(ValueError, match="RANKER_TRAIN_EPOCHS"):
        TrainerConfig.load(environ={"RANKER_TRAIN_EPOCHS": "many"})


def test_config_argument_must_be_json_object_or_file():
    assert read_json_object('{"epochs": 2}', "config") == {"epochs": 2}
    assert read_json_object("  ", "config") == {}
    with pytest.raises(ValueError, match="neither a JSON object nor an existing file"):
        read_json_object("no/such/file.json", "config")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_json_object("{epochs: 2}", "config")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"positive_weights": {"click": 0}}, r"positive_weights\['click'\] must be a finite number > 0, got 0"),
        ({"positive_weights": {"click": -2.0}}, r"positive_weights\['click'\] must be a finite number > 0, got -2.0"),
        ({"positive_weights": {"click": float("nan")}}, r"positive_weights\['click'\] must be a finite number > 0"),
        ({"max_positive_weight": 0}, "max_positive_weight must be a finite number > 0, got 0"),
        ({"max_positive_weight": -1.0}, "max_positive_weight must be a finite number > 0, got -1.0"),
        ({"positive_weight_power": -0.5}, "positive_weight_power must be a finite number >= 0, got -0.5"),
        ({"task_loss_weights": {"click": -1.0}}, r"task_loss_weights\['click'\] must be a finite number >= 0"),
        ({"task_loss_weights": {"click": float("inf")}}, r"task_loss_weights\['click'\] must be a finite number"),
    ],
)
def test_class_and_loss_weights_that_would_break_training_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        TrainerConfig().replace(**overrides)


def test_a_refused_weight_is_one_line_from_every_source():
    for environ, config in [
        ({}, '{"positive_weights": {"click": 0}}'),
        ({"RANKER_TRAIN_MAX_POSITIVE_WEIGHT": "0"}, None),
    ]:
        with pytest.raises(InvalidValueError) as refused:
            TrainerConfig.from_sources(config, environ=environ)
        assert "\n" not in str(refused.value) and str(refused.value).startswith("TrainerConfig: ")
    # a zero loss weight switches a task's loss off, and an explicit weight below 1 down-weights its positives
    config = TrainerConfig.from_sources('{"task_loss_weights": {"click": 0}, "positive_weights": {"click": 0.5}}')
    assert config.task_loss_weights == {"click": 0.0} and config.positive_weights == {"click": 0.5}
