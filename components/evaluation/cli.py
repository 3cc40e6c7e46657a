"""NDCG report of every model against the GBDT baseline, and the blessing.

Example::

    ranker evaluate --examples work/examples --model work/model --baseline work/baseline --out work/report
    ranker evaluate --examples work/examples --model mmoe=work/model --model ple=work/model_ple \\
        --baseline work/baseline --out work/report --oracle work/data/oracle --champion work/champion \\
        --primary-task favorite --primary-metric ndcg@10 --tolerance 0.02

Writes ``<out>/metrics.json``, ``<out>/report.html`` and ``<out>/blessing.json``
and prints the primary metric per model and the verdict. Every field of
``components.evaluation.evaluate.EvaluationConfig`` can be set in
``--config``; the flags override it. ``--fail-if-not-blessed`` exits 3
when the candidate is refused (for scripts and CI).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

from ranker_core.cli_support import REMOTE_SCHEMES, InvalidValueError, require_path

HELP = "NDCG report of every model against the GBDT baseline, and the blessing"
DEFAULT_MODEL_NAME = "mmoe"
NOT_BLESSED_EXIT = 3
RENAMED_FLAGS = {"--config-json": "--config", "--fail-unless-blessed": "--fail-if-not-blessed"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--examples", required=True, help="extracted examples folder (with feature_spec.json)")
    parser.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="[NAME=]DIR",
        help=f"exported model to evaluate; repeat for alternatives; the first is the candidate "
        f"(an unnamed model is called {DEFAULT_MODEL_NAME!r})",
    )
    parser.add_argument("--baseline", required=True, help="folder written by `ranker train-baseline`")
    parser.add_argument("--out", required=True, help="report folder")
    parser.add_argument(
        "--oracle",
        default=None,
        help="oracle parquet folder, file or glob: the simulator's, or your own p_<task> per request and item",
    )
    parser.add_argument("--champion", default=None, help="the current champion's model folder")
    parser.add_argument(
        "--config", default="{}", help="EvaluationConfig overrides: a JSON object or @file.json (default: {})"
    )
    parser.add_argument("--primary-task", help="task (or 'engagement') the blessing judges (default: favorite)")
    parser.add_argument("--primary-metric", help="ndcg@<k>, ndcg or auc (default: ndcg@10)")
    parser.add_argument("--tolerance", type=float, help="largest relative per-module regression (default: 0.02)")
    parser.add_argument("--bootstrap-samples", type=int, help="bootstrap resamples (default: 1000)")
    parser.add_argument("--split", help="split to evaluate (default: test)")
    parser.add_argument("--seed", type=int, help="seed of the random ranker and the resampling (default: 0)")
    parser.add_argument("--fail-if-not-blessed", action="store_true", help=f"exit {NOT_BLESSED_EXIT} when refused")


def parse_models(values: list[str]) -> dict[str, str]:
    """``["dir", "ple=dir2"]`` -> ``{"mmoe": "dir", "ple": "dir2"}``; a repeated name is an error."""
    models: dict[str, str] = {}
    for value in values:
        name, separator, path = value.partition("=")
        if not separator:
            name, path = DEFAULT_MODEL_NAME, value
        if not name or not path:
            raise InvalidValueError(f"--model {value!r}: expected DIR or NAME=DIR")
        if name in models:
            raise InvalidValueError(f"--model: the name {name!r} is given twice; name them NAME=DIR")
        models[name] = path
    return models


def check_out(out: str, inputs: Mapping[str, str | None]) -> None:
    """Refuse an ``--out`` that is a file, or that is or lies inside an input folder (it would overwrite it)."""
    if out.startswith(REMOTE_SCHEMES):
        return
    if Path(out).exists() and not Path(out).is_dir():
        raise InvalidValueError(f"--out {out} is a file, not a folder")
    report = Path(out).resolve()
    for flag, path in inputs.items():
        if not path or path.startswith(REMOTE_SCHEMES):
            continue
        folder = _input_folder(path)
        if report == folder or folder in report.parents:
            where = "is" if report == folder else "lies inside"
            raise InvalidValueError(f"--out {out} {where} the input {flag} {path}: it would overwrite it")


def _input_folder(path: str) -> Path:
    """The folder an input names: itself, or the folder before the first wildcard of a glob."""
    return Path(path.split("*", 1)[0]).parent.resolve() if "*" in path else Path(path).resolve()


def main(args: argparse.Namespace) -> int:
    from components.evaluation.evaluate import EvaluationConfig, evaluate
    from components.evaluation.report import summary_table

    flags = {
        "primary_task": args.primary_task,
        "primary_metric": args.primary_metric,
        "tolerance": args.tolerance,
        "bootstrap_samples": args.bootstrap_samples,
        "split": args.split,
        "seed": args.seed,
    }
    config = EvaluationConfig.from_sources(args.config, flags)
    models = parse_models(args.model)
    inputs = {"--examples": args.examples, "--baseline": args.baseline}
    inputs |= {f"--model {name}": path for name, path in models.items()}
    check_out(args.out, {**inputs, "--champion": args.champion, "--oracle": args.oracle})
    require_path(args.examples, "--examples")
    result = evaluate(
        config,
        args.examples,
        models,
        args.baseline,
        args.out,
        oracle_uri=args.oracle,
        champion=args.champion,
    )
    print(summary_table(result))
    print(f"\nreport: {args.out}/report.html")
    return NOT_BLESSED_EXIT if args.fail_if_not_blessed and not result.blessing.blessed else 0
