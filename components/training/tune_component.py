"""The optional ``tune_mmoe`` pipeline step: a seeded search of TrainerConfig fields before ``train_mmoe``.

In the DAG only when the pipeline's ``tune_config`` asks for trials (``--tune-config
'{"trials": 8}'``). ``config_json`` is the model configuration as given (the first
trial); ``tuning_json`` the :class:`~ranker_core.step_configs.TuningConfig`. It
returns the chosen configuration as JSON, which ``train_mmoe`` trains with, so the
exported model's ``trainer_config.json`` records it (``config_json`` itself when the
search kept it, so a cached ``train_mmoe`` of a run without tuning is reused); ``trials`` holds
``tuning.json`` (every trial's values, eval score, best epoch and seconds) and
``best`` logs the winning eval score.
"""

from kfp.dsl import Artifact, Dataset, Input, Metrics, Output

from components.base import ranker_component


@ranker_component
def tune_mmoe(
    examples: Input[Dataset],
    trials: Output[Artifact],
    best: Output[Metrics],
    config_json: str = "{}",
    tuning_json: str = "{}",
) -> str:
    """Search the model configuration on the eval split (see trainer.tuning.tune); the chosen one as JSON."""
    from trainer.tuning import tune_from_component

    return tune_from_component(examples.path, config_json, tuning_json, trials, best)
