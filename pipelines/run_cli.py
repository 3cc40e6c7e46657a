"""Run the whole DAG on this machine with kfp.local and print what it found.

The embedded default runs every step as a subprocess of this virtual
environment; ``--docker`` runs each step in the project image (``--image``, env RANKER_IMAGE).
Steps whose inputs did not change since an earlier run are reused from the
cache under ``<work-dir>/pipeline_root/.kfp_cache`` (``--no-enable-caching``
to recompute). Examples::

    ranker run                                   # simulated marketplace, ./work_dir
    ranker run --n-impressions 20000 --model-config '{"epochs": 1}'
    ranker run --data-uri 'logs/*.parquet' --dataset-spec my_spec.yaml
    ranker run --data-uri 'logs/*.parquet' --dataset-spec my_spec.yaml --oracle truth/   # your data's oracle
    ranker run --docker

The run ends with NDCG per module and task of the MMoE, the per-module and
global GBDT (and the oracles on simulated data or with ``--oracle``), the
verdict with its reasons, the registered version and the paths of the report
and the artifacts. Not being blessed is a valid outcome (exit 0) unless
``--fail-if-not-blessed`` (exit 3). A failed step exits 1; Ctrl-C ends the run's
MLflow run as KILLED and exits 130 (the finished steps are cached: rerun to resume).
"""

from __future__ import annotations

import argparse
import logging
import sys

from pipelines.config import PipelineSettings, add_options

HELP = "run the whole DAG locally with kfp.local"
NOT_BLESSED_EXIT = 3
INTERRUPTED_EXIT = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C
logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, ("data", "step configurations", "local execution", "image"))
    parser.add_argument("--echo-kfp-logs", action="store_true", help="also print kfp.local's own log lines")


def main(args: argparse.Namespace) -> int:
    from pipelines.local_run import RunInterrupted, StepProgress, run_locally
    from pipelines.step_errors import StepFailedError
    from pipelines.summary import format_summary

    settings = PipelineSettings.from_args_or_exit(args, "run")
    try:
        result = run_locally(settings, StepProgress(sys.stderr, echo=args.echo_kfp_logs))
    except ValueError as error:  # a setting the local runner cannot honour
        print(f"ranker run: {error}", file=sys.stderr)
        return 2
    except StepFailedError as error:  # each failed step's error, and where their tracebacks are
        print(error.report(prefix="ranker run: "), file=sys.stderr)
        return 1
    except RuntimeError as error:  # kfp.local failed outside the steps
        logger.error("the pipeline failed: %s", error)
        return 1
    except KeyboardInterrupt as error:  # RunInterrupted once a step ran: its MLflow run is ended KILLED
        print(f"ranker run: {error if isinstance(error, RunInterrupted) else 'interrupted'}", file=sys.stderr)
        return INTERRUPTED_EXIT
    print(format_summary(result))
    if settings.fail_if_not_blessed and not result.blessed:
        return NOT_BLESSED_EXIT
    return 0
