"""Rank a candidates table in bulk with the champion (email, push): top-k per user to Parquet or BigQuery.

Examples::

    # the simulator's email candidates (the test split of extracted examples), the MLflow champion
    ranker batch-rank --candidates work_dir/latest/examples --split test --campaign email_digest --out email_top10
    ranker batch-rank --candidates 'campaigns/*.parquet' --model-uri work_dir/latest/model --top-k 20 --out ranked/
    ranker batch-rank --candidates bq://my-project.crm.push_candidates --out bq://my-project.crm.push_top10 \\
        --dead-letter-out gs://my-bucket/batch/dead_letter --model-uri gs://my-bucket/models/42 \\
        --runner DataflowRunner --project my-project --region europe-west4 --temp-location gs://my-bucket/tmp

The candidates table holds one row per (user, campaign or module, listing)
with the model's raw features (the columns ``ranker serve`` accepts), or, with
``--feature-store`` (the Feast repo ``ranker materialize`` wrote), only the ids
and request context: the stored features are joined as ``ranker serve
--feature-store`` joins them. Rows
missing the user, listing or campaign, or with a value that cannot be read,
go to <out>/dead_letter/*.jsonl (the ranking: <out>/ranking/*.parquet) with their file, row and reason. The
model's module is read from its module role column (e.g. tab), else module_name, else it is the model's only
module. A run that read rows but ranked none (every row a dead letter, or none of --campaign), or read no
row at all, prints the summary and one line saying why, and exits 1. Every flag
defaults to an environment variable (in brackets); any Beam flag not listed
can follow a lone `--`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from typing import TYPE_CHECKING

from components.features.options import BeamOptions, add_beam_arguments, beam_options_from_args

if TYPE_CHECKING:
    from batch.config import BatchRankConfig

BEAM_DEFAULTS = {"direct_running_mode": "in_memory"}  # see _beam_options

HELP = "rank a candidates table in bulk with the champion (Beam RunInference), top-k per user"

# flag -> (BatchRankConfig field, type, help)
_FLAGS: dict[str, tuple[str, type, str]] = {
    "--candidates": ("candidates", str, "candidates: file, glob, folder or bq://project.dataset.table"),
    "--format": ("candidates_format", str, "parquet, csv, tfrecord or bigquery (default: from the URI)"),
    "--split": ("split", str, "with an extracted-examples folder: the split to rank (e.g. test)"),
    "--campaign": ("campaign", str, "rank only the rows of this campaign / module (e.g. email_digest)"),
    "--model-uri": ("model_uri", str, "local folder, gs:// folder or models:/<name>@<alias>"),
    "--out": ("out", str, "output folder (Parquet) or bq://project.dataset.table"),
    "--dead-letter-out": ("dead_letter_out", str, "folder for the rows that cannot be ranked"),
    "--top-k": ("top_k", int, "listings per user (and campaign)"),
    "--campaign-column": (
        "campaign_column",
        str,
        "column of the campaign or module (@module: the model's module role, e.g. tab, else module_name; "
        "'' ranks per user only)",
    ),
    "--user-column": ("user_column", str, "user id column (default: the model's user-id role)"),
    "--item-column": ("item_column", str, "listing id column (default: the model's item-id role)"),
    "--batch-size": ("batch_size", int, "candidates per model call"),
    "--feature-store": ("feature_store", str, "a Feast repo (ranker materialize): stored features come from it"),
    "--op-threads": ("op_threads", int, "TensorFlow threads per worker process (0: cores // local worker processes)"),
}
_GROUPED = "grouped_by_user"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from batch.config import BatchRankConfig

    for flag, (field, kind, text) in _FLAGS.items():
        env = BatchRankConfig.env_names(field)[0][0]
        default = BatchRankConfig.model_fields[field].default
        shown = f"{env}; default {default!r}"
        parser.add_argument(flag, dest=field, type=kind, default=None, help=f"{text} [{shown}]")
    parser.add_argument(
        "--grouped-by-user",
        dest=_GROUPED,
        default=None,
        action=argparse.BooleanOptionalAction,
        help="each user's candidates are consecutive rows (the table is sorted or grouped by user): "
        "only users at chunk edges are shuffled [RANKER_BATCH_GROUPED_BY_USER; default False]",
    )
    parser.add_argument("--tracking-uri", default="", help="MLflow store of models:/ URIs [MLFLOW_TRACKING_URI]")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("beam_args", nargs=argparse.REMAINDER, help="more Beam flags after `--`")
    add_beam_arguments(parser, BEAM_DEFAULTS)


def main(args: argparse.Namespace) -> int:
    from batch.pipeline import batch_rank

    config = batch_config(args)
    if not args.verbose:  # the local runner's workers log every start and stop at INFO
        logging.getLogger("apache_beam.runners.portability.local_job_service").setLevel(logging.WARNING)
    extra = tuple(arg for arg in args.beam_args if arg != "--")
    with _registry(args.tracking_uri) if config.model_uri.startswith("models:/") else contextlib.nullcontext():
        summary = batch_rank(config, _beam_options(args, extra))
    print(json.dumps(summary.to_dict(), indent=2) if args.json else summary.format())
    if summary.problem:  # a scheduler's run that ranked nothing fails (exit 1; a mistake in the flags is 2)
        print(f"ranker batch-rank: {summary.problem}", file=sys.stderr)
        return 1
    return 0


def batch_config(args: argparse.Namespace) -> BatchRankConfig:
    """The run's settings: the flags, else the environment, else the defaults."""
    from batch.config import BatchRankConfig

    fields = (*(field for field, _, _ in _FLAGS.values()), _GROUPED)
    return BatchRankConfig.load({field: getattr(args, field) for field in fields})


def _beam_options(args: argparse.Namespace, extra: tuple[str, ...]) -> BeamOptions:
    """The Beam flags; locally, batch ranking runs in one process unless a flag or RANKER_BEAM_MODE says otherwise.

    TensorFlow already uses every core inside one model call, and each worker process starts and loads its
    own model (about 6 s on 2 cores): 1M candidates took 5.3 s in one process and 11.7 s with 2 workers;
    the workers win from about 4M (8M: 28-32 s against 33-38 s, docs/benchmarks.md).
    """
    return beam_options_from_args(args, extra, BEAM_DEFAULTS)


def _registry(tracking_uri: str) -> contextlib.AbstractContextManager:
    """MLflow pointed at the registry for a block (flag, else MLFLOW_TRACKING_URI, else ``work_dir``'s store)."""
    from components.registry.core import RegistryConfig
    from ranker_core.serving import global_tracking_uri

    return global_tracking_uri(RegistryConfig.from_env(tracking_uri=tracking_uri).resolved_tracking_uri)
