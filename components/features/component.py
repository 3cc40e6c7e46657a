"""The ``extract_features`` pipeline step (see :mod:`components.features.pipeline`)."""

# No `from __future__ import annotations`: kfp reads the real annotation objects.
from kfp.dsl import Dataset, Input, Metrics, Output

from components.base import ranker_component


@ranker_component
def extract_features(
    raw_data: Input[Dataset],
    dataset_spec: str,
    examples: Output[Dataset],
    dead_letters: Output[Dataset],
    metrics: Output[Metrics],
    held_out_module: str = "",
    dead_letter_threshold: float = 0.01,
    num_shards: int = 0,
    beam_options_json: str = "{}",
    data_version: str = "",
) -> None:
    """Extract examples from ``raw_data`` (a file, glob or folder of files, or ``bq://project.dataset.table``).

    ``examples`` gets ``feature_spec.json`` and one folder of TFRecord shards
    per split; ``dead_letters`` the malformed rows as JSON lines.
    ``beam_options_json`` holds ``BeamOptions`` fields, e.g. the Dataflow runner.
    ``data_version`` is read by nobody: it is in the step's cache key, so new data under the same URI
    (``user_source`` computes it) is extracted again.
    """
    from components.features.options import artifact_beam_uri
    from components.features.pipeline import extract_features_step

    summary = extract_features_step(
        raw_data_uri=raw_data.uri,
        raw_data_path=raw_data.path,
        dataset_spec=dataset_spec,
        examples_uri=artifact_beam_uri(examples.uri, examples.path),
        dead_letters_uri=artifact_beam_uri(dead_letters.uri, dead_letters.path),
        held_out_module=held_out_module,
        dead_letter_threshold=dead_letter_threshold,
        num_shards=num_shards,
        beam_options_json=beam_options_json,
    )
    for name, value in summary.metrics().items():
        metrics.log_metric(name, value)
    examples.metadata.update({"rows": summary.rows_written, "splits": summary.split_rows, "modules": summary.modules})
    dead_letters.metadata["rows"] = summary.dead_letters
