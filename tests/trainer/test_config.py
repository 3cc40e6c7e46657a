"""TrainerConfig: JSON round trip, precedence of the sources, clear errors."""

import json

import pytest

from trainer.config import TrainerConfig, env_overrides, parse_json_or_file


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
    config.save(tmp_path / "trainer_config.json")
    assert TrainerConfig.load(tmp_path) == config


def test_sources_override_in_order(tmp_path):
    file = tmp_path / "config.json"
    file.write_text(json.dumps({"epochs": 3, "seed": 1, "learning_rate": 0.1}))
    environ = {"RANKER_TRAIN_SEED": "7", "RANKER_TRAIN_EPOCHS": "9", "RANKER_TRAIN_BATCH_SIZE": "64"}
    config = TrainerConfig.from_sources(str(file), {"learning_rate": 0.5, "seed": None}, environ=environ)
    assert (config.batch_size, config.epochs, config.seed, config.learning_rate) == (64, 3, 1, 0.5)


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
    config = TrainerConfig.from_dict(env_overrides(environ))
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
        ({"architecture": "moe"}, "architecture 'moe'"),
        ({"expert_types": ["mlp", "transformer"]}, "expert_types"),
        ({"numeric_encoding": "binary"}, "numeric_encoding"),
        ({"batch_size": 0}, "batch_size"),
        ({"gate_temperature": 0.0}, "gate_temperature"),
        ({"not_a_field": 1}, "not_a_field"),
        ({"position_dropout": 1.0}, "position_dropout"),
        ({"position_buckets": 0}, "position_buckets"),
        ({"position_reference": -1}, "position_reference"),
        ({"embedding_l2": -0.1}, "embedding_l2"),
        ({"max_hash_buckets": 0}, "max_hash_buckets"),
    ],
)
def test_bad_values_name_the_field(overrides, message):
    with pytest.raises(ValueError, match=message):
        TrainerConfig().replace(**overrides)


def test_bad_environment_value_names_the_variable():
    with pytest.raises(ValueError, match="RANKER_TRAIN_EPOCHS"):
        env_overrides({"RANKER_TRAIN_EPOCHS": "many"})


def test_config_argument_must_be_json_object_or_file():
    assert parse_json_or_file('{"epochs": 2}') == {"epochs": 2}
    assert parse_json_or_file("  ") == {}
    with pytest.raises(ValueError, match="neither a JSON object nor an existing file"):
        parse_json_or_file("no/such/file.json")
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_json_or_file("{epochs: 2}")
