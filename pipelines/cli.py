"""The ``ranker`` command line: one subcommand per pipeline step and per tool.

Each subcommand lives next to the code it runs, in a module that defines::

    HELP = "one line for `ranker --help`"
    def add_arguments(parser: argparse.ArgumentParser) -> None: ...
    def main(args: argparse.Namespace) -> int: ...
    RENAMED_FLAGS = {"--old-flag": "--new-flag"}   # optional: deprecated spellings still accepted

Modules are imported only when their subcommand runs, so ``ranker --help``
stays fast (TensorFlow takes seconds to import).
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import importlib.util
import logging
import re
import sys
from typing import NoReturn

from ranker_core.cli_support import UserError, deprecated

# subcommand -> (module, one-line help shown by `ranker --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "simulate": ("components.data.simulator_cli", "generate marketplace impression logs with known ground truth"),
    "validate-spec": ("components.data.validate_cli", "check a dataset spec against its data before any work"),
    "extract-features": (
        "components.features.cli",
        "turn impression logs into point-in-time-correct TFRecord examples",
    ),
    "train": ("trainer.cli", "train and export the MMoE ranker (or another architecture)"),
    "tune": ("trainer.tune_cli", "search the ranker's configuration on the eval split (Optuna), write the chosen one"),
    "train-baseline": ("components.baseline.cli", "train the per-module and global LightGBM rankers"),
    "evaluate": ("components.evaluation.cli", "NDCG report of every model against the GBDT baseline, and the blessing"),
    "register": ("components.registry.cli", "register a blessed model in MLflow or Vertex AI Model Registry"),
    "deploy": ("components.registry.deploy_cli", "deploy a registered version: all traffic or a canary share"),
    "promote": ("components.registry.promote_cli", "send all traffic to the canary, undeploy the version it replaces"),
    "rollback": ("components.registry.rollback_cli", "send all traffic back to the previous champion"),
    "run": ("pipelines.run_cli", "run the whole DAG locally with kfp.local"),
    "runs": ("components.tracking.cli", "list past pipeline runs (id, date, data, verdict, lift, registered version)"),
    "compile": ("pipelines.compile_cli", "write the pipeline YAML for Vertex AI Pipelines or Kubeflow Pipelines"),
    "submit": ("pipelines.submit_cli", "submit a pipeline run to Vertex AI or a Kubeflow Pipelines host"),
    "schedule": ("pipelines.schedule_cli", "create, list, pause, resume and delete scheduled runs"),
    "materialize": ("components.features.materialize_cli", "push the entity snapshot to the Feast online store"),
    "skew-check": ("serving.skew_check_cli", "check the online feature path against the extraction and offline scores"),
    "batch-rank": (
        "batch.cli",
        "rank a candidates table in bulk with the champion (Beam RunInference), top-k per user",
    ),
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


class RankerArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors suggest the closest subcommand or flag ("did you mean")."""

    def parse_known_args(
        self, args: list[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self.seen = list(sys.argv[1:] if args is None else args)  # a subcommand's parser gets its own words
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}{self.suggestion(message)}\n")

    def suggestion(self, message: str) -> str:
        """`` (did you mean --x?)`` for the first unknown word of ``message`` with a close known name, else ``""``.

        A missing required flag is reported before an unknown one, so then the unknown flags given are tried.
        """
        choices = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choices:  # the closest of the argument's own choices (a subcommand's name, or a flag's value)
            close = difflib.get_close_matches(choices.group(1), re.findall(r"'([^']*)'", choices.group(2)), n=1)
            return f" (did you mean {close[0]}?)" if close else ""
        words = _unknown_words(message)
        if message.startswith("the following arguments are required"):
            known = set(self.known_names())
            words = [word.partition("=")[0] for word in getattr(self, "seen", []) if word.startswith("-")]
            words = [word for word in words if word not in known]
        for word in words:
            close = difflib.get_close_matches(word, self.known_names(), n=1, cutoff=0.6)
            if close:
                return f" (did you mean {close[0]}?)"
        return ""

    def known_names(self) -> list[str]:
        """Every flag and subcommand of this parser and of its subcommands."""
        names = list(self._option_string_actions)
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, parser in action.choices.items():
                    names.append(name)
                    names.extend(parser.known_names() if isinstance(parser, RankerArgumentParser) else ())
        return names


def _unknown_words(message: str) -> list[str]:
    """The subcommand or flags an argparse error message complains about."""
    choice = re.search(r"invalid choice: '([^']*)'", message)
    if choice:
        return [choice.group(1)]
    if message.startswith("unrecognized arguments:"):
        words = message.removeprefix("unrecognized arguments:").split()
        return [word.partition("=")[0] for word in words if word.startswith("-")]
    return []


def build_parser(commands: dict[str, tuple[str, str]]) -> RankerArgumentParser:
    parser = RankerArgumentParser(
        prog="ranker",
        description="Build, judge, register and serve the canonical multi-task ranker.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in commands.items():
        subparsers.add_parser(name, help=help_text, description=help_text, add_help=False)
    return parser


def command_parser(command: str, module: object) -> RankerArgumentParser:
    """The full parser of one subcommand (``ranker [-v] COMMAND ...``)."""
    parser = RankerArgumentParser(prog="ranker", description="Build, judge, register and serve the ranker.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sub_parser = sub.add_parser(
        command,
        help=module.HELP,
        description=module.__doc__ or module.HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    module.add_arguments(sub_parser)
    return parser


def rename_flags(argv: list[str], renamed: dict[str, str]) -> list[str]:
    """``argv`` with deprecated flag spellings replaced by their new names (a warning each); stops at ``--``."""
    out: list[str] = []
    for index, arg in enumerate(argv):
        if arg == "--":
            return out + argv[index:]
        flag, sep, value = arg.partition("=")
        if flag in renamed:
            deprecated(flag, renamed[flag])
            arg = renamed[flag] + sep + value
        out.append(arg)
    return out


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions shown as one line without a traceback: :class:`UserError`, missing Google credentials or project
    (``GoogleAuthError``) and a Google API's refusal or absence (``GoogleAPIError``: 403, 404, unreachable): they
    are the user's environment, not a bug."""
    try:
        from google.api_core.exceptions import GoogleAPIError
        from google.auth.exceptions import GoogleAuthError
    except ImportError:
        return (UserError,)
    return (UserError, GoogleAuthError, GoogleAPIError)


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
    try:  # building the parser reads the settings' environment variables (the help shows their values)
        parser = command_parser(known.command, module)
        args = parser.parse_args(rename_flags(argv, getattr(module, "RENAMED_FLAGS", {})))
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        if not args.verbose:  # Beam's progress lines (type hints converted, shards renamed, ...) only with -v
            logging.getLogger("apache_beam").setLevel(logging.WARNING)
        return int(module.main(args) or 0)
    except user_errors() as error:
        print(f"ranker {known.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
