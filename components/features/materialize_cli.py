"""Push an extraction's entity snapshot to the Feast online store, tagged with the model version.

Examples::

    ranker materialize --examples work_dir/latest/examples --feature-store work_dir/feature_repo --model-version 3
    RANKER_FEATURE_STORE=gs-repo/ ranker materialize --examples gs://bucket/run/examples

A folder without feature_store.yaml gets the embedded default (file offline store,
SQLite online store); write your own for BigQuery / Bigtable / Datastore.
"""

from __future__ import annotations

import argparse
import json

HELP = "push the entity snapshot of an extraction to the Feast online store (ranker serve --feature-store)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--examples", required=True, help="extracted examples folder (with entities/)")
    parser.add_argument(
        "--feature-store",
        dest="repo",
        default=None,
        help="Feast repo folder [RANKER_FEATURE_STORE; default ./feature_repo]",
    )
    parser.add_argument("--model-version", default=None, help="tag the views with it [RANKER_MODEL_VERSION]")


def main(args: argparse.Namespace) -> int:
    from components.features.feature_store import MaterializeConfig, materialize

    flags = {"examples": args.examples, "repo": args.repo, "model_version": args.model_version}
    summary = materialize(MaterializeConfig.load({key: value for key, value in flags.items() if value is not None}))
    print(json.dumps(summary, indent=2))
    return 0
