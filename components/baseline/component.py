"""The ``train_baseline`` pipeline step: per-module and global LightGBM rankers."""

# No `from __future__ import annotations`: kfp reads the real annotation objects.
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.base import ranker_component


@ranker_component
def train_baseline(
    examples: Input[Dataset],
    baseline: Output[Model],
    metrics: Output[Metrics],
    config_json: str = "{}",
) -> None:
    """Train the GBDT baseline on ``examples`` into ``baseline`` (see ``components.baseline.gbdt``)."""
    from components.baseline.gbdt import BaselineConfig, train_baseline, validation_metrics

    manifest = train_baseline(BaselineConfig.from_sources(config_json), examples.path, baseline.path)
    for name, value in validation_metrics(manifest).items():
        metrics.log_metric(name, value)
