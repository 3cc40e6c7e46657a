"""Serve the test split's rows with ids only through the feature store and compare with the offline path.

Example::

    ranker skew-check --examples work_dir/latest/examples --model-uri work_dir/latest/model \\
        --feature-store work_dir/latest/feature_repo

Exits 1 when a served feature differs from the extraction's or a prediction by 1e-5 or more, or no test row
qualifies. Exits 2, with one line and before the model loads, when the inputs cannot be checked: examples
without a feature spec or an entity snapshot (a dataset spec without ``history``), a ``--model-uri`` that holds
no exported model, a model whose features are not the examples' (another dataset's), or a ``--feature-store``
that is not a repo ``ranker materialize`` wrote or does not fit the model (as ``ranker serve`` refuses it).
A model trained on other examples with the same features is checked (the log says so).
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
