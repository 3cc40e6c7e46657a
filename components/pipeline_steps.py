"""Small glue steps the DAG needs between the area components.

* :func:`simulated_source` / :func:`user_source`: the two branches of the data
  source (simulated marketplace or the user's URI) end in the same two
  strings, the raw data URI and the oracle URI, which the pipeline merges with
  ``dsl.OneOf`` (``kfp.local`` merges parameters, not artifacts, so the raw
  data is re-imported from the merged URI with ``dsl.importer``).
* :func:`blessing_verdict`: the evaluation's verdict as a single output, the
  gate of registration (``blessed`` must be a JSON boolean).
* :func:`resolve_champion`: the current champion's model location, which the
  evaluation compares the new model against, and a note when the champion does
  not load (never cached: it reads the registry).
* :func:`deploy_model`: deploy the registered version (Vertex AI endpoint) or
  print the command that serves it (local MLflow registry).
"""

from typing import NamedTuple

from kfp.dsl import Artifact, Dataset, Input, Model

from components.base import ranker_component


@ranker_component
def simulated_source(impressions: Input[Dataset], oracle: Input[Dataset]) -> NamedTuple(
    "DataSource", [("data_uri", str), ("oracle_uri", str), ("data_version", str)]
):
    """The simulator's impressions and ground truth as URIs (a simulation's artifacts are its version)."""
    return (impressions.uri, oracle.uri, "")


@ranker_component
def user_source(data_uri: str, oracle_uri: str = "") -> NamedTuple(
    "DataSource", [("data_uri", str), ("oracle_uri", str), ("data_version", str)]
):
    """The user's data URI (files or ``bq://``), the oracle of that data if the user has one (else ``""``), and
    their version (:func:`components.data.versions.data_version`): never cached, so new data under the same URI
    reruns the extraction instead of reusing its cached examples."""
    from components.data.versions import data_version

    data_uri, oracle_uri = data_uri.strip(), oracle_uri.strip()
    if not data_uri:
        raise ValueError("data_uri is empty: pass the impression logs' URI, or leave it empty to simulate")
    versions = (data_version(data_uri), data_version(oracle_uri))
    return (data_uri, oracle_uri, " ".join(filter(None, versions)))


@ranker_component
def blessing_verdict(blessing: Input[Artifact]) -> bool:
    """The blessing's verdict as the step's single output, for ``dsl.If``.

    Anything but a JSON boolean ``blessed`` fails the step. ``kfp.local``
    resolves a condition on a task's single ``Output`` but not on one field of
    a NamedTuple output, so the DAG gates registration on this.
    """
    from components.registry.core import is_blessed

    return is_blessed(blessing.path)


@ranker_component
def resolve_champion(
    model: Input[Model],
    registry: str = "mlflow",
    model_name: str = "mmoe-ranker",
    tracking_uri: str = "",
    project: str = "",
    location: str = "us-central1",
    on_broken_champion: str = "",
) -> NamedTuple("Champion", [("champion_model_uri", str), ("champion_note", str)]):
    """The current champion's model location, and a note that is empty unless the champion is broken.

    ``champion_model_uri`` is ``""`` when there is no champion, when it is this
    very ``model`` (a rerun that trains the same model must not judge it against
    itself) or when it does not load or fit the examples (other tasks, or features
    not among theirs). Such a champion fails the
    step when ``on_broken_champion`` is ``stop``; with ``continue`` (the default,
    ``""`` reads ``RANKER_ON_BROKEN_CHAMPION``) ``champion_note`` says which
    version failed and how, for the evaluation to record.
    """
    from components.registry.core import RegistryConfig, champion_to_beat

    config = RegistryConfig.for_step(
        registry, model_name, tracking_uri, project, location, on_broken_champion=on_broken_champion
    )
    champion = champion_to_beat(config, model.uri)
    return (champion.model_uri, champion.note)


@ranker_component
def deploy_model(
    version: str,
    registry: str = "mlflow",
    model_name: str = "mmoe-ranker",
    tracking_uri: str = "",
    project: str = "",
    location: str = "us-central1",
    endpoint_name: str = "mmoe-ranker",
    machine_type: str = "n1-standard-4",
) -> str:
    """Deploy a registered version: the Vertex AI endpoint's name, or locally the command that serves it."""
    from components.registry.core import RegistryConfig
    from components.registry.deploy import deploy_version

    config = RegistryConfig.for_step(
        registry, model_name, tracking_uri, project, location, endpoint_name=endpoint_name, machine_type=machine_type
    )
    return deploy_version(config, version)
