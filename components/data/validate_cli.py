"""Check a dataset spec, and the data it describes, before any work.

Examples::

    ranker validate-spec --dataset-spec my_spec.yaml
    ranker validate-spec --dataset-spec my_spec.yaml --data-uri 'gs://my-bucket/logs/*.parquet'
    ranker validate-spec --dataset-spec kuairand --data-uri ../shared/datasets/kuairand

Prints OK and what the spec describes, or every problem (the spec file, the
data file and the column) and exits with status 1. Sampled rows that extraction
will send to the dead letters (text that is not UTF-8, an impossible timestamp,
a label that is not 0/1, ...) are notes after the OK: the data can run, and
extraction fails only when their share exceeds its threshold. When the sampled
share already exceeds it (``--dead-letter-threshold``, ``RANKER_DEAD_LETTER_THRESHOLD``,
default 0.01, as for the run), that is a problem: the extraction would fail.
"""

from __future__ import annotations

import argparse
import os

from components.data.spec import SHIPPED_SPECS
from components.data.validation import DEAD_LETTER_THRESHOLD

THRESHOLD_VARIABLE = "RANKER_DEAD_LETTER_THRESHOLD"

HELP = "check a dataset spec against its data before any work"
RENAMED_FLAGS = {"--data": "--data-uri", "--spec": "--dataset-spec"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset-spec", required=True, help=f"{', '.join(SHIPPED_SPECS)}, a YAML path or a gs:// URI")
    parser.add_argument("--data-uri", default="", help="file, glob, folder or bq://... to check the spec against")
    parser.add_argument(
        "--dead-letter-threshold",
        type=float,
        default=None,
        help=f"extraction's largest tolerated share of malformed rows ({THRESHOLD_VARIABLE}, else "
        f"{DEAD_LETTER_THRESHOLD}): a larger sampled share is a problem",
    )


def dead_letter_threshold(args: argparse.Namespace) -> float:
    """The flag, else ``RANKER_DEAD_LETTER_THRESHOLD``, else extraction's default; a ValueError naming a bad one."""
    value = getattr(args, "dead_letter_threshold", None)
    if value is None:
        value = os.environ.get(THRESHOLD_VARIABLE, DEAD_LETTER_THRESHOLD)
    try:
        threshold = float(value)
    except ValueError:
        raise ValueError(f"{THRESHOLD_VARIABLE}={value!r} is not a number") from None
    if not 0 <= threshold <= 1:
        raise ValueError(f"the dead-letter threshold is a share of rows, 0 to 1, not {threshold}")
    return threshold


def main(args: argparse.Namespace) -> int:
    from components.data.spec import DatasetSpecError, load_dataset_spec
    from components.data.validation import DataCheck, inspect_data

    try:
        spec = load_dataset_spec(args.dataset_spec)
    except DatasetSpecError as error:
        print(error)
        return 1
    try:
        threshold = dead_letter_threshold(args)
    except ValueError as error:
        print(error)
        return 1
    check = inspect_data(spec, args.data_uri) if args.data_uri else DataCheck()
    problems = [*check.problems, *filter(None, [check.threshold_problem(threshold)])]
    if problems:
        print(f"{len(problems)} problem(s):")
        print("\n".join(f"  - {problem}" for problem in problems))
        _print_notes(check.notes)
        return 1
    print(f"OK: {spec.origin} ({spec.name})")
    print(f"  tasks     {', '.join(spec.task_names)}")
    print(f"  columns   {len(spec.required_columns)} ({', '.join(spec.required_columns)})")
    print(f"  groups    {'by ' + str(spec.columns.request_id) if spec.has_groups else 'none (AUC only)'}")
    print(f"  history   {'on' if spec.history_enabled else 'off'}; split by {spec.split.by}")
    if args.data_uri:
        print(f"  data      {args.data_uri}: columns and types fit")
    _print_notes(check.notes)
    return 0


def _print_notes(notes: list[str]) -> None:
    if notes:
        print(f"{len(notes)} note(s): sampled rows that extraction will send to the dead letters")
        print("\n".join(f"  - {note}" for note in notes))
