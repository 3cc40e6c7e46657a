"""A baseline trained once per session on the synthetic examples (few trees, a short search, one thread)."""

import shutil
from pathlib import Path

import pytest

TINY_BASELINE = {"n_estimators": 40, "num_leaves": 7, "early_stopping_rounds": 10, "num_threads": 1, "tuning_trials": 2}


@pytest.fixture(scope="session")
def baseline_dir(synthetic_examples, tmp_path_factory) -> Path:
    from components.baseline.gbdt import BaselineConfig, train_baseline

    out = tmp_path_factory.mktemp("baseline")
    train_baseline(BaselineConfig(**TINY_BASELINE), synthetic_examples, out)
    return out


def examples_with(source: Path, target: Path, **spec_changes) -> Path:
    """A copy of an examples folder whose feature spec has ``spec_changes`` applied."""
    from ranker_core.schema import FeatureSpec

    shutil.copytree(source, target)
    spec = FeatureSpec.load(target)
    for name, value in spec_changes.items():
        setattr(spec, name, value)
    spec.save(target / "feature_spec.json")
    return target


def reordered_examples(source: Path, target: Path, sort_key) -> Path:
    """A copy of an examples folder whose train and eval rows are logged in another order within each request.

    ``sort_key(columns)`` gives one number per row; each request's rows are written in ascending
    order of it and ``position`` is renumbered to match, as a logger would have recorded them.
    """
    import numpy as np

    from ranker_core.schema import POSITION, REQUEST_ID, FeatureSpec
    from trainer.examples import read_split, write_shards

    shutil.copytree(source, target)
    spec = FeatureSpec.load(target)
    for split in ("train", "eval"):
        columns = read_split(target, split, spec)
        order = np.lexsort((sort_key(columns), columns[REQUEST_ID]))
        columns = {key: values[order] for key, values in columns.items()}
        _, first, sizes = np.unique(columns[REQUEST_ID], return_index=True, return_counts=True)
        columns[POSITION] = np.arange(len(order)) - np.repeat(first, sizes)
        shutil.rmtree(target / split)
        write_shards(
            ({key: values[i] for key, values in columns.items()} for i in range(len(order))), target, split, spec
        )
    return target
