"""Submit a pipeline run to Vertex AI Pipelines (default) or a Kubeflow Pipelines host (--kfp-host).

The pipeline is compiled from the flags (or ``--template`` names a YAML from
``ranker compile``); the run's parameters come from the same flags. A remote
run cannot use the local SQLite registry: use ``--registry vertex`` or an
MLflow ``--tracking-uri`` the run can reach. Examples::

    ranker submit --project my-project --location europe-west4 \\
        --pipeline-root gs://my-bucket/runs --registry vertex \\
        --service-account pipelines@my-project.iam.gserviceaccount.com \\
        --data-uri 'gs://my-bucket/logs/*.parquet' --dataset-spec gs://my-bucket/spec.yaml \\
        --image europe-west4-docker.pkg.dev/my-project/ranker/mmoe-ranker:1
    ranker submit --kfp-host https://kfp.example.com --tracking-uri http://mlflow:5000
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from pipelines.config import PipelineSettings, add_options

HELP = "submit a pipeline run to Vertex AI or a Kubeflow Pipelines host"


def add_template_arguments(parser: argparse.ArgumentParser) -> None:
    """``--template``, then the data, configuration, resource and submission flags."""
    parser.add_argument("--template", default="", help="a compiled pipeline YAML (default: compile from the flags)")
    add_options(parser, ("data", "step configurations", "image", "resources (compile time)", "submission"))
    parser.add_argument(
        "--enable-caching",
        dest="enable_caching",
        default=None,
        action=argparse.BooleanOptionalAction,
        help="--no-enable-caching recomputes every step "
        "[env RANKER_ENABLE_CACHING; default: each step's compiled choice]",
    )


def template_path(args: argparse.Namespace, settings: PipelineSettings, folder: str) -> Path:
    """The YAML to submit: ``--template``, or the pipeline compiled into ``folder`` (its image must name a registry)."""
    from pipelines.compile_cli import compile_named

    if not args.template:
        settings.check_image()
    pipeline = getattr(args, "pipeline", "training")
    return Path(args.template) if args.template else compile_named(pipeline, settings, Path(folder) / "pipeline.yaml")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_template_arguments(parser)


def main(args: argparse.Namespace) -> int:
    from pipelines.remote import submit_run

    settings = PipelineSettings.from_args_or_exit(args, "submit")
    with tempfile.TemporaryDirectory() as folder:
        name = submit_run(settings, template_path(args, settings, folder))
    print(f"submitted {name}")
    return 0
