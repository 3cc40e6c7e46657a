"""A baseline trained once per session on the synthetic examples (few trees, one thread)."""

import shutil
from pathlib import Path

import pytest

TINY_BASELINE = {"n_estimators": 40, "num_leaves": 7, "early_stopping_rounds": 10, "num_threads": 1}


@pytest.fixture(scope="session")
def baseline_dir(synthetic_examples, tmp_path_factory) -> Path:
    from components.baseline.gbdt import BaselineConfig, train_baseline

    out = tmp_path_factory.mktemp("baseline")
    train_baseline(BaselineConfig(**TINY_BASELINE), synthetic_examples, out)
    return out


def examples_with(source: Path, target: Path, **spec_changes) -> Path:
    """A copy of an examples folder whose feature spec has ``spec_changes`` applied."""
    from trainer.schema import FeatureSpec

    shutil.copytree(source, target)
    spec = FeatureSpec.load(target)
    for name, value in spec_changes.items():
        setattr(spec, name, value)
    spec.save(target / "feature_spec.json")
    return target
