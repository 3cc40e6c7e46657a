"""The ``materialize_features`` pipeline step (see :mod:`components.features.feature_store`)."""

# No `from __future__ import annotations`: kfp reads the real annotation objects.
from kfp.dsl import Artifact, Dataset, Input, Output

from components.base import ranker_component


@ranker_component
def materialize_features(
    examples: Input[Dataset], model_version: str, feature_repo: Output[Artifact], feature_store: str = ""
) -> None:
    """Push the examples' entity snapshot to the online store, tagged with the registered ``model_version``.

    ``feature_store`` is the Feast repo (its ``feature_store.yaml`` picks the stores); empty: the
    ``feature_repo`` artifact's folder with the embedded default (file offline store, SQLite online store).
    Examples without an entity snapshot (a dataset spec without ``history``) have nothing to store: the step
    writes no repo and says why in the artifact's ``skipped``.
    """
    from components.features.feature_store import MaterializeConfig, NoSnapshotError, materialize

    repo = feature_store or feature_repo.path
    try:
        summary = materialize(MaterializeConfig(examples=examples.path, repo=repo, model_version=model_version))
    except NoSnapshotError as error:
        feature_repo.metadata.update({"repo": "", "views": [], "model_version": model_version, "skipped": str(error)})
        return
    feature_repo.metadata.update({"repo": repo, "views": summary["views"], "model_version": model_version})
