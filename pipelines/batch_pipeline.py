"""The batch ranking DAG: the champion (by registry alias) ranks a candidates table, top-k per user.

::

    resolve_batch_model (model_uri, else the registry's champion) -> batch_rank (Beam RunInference) -> ranked

The same function runs under ``kfp.local`` and compiles for Vertex AI
Pipelines or Kubeflow Pipelines (``ranker compile --pipeline batch``), and is
scheduled like the training pipeline (``ranker schedule create --pipeline batch
--parameters '{"candidates_uri": ...}'``). Runtime choices are pipeline
parameters; the image, resources and registry defaults come from
:class:`~pipelines.config.PipelineSettings`::

    pipeline = build_batch_pipeline(PipelineSettings.from_env())
    kfp.compiler.Compiler().compile(pipeline, "batch.yaml")
"""

# No `from __future__ import annotations`: kfp reads the pipeline function's real annotations.
import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kfp import dsl
from kfp.dsl import Dataset

from batch.component import batch_rank, resolve_batch_model
from batch.config import MODULE_ROLE
from pipelines.config import BATCH_PIPELINE_NAME, PipelineSettings, beam_options
from pipelines.pipeline import _sized
from ranker_core.cli_support import InvalidValueError
from ranker_core.settings import read_json_object


def build_batch_pipeline(settings: PipelineSettings | None = None) -> Any:
    """The batch ranking ``@dsl.pipeline``; the registry parameters default to ``settings.registry``."""
    settings = settings or PipelineSettings()
    registry = settings.registry

    @dsl.pipeline(name=BATCH_PIPELINE_NAME, description="Rank a candidates table with the champion, top-k per user.")
    def batch_ranking_pipeline(
        candidates_uri: str,
        split: str = "",
        campaign: str = "",
        top_k: int = 10,
        campaign_column: str = MODULE_ROLE,
        model_uri: str = "",
        output_table: str = "",
        beam_options_json: str = "{}",
        grouped_by_user: bool = False,
        feature_store: str = "",
        registry: str = registry.backend,
        model_name: str = registry.model_name,
        tracking_uri: str = registry.tracking_uri,
        project: str = registry.project,
        location: str = registry.location,
    ) -> Dataset:
        model = _sized(
            resolve_batch_model(
                model_uri=model_uri, registry=registry, model_name=model_name, tracking_uri=tracking_uri,
                project=project, location=location,
            ),
            settings,
        )  # fmt: skip
        model.set_caching_options(False)  # the champion alias moves between runs
        ranked = _sized(
            batch_rank(
                model_uri=model.output, candidates_uri=candidates_uri, split=split, campaign=campaign, top_k=top_k,
                campaign_column=campaign_column, output_table=output_table, beam_options_json=beam_options_json,
                grouped_by_user=grouped_by_user, feature_store=feature_store,
            ),
            settings,
        )  # fmt: skip
        ranked.set_caching_options(False)  # a candidates table is refilled in place between campaigns
        return ranked.outputs["ranked"]

    return batch_ranking_pipeline


def batch_parameters(text: str, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The runtime parameters of a batch run from a JSON object (inline, ``@path`` or a path), unknown keys refused,
    then the batch pipeline's parameters among ``given`` (the registry's flags and variables) that it does not set.

    Each value is checked now, as the run's steps would check it an hour later: its JSON type against the
    pipeline parameter's (``"top_k": "10"`` is refused), ``top_k`` positive, ``beam_options_json`` Beam's options.
    """
    parameters = read_json_object(text, "--parameters")
    known = inspect.signature(build_batch_pipeline().pipeline_func).parameters
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise InvalidValueError(f"--parameters: unknown batch pipeline parameter(s) {unknown}; known: {sorted(known)}")
    if not parameters.get("candidates_uri"):
        raise InvalidValueError('--parameters must name the candidates: {"candidates_uri": "bq://p.d.t", ...}')
    for name, value in parameters.items():
        expected = known[name].annotation
        if type(value) is not expected:  # JSON true is no int, 10 is no str: the pipeline would refuse both
            raise InvalidValueError(f"--parameters: {name} must be a JSON {_JSON_TYPES[expected]}, not {value!r}")
    if parameters.get("top_k", 1) < 1:
        raise InvalidValueError(f"--parameters: top_k must be positive, not {parameters['top_k']}")
    if "beam_options_json" in parameters:
        beam_options(parameters["beam_options_json"], "--parameters: beam_options_json")
    return {name: value for name, value in (given or {}).items() if name in known} | parameters


_JSON_TYPES = {str: "string", int: "integer", bool: "boolean (true or false)"}


def compile_batch_pipeline(settings: PipelineSettings, out: str | Path) -> Path:
    """Compile the batch ranking DAG for these settings into ``out``."""
    from kfp import compiler

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_batch_pipeline(settings), str(out))
    return out
