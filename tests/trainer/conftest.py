"""Trainer fixtures: a small model trained once per session through `ranker train`'s code path."""

import argparse
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import synthetic_feature_spec, synthetic_rows

# Small and fast: the tests check behaviour, not the default model size.
TINY_CONFIG = {
    "expert_types": ["mlp", "cross"],
    "expert_units": [16],
    "tower_units": [8],
    "embedding_dim": 4,
    "module_embedding_dim": 4,
    "batch_size": 256,
    "steps_per_execution": 4,
}


@pytest.fixture(scope="session")
def spec():
    return synthetic_feature_spec()


@pytest.fixture(scope="session")
def raw_batch(spec):
    """Raw serving inputs (module_name and every feature) of 12 candidates, as NumPy columns."""
    rows = synthetic_rows(3, candidates=4, seed=5)
    return {name: np.array([row[name] for row in rows]) for name in ["module_name", *spec.feature_names]}


@pytest.fixture(scope="session")
def trained_model_dir(synthetic_examples, tmp_path_factory) -> Path:
    """`ranker train` on the synthetic examples (default mmoe architecture, tiny widths, 8 epochs)."""
    import json

    from trainer import cli
    from trainer.train import tensorboard_installed

    model_dir = tmp_path_factory.mktemp("trainer") / "model"
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(
        [
            "--examples",
            str(synthetic_examples),
            "--model-dir",
            str(model_dir),
            "--config",
            json.dumps(TINY_CONFIG),
            "--epochs",
            "8",
            "--learning-rate",
            "0.01",
            "--checkpoint-dir",
            str(model_dir.parent / "checkpoints"),
        ]
        + (["--tensorboard-dir", str(model_dir.parent / "tensorboard")] if tensorboard_installed() else [])
    )
    assert cli.main(args) == 0
    return model_dir
