"""The ``train_mmoe`` pipeline step: extracted examples in, an exported ranker out.

``config_json`` overrides TrainerConfig defaults (e.g. ``'{"architecture": "ple"}'``),
the same as ``ranker train --config``. The model artifact holds the SavedModel
with ``feature_spec.json``, ``trainer_config.json``, ``gate_usage.json`` and
``metrics.json``; ``metrics`` logs the eval metrics, ``gate_usage`` the mean
gate weights per module, task and expert, and ``tensorboard`` holds the
TensorBoard logs (``tensorboard --logdir <artifact>``).
"""

from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from components.base import ranker_component


@ranker_component
def train_mmoe(
    examples: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    gate_usage: Output[Metrics],
    tensorboard: Output[Artifact],
    config_json: str = "{}",
) -> None:
    """Train and export the canonical ranker (see trainer.train.train_and_export)."""
    from trainer.train import train_from_component

    train_from_component(examples.path, model, metrics, gate_usage, config_json, tensorboard_dir=tensorboard.path)
