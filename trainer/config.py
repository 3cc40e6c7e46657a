"""`TrainerConfig` (defined, TensorFlow-free, in :mod:`ranker_core.step_configs`) and its file beside a model.

Defaults are documented beside each field and in ``docs/model.md``. A config
round-trips through JSON (it is written next to every exported model as
``trainer_config.json``) and is read like every setting: flags > environment
``RANKER_TRAIN_<FIELD>`` > file > defaults::

    config = TrainerConfig.from_sources('{"architecture": "ple", "epochs": 3}')
    config.architecture          # "ple"
    TrainerConfig.from_json(config.to_json()) == config   # True
    save_config(config, "model/trainer_config.json"); load_config("model") == config
"""

from __future__ import annotations

from pathlib import Path

from ranker_core.step_configs import ARCHITECTURES, EXPERT_TYPES, NUMERIC_ENCODINGS, Architecture, TrainerConfig

__all__ = [
    "ARCHITECTURES",
    "CONFIG_FILE",
    "EXPERT_TYPES",
    "NUMERIC_ENCODINGS",
    "Architecture",
    "TrainerConfig",
    "load_config",
    "save_config",
]

CONFIG_FILE = "trainer_config.json"


def save_config(config: TrainerConfig, path: str | Path) -> None:
    """Write ``config`` as JSON to ``path`` (local or gs://)."""
    import tensorflow as tf  # gs:// paths

    with tf.io.gfile.GFile(str(path), "w") as file:
        file.write(config.to_json())


def load_config(path: str | Path) -> TrainerConfig:
    """The config saved at ``path``, or in the model folder ``path`` (no environment: the model's own)."""
    import tensorflow as tf

    path = str(path)
    if tf.io.gfile.isdir(path):
        path = f"{path.rstrip('/')}/{CONFIG_FILE}"
    with tf.io.gfile.GFile(path) as file:
        return TrainerConfig.from_json(file.read())
