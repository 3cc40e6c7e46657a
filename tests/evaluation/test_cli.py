import pytest

from components.evaluation.cli import parse_models


def test_models_are_named_or_default_to_mmoe():
    assert parse_models(["work/model", "ple=work/ple"]) == {"mmoe": "work/model", "ple": "work/ple"}


@pytest.mark.parametrize("values", [["a", "b"], ["x=a", "x=b"], ["=a"], ["x="]])
def test_ambiguous_or_empty_models_are_refused(values):
    with pytest.raises(SystemExit, match="--model"):
        parse_models(values)
