"""Serve the test split's first requests with ids only through the feature store and compare with the offline path.

Example::

    ranker skew-check --examples work_dir/latest/examples --model-uri work_dir/latest/model \\
        --feature-store work_dir/latest/feature_repo

Each served feature is compared on the rows where the store must reproduce it (its entities unchanged
since the cutoff; see :mod:`serving.skew_check`). Exits 1 when one differs from the extraction's, a
prediction differs by 1e-5 or more, or nothing could be compared. Exits 2, with one line and before the
model loads, when the inputs cannot be checked: examples without a feature spec or an entity snapshot (a
dataset spec without ``history``), a ``--model-uri`` that holds no exported model, a model whose features
are not the examples' (another dataset's), or a ``--feature-store`` that is not a repo ``ranker
materialize`` wrote or does not fit the model (as ``ranker serve`` refuses it). A model trained on other
examples with the same features is checked (the log says so).
"""

from __future__ import annotations

import argparse
import json

# the test split's first requests served (the earliest have the most entities unchanged since the cutoff); here,
# not in serving.skew_check, so that building the help imports no pandas
MAX_REQUESTS = 2000

HELP = "check that the online feature path reproduces the extraction's features and offline predictions"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--examples", required=True, help="extracted examples folder (test split, entities/)")
    parser.add_argument("--model-uri", required=True, help="the exported model folder")
    parser.add_argument("--feature-store", required=True, help="the Feast repo ranker materialize wrote")
    parser.add_argument(
        "--max-requests",
        type=int,
        default=MAX_REQUESTS,
        help=f"the test split's first requests to serve [default: {MAX_REQUESTS}]",
    )


def main(args: argparse.Namespace) -> int:
    from serving.skew_check import skew_check

    report = skew_check(args.examples, args.model_uri, args.feature_store, args.max_requests)
    print(json.dumps(report.to_dict(), indent=2))
    return 0 if report.ok else 1
