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
    ranker submit --pipeline batch --parameters '{"candidates_uri": "bq://my-project.crm.email_candidates",
        "campaign": "email_digest", "output_table": "bq://my-project.crm.email_top10"}' \
        --project my-project --pipeline-root gs://my-bucket/runs --registry vertex --image ...

With ``--pipeline batch`` the run's parameters are ``--parameters`` (a JSON
object, inline or ``@file``: :func:`pipelines.batch_pipeline.batch_parameters`),
not the training flags.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from pipelines.config import PipelineSettings, add_options
from ranker_core.cli_support import InvalidValueError, MissingInputError

HELP = "submit a pipeline run to Vertex AI or a Kubeflow Pipelines host"


def add_template_arguments(parser: argparse.ArgumentParser) -> None:
    """``--template``, then the data, configuration, resource and submission flags."""
    parser.add_argument("--template", default="", help="a compiled pipeline YAML (default: compile from the flags)")
    add_options(
        parser,
        ("data", "step configurations", "image", "resources (compile time)", "identity and network", "submission"),
    )
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

    if args.template:
        if not Path(args.template).is_file():
            raise MissingInputError(f"--template {args.template}: no such file (write one with `ranker compile`)")
        from pipelines.remote import require_pullable_images

        require_pullable_images(args.template)
        return Path(args.template)
    settings.check_remote()
    return compile_named(getattr(args, "pipeline", "training"), settings, Path(folder) / "pipeline.yaml")


def add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    """``--pipeline`` (training or batch) and ``--parameters`` (the batch pipeline's run parameters)."""
    from pipelines.compile_cli import add_pipeline_argument

    add_pipeline_argument(parser)
    parser.add_argument(
        "--parameters", default="", help="with --pipeline batch: its parameters as a JSON object (or @file)"
    )


def run_parameters(args: argparse.Namespace, settings: PipelineSettings) -> dict[str, Any] | None:
    """The batch pipeline's run parameters from ``--parameters``, and the registry flags given where it names none
    (``None``: the training pipeline's, from the settings)."""
    if args.pipeline != "batch":
        if args.parameters:
            raise InvalidValueError("--parameters is for --pipeline batch: the training pipeline's are its flags")
        return None
    from pipelines.batch_pipeline import batch_parameters

    return batch_parameters(args.parameters, settings.given_arguments())


def pipeline_name(args: argparse.Namespace) -> str:
    """The submitted pipeline's name, the prefix of its job ids."""
    from pipelines.config import BATCH_PIPELINE_NAME, PIPELINE_NAME

    return BATCH_PIPELINE_NAME if args.pipeline == "batch" else PIPELINE_NAME


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_pipeline_arguments(parser)
    add_template_arguments(parser)


def main(args: argparse.Namespace) -> int:
    from pipelines.remote import submit_run

    settings = PipelineSettings.from_args_or_exit(args, "submit")
    parameters = run_parameters(args, settings)
    with tempfile.TemporaryDirectory() as folder:
        template = template_path(args, settings, folder)
        name = submit_run(settings, template, parameters=parameters, pipeline_name=pipeline_name(args))
    print(f"submitted {name}")
    return 0
