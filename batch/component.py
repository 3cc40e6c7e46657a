"""The batch ranking DAG's steps: resolve the model by registry alias, then rank (see :mod:`batch.pipeline`)."""

# No `from __future__ import annotations`: kfp reads the real annotation objects.
from kfp.dsl import Dataset, Metrics, Output

from components.base import ranker_component


@ranker_component
def resolve_batch_model(
    model_uri: str = "",
    registry: str = "mlflow",
    model_name: str = "mmoe-ranker",
    tracking_uri: str = "",
    project: str = "",
    location: str = "us-central1",
) -> str:
    """``model_uri`` when given, else the location of the registry's ``champion`` (never cached: aliases move)."""
    from batch.pipeline import model_location

    return model_location(model_uri, registry, model_name, tracking_uri, project, location)


@ranker_component
def batch_rank(
    model_uri: str,
    candidates_uri: str,
    ranked: Output[Dataset],
    dead_letters: Output[Dataset],
    metrics: Output[Metrics],
    split: str = "",
    campaign: str = "",
    top_k: int = 10,
    campaign_column: str = "@module",  # batch.config.MODULE_ROLE: the model's module role
    output_table: str = "",
    beam_options_json: str = "{}",
    grouped_by_user: bool = False,
    feature_store: str = "",
) -> None:
    """Rank the candidates with the model: top-k per user in ``ranked`` (``ranking/*.parquet``, or
    ``output_table`` when it is a ``bq://`` table) and the rows that could not be ranked in ``dead_letters``;
    ``feature_store``: a Feast repo the stored features are joined from (the table then carries ids)."""
    from batch.pipeline import batch_rank_step
    from components.features.options import artifact_beam_uri

    summary = batch_rank_step(
        model_uri=model_uri,
        candidates_uri=artifact_beam_uri(candidates_uri, candidates_uri),
        ranked_path=artifact_beam_uri(ranked.uri, ranked.path),
        dead_letters_path=artifact_beam_uri(dead_letters.uri, dead_letters.path),
        split=split,
        campaign=campaign,
        top_k=top_k,
        campaign_column=campaign_column,
        output_table=output_table,
        beam_options_json=beam_options_json,
        grouped_by_user=grouped_by_user,
        feature_store=feature_store,
    )
    for name in ("candidates_read", "scored", "rankings", "dead_letters"):
        metrics.log_metric(name, getattr(summary, name))
    ranked.metadata.update({"rankings": summary.rankings, "top_k": top_k, "model_uri": model_uri})
    dead_letters.metadata["rows"] = summary.dead_letters
    if summary.problem:  # read rows but ranked none, or read none: the step fails, as `ranker batch-rank` exits 1
        raise RuntimeError(summary.problem)
