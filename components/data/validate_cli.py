"""Check a dataset spec, and the data it describes, before any work.

Examples::

    ranker validate-spec --dataset-spec my_spec.yaml
    ranker validate-spec --dataset-spec my_spec.yaml --data-uri 'gs://my-bucket/logs/*.parquet'
    ranker validate-spec --dataset-spec kuairand --data-uri ../shared/datasets/kuairand

Prints OK and what the spec describes, or every problem (the spec file, the
data file and the column) and exits with status 1. Sampled rows that extraction
will send to the dead letters (text that is not UTF-8, an impossible timestamp,
a label that is not 0/1, ...) are notes after the OK: the data can run, and
extraction fails only when their share exceeds its threshold.
"""

from __future__ import annotations

import argparse

from components.data.spec import SHIPPED_SPECS

HELP = "check a dataset spec against its data before any work"
RENAMED_FLAGS = {"--data": "--data-uri", "--spec": "--dataset-spec"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset-spec", required=True, help=f"{', '.join(SHIPPED_SPECS)}, a YAML path or a gs:// URI")
    parser.add_argument("--data-uri", default="", help="file, glob, folder or bq://... to check the spec against")


def main(args: argparse.Namespace) -> int:
    from components.data.spec import DatasetSpecError, load_dataset_spec
    from components.data.validation import DataCheck, inspect_data

    try:
        spec = load_dataset_spec(args.dataset_spec)
    except DatasetSpecError as error:
        print(error)
        return 1
    check = inspect_data(spec, args.data_uri) if args.data_uri else DataCheck()
    if check.problems:
        print(f"{len(check.problems)} problem(s):")
        print("\n".join(f"  - {problem}" for problem in check.problems))
        return 1
    print(f"OK: {spec.origin} ({spec.name})")
    print(f"  tasks     {', '.join(spec.task_names)}")
    print(f"  columns   {len(spec.required_columns)} ({', '.join(spec.required_columns)})")
    print(f"  groups    {'by ' + str(spec.columns.request_id) if spec.has_groups else 'none (AUC only)'}")
    print(f"  history   {'on' if spec.history_enabled else 'off'}; split by {spec.split.by}")
    if args.data_uri:
        print(f"  data      {args.data_uri}: columns and types fit")
    if check.notes:
        print(f"{len(check.notes)} note(s): sampled rows that extraction will send to the dead letters")
        print("\n".join(f"  - {note}" for note in check.notes))
    return 0
