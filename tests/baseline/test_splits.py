"""The baseline refuses, in one line and before reading or training anything, examples without a split it needs."""

import shutil
from pathlib import Path

import pytest

from components.baseline import gbdt
from components.baseline.gbdt import BaselineConfig, train_baseline
from ranker_core.cli_support import MissingInputError
from tests.baseline.conftest import TINY_BASELINE


@pytest.mark.parametrize(
    ("missing", "why"),
    [("eval", "the baselines' early stopping and tuning need it"), ("train", "nothing to train the baselines on")],
)
def test_examples_without_a_needed_split_fail_before_any_read(synthetic_examples, tmp_path, monkeypatch, missing, why):
    examples = tmp_path / "examples"
    shutil.copytree(
        synthetic_examples, examples, ignore=lambda folder, _: [missing] if Path(folder) == synthetic_examples else []
    )

    def no_read(*_args, **_kwargs):
        raise AssertionError("a split was read before the splits were checked")

    monkeypatch.setattr(gbdt._Split, "read", no_read)
    with pytest.raises(MissingInputError) as raised:
        train_baseline(BaselineConfig(**TINY_BASELINE), examples, tmp_path / "baseline")
    assert str(raised.value) == f"{examples} has no {missing} split: {why}; extract the features again"
    assert not (tmp_path / "baseline").exists()
