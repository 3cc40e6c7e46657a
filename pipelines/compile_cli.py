"""Write the pipeline as YAML for Vertex AI Pipelines or a Kubeflow Pipelines server.

Runtime choices (data, configurations, registry) are pipeline parameters whose
defaults come from the flags and environment; resources, accelerators and the
training backend are fixed at compile time, and so is the image every step runs
in (``--image``): for Vertex AI or a KFP host it must name its registry, or
compilation is refused. The YAML is for Vertex AI or KFP with ``--registry vertex``,
or when the settings file or the environment sets a gs:// pipeline root or a KFP
host (``RANKER_PIPELINE_ROOT``, ``RANKER_KFP_HOST``). Examples::

    ranker compile --out pipeline.yaml
    ranker compile --pipeline batch --out batch.yaml       # the batch ranking DAG
    ranker compile --out pipeline.yaml --registry vertex --project my-project \\
        --image europe-west4-docker.pkg.dev/my-project/ranker/mmoe-ranker:1 \\
        --training-backend custom-job --train-machine-type n1-standard-16 \\
        --train-accelerator NVIDIA_TESLA_T4
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.config import GROUPS, OPTIONS, PipelineSettings, add_options
from ranker_core.cli_support import InvalidValueError

HELP = "write the pipeline YAML for Vertex AI Pipelines or Kubeflow Pipelines"


PIPELINES = ("training", "batch")


def add_pipeline_argument(parser: argparse.ArgumentParser) -> None:
    """``--pipeline``: the training DAG (default) or the batch ranking DAG (:mod:`pipelines.batch_pipeline`)."""
    parser.add_argument(
        "--pipeline", choices=PIPELINES, default="training", help="training (default) or batch (batch ranking)"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="pipeline.yaml", help="where to write the YAML [default: pipeline.yaml]")
    add_pipeline_argument(parser)
    add_options(parser, ("data", "step configurations", "image", "resources (compile time)", "identity and network"))


def compile_pipeline(settings: PipelineSettings, out: str | Path) -> Path:
    """Compile the DAG for these settings into ``out``.

    Example::

        compile_pipeline(PipelineSettings.from_env(), "pipeline.yaml")
    """
    from kfp import compiler

    from pipelines.pipeline import build_tracked_pipeline

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_tracked_pipeline(settings), str(out))
    return out


def compile_named(pipeline: str, settings: PipelineSettings, out: str | Path) -> Path:
    """Compile the ``training`` or the ``batch`` pipeline into ``out``."""
    if pipeline == "batch":
        from pipelines.batch_pipeline import compile_batch_pipeline

        return compile_batch_pipeline(settings, out)
    return compile_pipeline(settings, out)


def main(args: argparse.Namespace) -> int:
    settings = PipelineSettings.from_args_or_exit(args, "compile")  # a remote target is checked there
    # compiled into a Vertex AI custom training job only; a run's own are given to `ranker submit`
    custom_job = GROUPS["identity and network"]
    unused = [OPTIONS[field].flag for field in custom_job if getattr(args, field, None) is not None]
    if unused and settings.training_backend != "custom-job":
        raise InvalidValueError(
            f"{', '.join(unused)}: compiled into a Vertex AI custom training job only (--training-backend "
            "custom-job); a run's service account, network and key are given to `ranker submit`"
        )
    print(f"wrote {compile_named(args.pipeline, settings, args.out)}")
    return 0
