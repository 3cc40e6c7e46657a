"""Serve the test split's rows with ids only through the feature store and compare with the offline path.

Example::

    ranker skew-check --examples work_dir/examples --model-uri work_dir/model --feature-store work_dir/feature_repo

Exits 1 when a served feature differs from the extraction's or a prediction by 1e-5 or more.
"""

from __future__ import annotations

import argparse
import json

HELP = "check that the online feature path reproduces the extraction's features and offline predictions"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--examples", required=True, help="extracted examples folder (test split, entities/)")
    parser.add_argument("--model-uri", required=True, help="the exported model folder")
    parser.add_argument("--feature-store", required=True, help="the Feast repo ranker materialize wrote")


def main(args: argparse.Namespace) -> int:
    from serving.skew_check import skew_check

    report = skew_check(args.examples, args.model_uri, args.feature_store)
    print(json.dumps(report.to_dict(), indent=2))
    return 0 if report.ok else 1
