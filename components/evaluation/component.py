"""The ``evaluate`` pipeline step: NDCG report against the GBDT baseline, and the blessing."""

# No `from __future__ import annotations`: kfp reads the real annotation objects.
from typing import NamedTuple

from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output

from components.base import ranker_component


@ranker_component
def evaluate(
    examples: Input[Dataset],
    model: Input[Model],
    baseline: Input[Model],
    report: Output[HTML],
    metrics: Output[Metrics],
    report_json: Output[Artifact],
    blessing: Output[Artifact],
    model_name: str = "mmoe",
    oracle_uri: str = "",
    champion_model_uri: str = "",
    champion_note: str = "",
    config_json: str = "{}",
) -> NamedTuple("Outputs", [("blessed", bool), ("primary_metric", float)]):
    """Evaluate ``model`` against ``baseline`` (and the champion, when given) on the test split.

    ``champion_note`` (from ``resolve_champion``) says why a registered champion
    was left out of the comparison; the report and the blessing record it.

    ``primary_metric`` is the candidate's primary metric (0.0 when it could not be measured).
    """
    from collections import namedtuple
    from pathlib import Path

    from components.evaluation.evaluate import EvaluationConfig, ReportPaths
    from components.evaluation.evaluate import evaluate as run_evaluation

    result = run_evaluation(
        EvaluationConfig.from_sources(config_json),
        examples.path,
        {model_name: model.path},
        baseline.path,
        ReportPaths(html=Path(report.path), metrics=Path(report_json.path), blessing=Path(blessing.path)),
        oracle_uri=oracle_uri or None,
        champion=champion_model_uri or None,
        champion_note=champion_note,
    )
    for name, value in result.headline_metrics().items():
        metrics.log_metric(name, value)
    outputs = namedtuple("Outputs", ["blessed", "primary_metric"])
    return outputs(result.blessing.blessed, float(result.blessing.candidate or 0.0))
