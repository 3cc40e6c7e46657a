"""`make benchmark` (benchmarks/run_all.py) runs every benchmark module with no arguments."""

from __future__ import annotations

import ast

import pytest

from benchmarks.run_all import BENCHMARKS_DIR, available


def _required_options(source: str) -> list[str]:
    """The options of ``add_argument`` calls in ``source`` that are declared ``required=True``."""
    required = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
            keywords = {keyword.arg: keyword.value for keyword in node.keywords}
            flag = keywords.get("required")
            if isinstance(flag, ast.Constant) and flag.value is True:
                required.append(ast.literal_eval(node.args[0]))
    return required


def test_the_required_option_finder_sees_one():
    source = 'parser.add_argument("--examples", required=True)\nparser.add_argument("--out", required=False)'
    assert _required_options(source) == ["--examples"]


@pytest.mark.parametrize("area", available())
def test_every_benchmark_runs_without_arguments(area):
    source = (BENCHMARKS_DIR / f"bench_{area}.py").read_text()
    assert _required_options(source) == [], f"bench_{area} needs arguments, so `make benchmark` cannot run it"


def test_module_swap_takes_a_model_and_its_examples_together_or_neither(capsys):
    from benchmarks.bench_module_swap import main

    with pytest.raises(SystemExit) as stopped:
        main(["--examples", "work/examples"])
    assert stopped.value.code == 2
    assert "give both --model-dir and --examples" in capsys.readouterr().err
