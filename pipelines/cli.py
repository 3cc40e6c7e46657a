"""The ``ranker`` command line: one subcommand per pipeline step and per tool.

Each subcommand lives next to the code it runs, in a module that defines::

    HELP = "one line for `ranker --help`"
    def add_arguments(parser: argparse.ArgumentParser) -> None: ...
    def main(args: argparse.Namespace) -> int: ...

Modules are imported only when their subcommand runs, so ``ranker --help``
stays fast (TensorFlow takes seconds to import).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys

# subcommand -> (module, one-line help shown by `ranker --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "simulate": ("components.data.simulator_cli", "generate marketplace impression logs with known ground truth"),
    "validate-spec": ("components.data.validate_cli", "check a dataset spec against its data before any work"),
    "extract-features": (
        "components.features.cli",
        "turn impression logs into point-in-time-correct TFRecord examples",
    ),
    "train": ("trainer.cli", "train and export the MMoE ranker (or another architecture)"),
    "train-baseline": ("components.baseline.cli", "train the per-module and global LightGBM rankers"),
    "evaluate": ("components.evaluation.cli", "NDCG report of every model against the GBDT baseline, and the blessing"),
    "register": ("components.registry.cli", "register a blessed model in MLflow or Vertex AI Model Registry"),
    "run": ("pipelines.run_cli", "run the whole DAG locally with kfp.local"),
    "compile": ("pipelines.compile_cli", "write the pipeline YAML for Vertex AI Pipelines or Kubeflow Pipelines"),
    "submit": ("pipelines.submit_cli", "submit a pipeline run to Vertex AI or a Kubeflow Pipelines host"),
    "schedule": ("pipelines.schedule_cli", "create, list, pause, resume and delete scheduled runs"),
    "serve": ("serving.cli", "serve a trained ranker over HTTP (Vertex AI and KServe v1 protocol)"),
    "loadtest": ("serving.loadtest_cli", "open-loop load test of a prediction endpoint with latency percentiles"),
}


def _available_commands() -> dict[str, tuple[str, str]]:
    """The registered subcommands whose module is part of this install."""
    return {name: entry for name, entry in COMMANDS.items() if _module_exists(entry[0])}


def _module_exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def build_parser(commands: dict[str, tuple[str, str]]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ranker",
        description="Build, judge, register and serve the canonical multi-task ranker.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in commands.items():
        subparsers.add_parser(name, help=help_text, description=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    commands = _available_commands()
    parser = build_parser(commands)
    # First pass: find the subcommand without importing anything heavy.
    known, _ = parser.parse_known_args([arg for arg in argv if arg not in ("-h", "--help")] or argv[:1])
    if known.command is None:
        parser.parse_args(argv)  # prints --help or the usage error
        parser.print_help()
        return 2
    module = importlib.import_module(commands[known.command][0])
    full = argparse.ArgumentParser(prog="ranker", description=parser.description)
    full.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = full.add_subparsers(dest="command", metavar="COMMAND", required=True)
    command_parser = sub.add_parser(
        known.command,
        help=module.HELP,
        description=module.__doc__ or module.HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    module.add_arguments(command_parser)
    args = full.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return int(module.main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
