"""``ranker runs``: the past pipeline runs from the tracking store, as a table or JSON.

Examples::

    ranker runs                       # the local store, sqlite:///work_dir/mlflow.db
    ranker runs --json --limit 5
    ranker runs --tracking-uri http://mlflow:5000

One line per pipeline run, blessed or refused: its MLflow run id, start date,
data, verdict (``blessed``, ``refused``, ``running`` before an evaluation, and
``failed``/``killed`` for a run that ended so, even after its evaluation), the
lift over the per-module GBDT and the registered version. ``--json`` adds each
run's MLflow ``status`` and ``failure`` (why it failed).
"""

from __future__ import annotations

import argparse
import json

from components.registry.cli import add_registry_arguments, registry_config, require_registry
from components.tracking.runs import list_runs, runs_table
from ranker_core.cli_support import UserError

HELP = "list past pipeline runs (id, date, data, verdict, lift, registered version)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--work-dir", default=None, help="folder of the local MLflow store [env RANKER_WORK_DIR, work_dir]"
    )
    parser.add_argument("--limit", type=int, default=50, help="the newest this many runs (default 50)")
    parser.add_argument("--json", action="store_true", help="print the runs as a JSON list")
    add_registry_arguments(parser)


def main(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise UserError(f"--limit must be at least 1 (got {args.limit})")
    config = registry_config(args, work_dir=args.work_dir)
    if config.backend != "mlflow" and not config.tracking_uri:  # it would read (and create) a local store
        raise UserError(
            f"--registry {config.backend}: ranker runs lists MLflow runs; pass the pipeline's --tracking-uri (its "
            "runs are also in Vertex AI Experiments: the console, or aiplatform.get_experiment_df())"
        )
    require_registry(config.replace(backend="mlflow"))  # the runs are in MLflow whatever holds the models
    runs = list_runs(config, limit=args.limit)
    if args.json:
        print(json.dumps([run.to_dict() for run in runs], indent=2))
    elif runs:
        print(runs_table(runs))
    else:
        print(f"no runs of {config.model_name} in {config.resolved_tracking_uri}")
    return 0
