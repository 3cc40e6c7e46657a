"""Registering an evaluated model: what is registered, the aliases, idempotency.

The registry backends (MLflow locally, Vertex AI Model Registry on GCP) only
know how to store a version and move an alias; the rules live here, once:

* a version is identified by the digest of the model's files, so retrying the
  register step of a run (or registering the same cached model again) returns
  the existing version instead of creating a second one;
* a blessed version takes the ``champion`` alias and the version it replaces
  keeps its place in the registry under ``previous-champion``;
* a version sent a share of an endpoint's traffic holds ``canary`` until it is
  promoted or rolled back (see :mod:`components.registry.rollout`); while it
  does, a blessed model is not registered as a new champion (promote or roll back
  first), so that promote and rollback act on the versions that hold the traffic;
* an unblessed version is refused, unless the configuration asks to keep
  challengers, in which case it gets the ``challenger`` alias and no promotion
  (promoted later, by ``ranker promote --force`` of its canary, it loses it);
* a blessing counts only for the model it judged: ``blessed`` must be a JSON
  boolean (``true`` to promote) and ``judged_model.model_digest`` the digest of
  the model being registered, and the model must load and score (see
  :mod:`components.registry.loadcheck`), else nothing is written;
* the champion handed to the evaluation must load too, and have the examples'
  tasks and only features among theirs: a broken or misfitting one is left out
  of the comparison with a note, or stops the run (``on_broken_champion``).

Usage::

    config = RegistryConfig.from_env(work_dir="work_dir")
    candidate = Candidate.from_artifacts("work/model", "work/report/metrics.json",
                                         "work/report/blessing.json", run_id="run-42")
    version = register_model(candidate, config)
    version.version, version.aliases     # "3", ("champion",)
    champion_model_uri(config)           # the champion's model folder, "" when none
    champion_to_beat(config, "work/model")   # Champion(model_uri=..., note="")
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Protocol, Self

from pydantic import model_validator

from components.registry.loadcheck import ModelNotLoadableError, check_loadable
from ranker_core.cli_support import InvalidValueError, UserError
from ranker_core.schema import FEATURE_SPEC_FILE
from ranker_core.serving import HEALTH_ROUTE, HTTP_PORT, MODEL_NAME, PREDICT_ROUTE, local_registry_uri
from ranker_core.settings import Settings, env_field
from trainer.digest import is_folder, json_sha256, model_digest, path_exists, read_json

logger = logging.getLogger(__name__)

CHAMPION = "champion"
PREVIOUS_CHAMPION = "previous-champion"
CHALLENGER = "challenger"
CANARY = "canary"
ROLLED_BACK = "rolled-back"  # the version the last rollback took traffic from: a retried run does not re-promote it
STABLE = "stable"  # the version that last took all the traffic (plain deploy, promote, rollback)
Backend = Literal["mlflow", "vertex"]
# The blessing's parts that are tables or identities, not headline numbers.
_NOT_HEADLINE = ("modules", "judged_model", "reasons", "primary")
BrokenChampionPolicy = Literal["continue", "stop"]
DeployTarget = Literal["", "vertex", "kserve", "local"]


class RegistrationRefusedError(RuntimeError):
    """Raised when a model must not be registered; nothing was written to the registry."""


class ModelNotBlessedError(RegistrationRefusedError):
    """Raised when an unblessed model would be registered and challengers are not kept."""


class BrokenChampionError(RuntimeError):
    """Raised when the champion does not load or fit the examples and ``on_broken_champion`` is ``stop``."""


class RegistryConfig(Settings):
    """Where and how models are registered; read like every setting (flags > environment > defaults).

    ==========================  ==============================  ======================================
    field                       environment variable            default
    ==========================  ==============================  ======================================
    backend                     ``RANKER_REGISTRY``             ``mlflow``
    model_name                  ``RANKER_MODEL_NAME``           ``mmoe-ranker``
    work_dir                    ``RANKER_WORK_DIR``             ``work_dir``
    tracking_uri                ``MLFLOW_TRACKING_URI``         ``sqlite:///<work_dir>/mlflow.db``
    artifact_root               ``RANKER_MLFLOW_ARTIFACTS``     ``mlartifacts`` beside the SQLite store
    project                     ``GOOGLE_CLOUD_PROJECT``        (required for ``vertex``)
    location                    ``GOOGLE_CLOUD_REGION``         ``us-central1``
    serving_image               ``RANKER_SERVING_IMAGE``        ``RANKER_IMAGE`` or ``mmoe-ranker:latest``
    keep_challengers            ``RANKER_KEEP_CHALLENGERS``     ``false`` (a boolean: 1/0, true/false, yes/no, on/off)
    on_broken_champion          ``RANKER_ON_BROKEN_CHAMPION``   ``continue`` (or ``stop``)
    endpoint_name               ``RANKER_ENDPOINT``             ``mmoe-ranker`` (Vertex AI endpoint, KServe name)
    machine_type                ``RANKER_SERVING_MACHINE``      ``n1-standard-4`` (deploy step, vertex)
    serving_service_account     ``RANKER_SERVING_SERVICE_ACCOUNT``  none: Vertex AI's default; the server's identity
    deploy_target               ``RANKER_DEPLOY_TARGET``        ``vertex`` with that registry, else ``local``
    canary_percent              ``RANKER_CANARY``               none (all traffic); 1 to 99, 100 is all traffic
    kserve_namespace            ``RANKER_KSERVE_NAMESPACE``     none (the current namespace)
    ==========================  ==============================  ======================================

    Example::

        config = RegistryConfig.from_env(backend="vertex", project="my-project")
    """

    backend: Backend = env_field("mlflow", "RANKER_REGISTRY")
    model_name: str = env_field(MODEL_NAME, "RANKER_MODEL_NAME")
    work_dir: str = env_field("work_dir", "RANKER_WORK_DIR")
    tracking_uri: str = env_field("", "MLFLOW_TRACKING_URI")
    artifact_root: str = env_field("", "RANKER_MLFLOW_ARTIFACTS")
    project: str = env_field("", "GOOGLE_CLOUD_PROJECT")
    location: str = env_field("us-central1", "GOOGLE_CLOUD_REGION")
    serving_image: str = env_field("mmoe-ranker:latest", "RANKER_SERVING_IMAGE", "RANKER_IMAGE")
    predict_route: str = env_field(PREDICT_ROUTE)
    health_route: str = env_field(HEALTH_ROUTE)
    serving_port: int = env_field(HTTP_PORT)
    keep_challengers: bool = env_field(False, "RANKER_KEEP_CHALLENGERS")
    on_broken_champion: BrokenChampionPolicy = env_field("continue", "RANKER_ON_BROKEN_CHAMPION")
    endpoint_name: str = env_field(MODEL_NAME, "RANKER_ENDPOINT")
    machine_type: str = env_field("n1-standard-4", "RANKER_SERVING_MACHINE")
    serving_service_account: str = env_field("", "RANKER_SERVING_SERVICE_ACCOUNT")
    min_replicas: int = env_field(1)
    max_replicas: int = env_field(3)
    deploy_target: DeployTarget = env_field("", "RANKER_DEPLOY_TARGET")
    canary_percent: int | None = env_field(None, "RANKER_CANARY")
    kserve_namespace: str = env_field("", "RANKER_KSERVE_NAMESPACE")

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.backend == "vertex" and not self.project:
            raise ValueError("the vertex registry needs a project: set --project or GOOGLE_CLOUD_PROJECT")
        if self.canary_percent is not None and (problem := canary_share_problem(self.canary_percent)):
            raise ValueError(problem)
        return self

    @property
    def resolved_deploy_target(self) -> str:
        """Where versions are served: the configured target, else Vertex AI with that registry, else locally."""
        return self.deploy_target or ("vertex" if self.backend == "vertex" else "local")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> RegistryConfig:
        """The configuration from environment variables; non-empty ``overrides`` (flags) win."""
        return cls.load({key: value for key, value in overrides.items() if value != ""}, environ=environ)

    @classmethod
    def for_step(
        cls, registry: str, model_name: str, tracking_uri: str, project: str, location: str, **more: Any
    ) -> RegistryConfig:
        """The configuration of a pipeline step, from the flat parameters every registry step takes (kfp
        components cannot take an object), then ``more`` fields; the environment fills what is empty."""
        where = {"tracking_uri": tracking_uri, "project": project, "location": location}
        return cls.from_env(backend=registry, model_name=model_name, **where, **more)

    @property
    def resolved_tracking_uri(self) -> str:
        """The MLflow store: the configured URI, or SQLite in the working folder."""
        if self.tracking_uri:
            return self.tracking_uri
        return local_registry_uri(self.work_dir)

    @property
    def resolved_artifact_root(self) -> str:
        """Where MLflow copies registered models (a ``file://`` URI for local folders)."""
        root = self.artifact_root
        if not root and self.resolved_tracking_uri.startswith("sqlite:///"):
            # beside the SQLite store, so that one folder holds the whole local registry
            root = str(Path(self.resolved_tracking_uri.removeprefix("sqlite:///")).parent / "mlartifacts")
        root = root or str(Path(self.work_dir) / "mlartifacts")
        return root if "://" in root else Path(root).resolve().as_uri()


@dataclasses.dataclass
class Candidate:
    """A model to register, with its evaluation and provenance.

    Example::

        candidate = Candidate.from_artifacts("model/", "report/metrics.json", "report/blessing.json",
                                             run_id="ranker-20240101", data_uri="gs://logs/*.parquet")
    """

    model_uri: str
    blessed: bool
    reasons: list[str]
    metrics: dict[str, float]
    headline: dict[str, float]
    run_id: str
    digest: str
    data_uri: str = ""
    feature_spec_hash: str = ""
    code_version: str = ""
    evaluation: dict[str, Any] = dataclasses.field(default_factory=dict)
    # the pipeline run's MLflow run (start-tracking step): the model is logged there; "" opens a run of its own
    tracking_run_id: str = ""

    @classmethod
    def from_artifacts(
        cls,
        model_uri: str,
        report_json: str,
        blessing_json: str,
        run_id: str = "",
        data_uri: str = "",
        tracking_run_id: str = "",
    ) -> Candidate:
        """Read the evaluation's metrics and blessing and fingerprint the model folder.

        Raises :class:`RegistrationRefusedError` when ``blessed`` is not a JSON
        boolean or the blessing judged other model files than ``model_uri``'s.
        """
        report = read_json(report_json)
        blessing = read_json(blessing_json)
        blessed = blessing_verdict(blessing, blessing_json)
        digest = model_digest(model_uri)
        check_judged_model(blessing, blessing_json, model_uri, digest)
        check_same_evaluation(report, report_json, blessing, blessing_json)
        spec_path = f"{model_uri.rstrip('/')}/{FEATURE_SPEC_FILE}"
        spec = read_json(spec_path) if path_exists(spec_path) else {}
        return cls(
            model_uri=model_uri,
            blessed=blessed,
            reasons=[str(reason) for reason in blessing.get("reasons", [])],
            metrics=flatten_metrics(report),
            headline=headline_metrics(blessing),
            run_id=run_id or digest[:16],
            digest=digest,
            data_uri=data_uri or str(spec.get("source", {}).get("uri", "")),
            feature_spec_hash=json_sha256(spec) if spec else "",
            code_version=code_version(),
            evaluation={"report": report, "blessing": blessing},
            tracking_run_id=tracking_run_id,
        )

    @property
    def provenance(self) -> dict[str, str]:
        """The string tags every backend attaches to the version."""
        return {
            "pipeline_run_id": self.run_id,
            "model_digest": self.digest,
            "data_uri": self.data_uri,
            "feature_spec_hash": self.feature_spec_hash,
            "code_version": self.code_version,
            "blessed": str(self.blessed).lower(),
        }


@dataclasses.dataclass(frozen=True)
class RegisteredVersion:
    """A version in the registry, and whether this call created it."""

    model_name: str
    version: str
    model_uri: str
    aliases: tuple[str, ...]
    created: bool

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def blessed_tag(value: str | None) -> bool | None:
    """A version's ``blessed`` tag or label (:attr:`Candidate.provenance` writes ``"true"`` / ``"false"``) as a boolean;
    None when the version has none."""
    return None if value is None else value == "true"


def is_canary_share(percent: int | None) -> bool:
    """Whether ``percent`` makes a canary: a share below 100. None and 100 both mean all traffic, no canary."""
    return percent is not None and percent < 100


def canary_share_problem(percent: int | None) -> str:
    """Why ``percent`` is not a share of traffic to deploy with (empty when it is one): 1 to 99 makes a canary,
    100 a plain deployment; 0 would be a canary that serves nothing."""
    where = f"canary {percent} (--canary, RANKER_CANARY)"
    if percent == 0:
        return (
            f"{where} would be a canary that gets no traffic: give it 1 to 99 percent, or leave out --canary to "
            "send it all traffic (to take the traffic from a canary: `ranker rollback`)"
        )
    if percent is not None and 1 <= percent <= 100:
        return ""
    return f"{where}: the share of traffic is a percent, 1 to 99 for a canary (100: a plain deployment)"


class RegistryBackend(Protocol):
    """What a registry must offer; :func:`register_model` applies the rules on top."""

    def model_exists(self) -> bool:
        """Whether the registry holds the configured model (any version of it)."""

    def find_version(self, digest: str) -> str | None:
        """The version already registered for a model digest, if any."""

    def create_version(self, candidate: Candidate) -> str:
        """Store the model, its metrics and provenance as a new version; return its id."""

    def alias_version(self, alias: str) -> str | None:
        """The version holding an alias, if any."""

    def set_alias(self, alias: str, version: str) -> None:
        """Move an alias to a version (taking it from any other version)."""

    def remove_alias(self, alias: str) -> None:
        """Take an alias from the version holding it, if any."""

    def version_model_uri(self, version: str) -> str:
        """Where the version's model files are (a local path or a gs:// URI)."""

    def version_aliases(self, version: str) -> tuple[str, ...]:
        """The aliases a version holds."""

    def version_blessed(self, version: str) -> bool | None:
        """Whether the evaluation blessed the version (its ``blessed`` tag or label); None when it has none."""

    def record_found_version(self, candidate: Candidate, version: str) -> None:
        """Record on the candidate's tracking run, as :meth:`create_version` does, that its model is ``version``,
        found already registered (a retried or repeated run)."""


def register_model(
    candidate: Candidate, config: RegistryConfig, backend: RegistryBackend | None = None
) -> RegisteredVersion:
    """Register a candidate once and promote it to champion when it is blessed.

    A model already registered as the version the last rollback took traffic from (a retried or
    repeated run) is refused: :class:`RegistrationRefusedError`, and the aliases stay as the operator left them.
    """
    refuse_unblessed(candidate, config)
    backend = backend or open_backend(config)
    version = backend.find_version(candidate.digest)
    if candidate.blessed:
        refuse_champion_during_canary(backend, config, version)
    created = version is None
    if version is None:
        version = backend.create_version(candidate)
        logger.info("registered %s version %s (run %s)", config.model_name, version, candidate.run_id)
    elif candidate.blessed and backend.alias_version(ROLLED_BACK) == version:
        raise RegistrationRefusedError(
            f"this model is already {config.model_name} version {version}, and the last rollback took the "
            f"traffic away from it (alias {ROLLED_BACK}): registering it again does not make it the champion "
            f"again; to serve it again: `ranker deploy --version {version} --canary PERCENT`, then `ranker promote`"
        )
    else:
        logger.info(
            "%s version %s already holds model %s: not registering it again",
            config.model_name,
            version,
            candidate.digest[:12],
        )
        backend.record_found_version(candidate, version)
    if candidate.blessed:
        promote(backend, version)
    elif created:
        backend.set_alias(CHALLENGER, version)
    return RegisteredVersion(
        model_name=config.model_name,
        version=version,
        model_uri=backend.version_model_uri(version),
        aliases=backend.version_aliases(version),
        created=created,
    )


def register_from_artifacts(
    model_uri: str,
    report_json: str,
    blessing_json: str,
    config: RegistryConfig,
    run_id: str = "",
    data_uri: str = "",
    tracking_run_id: str = "",
) -> RegisteredVersion:
    """What the ``register`` step does: read the evaluation's outputs and register the model.

    ``report_json`` and ``blessing_json`` may be the JSON files or the folders
    holding ``metrics.json`` and ``blessing.json``. The blessing must be about
    this very model (``judged_model.model_digest``) and the model must load and
    score, else :class:`RegistrationRefusedError` and nothing is written. Example::

        register_from_artifacts("model/", "report/", "report/", RegistryConfig(work_dir="work_dir"))
    """
    candidate = Candidate.from_artifacts(
        model_uri,
        json_file(report_json, "metrics.json"),
        json_file(blessing_json, "blessing.json"),
        run_id=run_id,
        data_uri=data_uri,
        tracking_run_id=tracking_run_id,
    )
    refuse_unblessed(candidate, config)
    try:
        check_loadable(model_uri)
    except ModelNotLoadableError as error:
        raise RegistrationRefusedError(f"not registering it: {error}") from error
    return register_model(candidate, config)


def refuse_unblessed(candidate: Candidate, config: RegistryConfig) -> None:
    """Raise :class:`ModelNotBlessedError` for an unblessed candidate, unless challengers are kept."""
    if not candidate.blessed and not config.keep_challengers:
        raise ModelNotBlessedError(
            "the model was not blessed, so it is not registered: " + ("; ".join(candidate.reasons) or "no reason given")
        )


def refuse_champion_during_canary(backend: RegistryBackend, config: RegistryConfig, version: str | None) -> None:
    """Raise :class:`RegistrationRefusedError` when a blessed model would take ``champion`` from under a live
    canary: ``rollback`` would then serve a version that never served, and ``promote`` would make it the
    ``previous-champion``. ``version`` (the model's, when already registered) that is the champion moves nothing."""
    canary = backend.alias_version(CANARY)
    if canary is None or (version is not None and backend.alias_version(CHAMPION) == version):
        return
    raise RegistrationRefusedError(
        f"{config.model_name} version {canary} is live as the canary, so a new champion is not registered now "
        "(nothing was written): finish the canary with `ranker promote` or `ranker rollback`, then register "
        "this model again"
    )


def require_model(backend: RegistryBackend, config: RegistryConfig) -> RegistryBackend:
    """``backend``, when it holds the configured model; else :class:`UserError` naming the model and the registry."""
    if backend.model_exists():
        return backend
    where = config.resolved_tracking_uri if config.backend == "mlflow" else f"{config.project}/{config.location}"
    raise UserError(
        f"there is no registered model named {config.model_name!r} in {where}: check --model-name (RANKER_MODEL_NAME)"
    )


def blessing_verdict(blessing: Any, path: str) -> bool:
    """The ``blessed`` field of a blessing document; anything but the JSON booleans is refused.

    Example::

        blessing_verdict({"blessed": True}, "report/blessing.json")      # True
        blessing_verdict({"blessed": "false"}, "report/blessing.json")   # RegistrationRefusedError
    """
    if not isinstance(blessing, Mapping) or "blessed" not in blessing:
        raise RegistrationRefusedError(f"{path} has no 'blessed' field: is it the evaluation's blessing.json?")
    verdict = blessing["blessed"]
    if not isinstance(verdict, bool):
        raise RegistrationRefusedError(
            f"{path}: 'blessed' is {json.dumps(verdict)} ({type(verdict).__name__}), "
            "not the JSON boolean true or false: not trusting it as a verdict"
        )
    return verdict


def check_judged_model(blessing: Mapping[str, Any], blessing_json: str, model_uri: str, digest: str) -> None:
    """Refuse a blessing that is not about the model in ``model_uri`` (whose digest is ``digest``).

    The evaluation records ``judged_model`` (:func:`trainer.digest.judged_model`)
    of the model it judged; its ``model_digest`` must be this model's.
    """
    judged = blessing.get("judged_model")
    judged_digest = judged.get("model_digest") if isinstance(judged, Mapping) else None
    if not judged_digest:
        raise RegistrationRefusedError(
            f"{blessing_json} does not say which model it judged (no judged_model.model_digest), so it cannot "
            f"bless {model_uri} (model digest {digest}): re-run evaluate on this model"
        )
    if judged_digest != digest:
        raise RegistrationRefusedError(
            f"{blessing_json} judged the model with digest {judged_digest}, but {model_uri} has digest {digest}: "
            "the blessing is about other model files; re-run evaluate on this model"
        )


def check_same_evaluation(
    report: Mapping[str, Any], report_json: str, blessing: Mapping[str, Any], blessing_json: str
) -> None:
    """Refuse a report that is not the evaluation's ``metrics.json`` of this blessing (it repeats the blessing
    under ``blessing``): the registry would record another run's numbers, or none, next to this verdict."""
    if "blessing" not in report:
        raise RegistrationRefusedError(
            f"{report_json} is not an evaluation's metrics.json (it has no 'blessing'): pass the metrics.json "
            f"written with {blessing_json}"
        )
    if json.dumps(report["blessing"], sort_keys=True) != json.dumps(blessing, sort_keys=True):  # NaN != NaN
        raise RegistrationRefusedError(
            f"{report_json} is the report of another evaluation than {blessing_json} (their blessings differ): "
            "pass the metrics.json written with it"
        )


def is_blessed(blessing_json: str) -> bool:
    """The evaluation's verdict: ``blessed`` of ``blessing.json`` (the file or its folder).

    Example::

        is_blessed("work_dir/report/blessing.json")   # True or False
    """
    path = json_file(blessing_json, "blessing.json")
    return blessing_verdict(read_json(path), path)


def json_file(path: str, default_name: str) -> str:
    """``path`` itself, or ``path/default_name`` when ``path`` is a folder."""
    return f"{path.rstrip('/')}/{default_name}" if is_folder(path) else path


def promote(backend: RegistryBackend, version: str) -> None:
    """Make ``version`` the champion; the champion it replaces becomes ``previous-champion``.

    A version promoted again after a rollback from it loses ``rolled-back``: an operator chose it. A
    ``challenger`` promoted (``ranker promote --force`` of its canary) loses ``challenger``: it is the champion now.
    """
    for alias in (ROLLED_BACK, CHALLENGER):
        if backend.alias_version(alias) == version:
            backend.remove_alias(alias)
    current = backend.alias_version(CHAMPION)
    if current == version:
        return
    if current is not None:
        backend.set_alias(PREVIOUS_CHAMPION, current)
    backend.set_alias(CHAMPION, version)
    logger.info("version %s is the champion (previous champion: %s)", version, current or "none")


def champion_model_uri(config: RegistryConfig, backend: RegistryBackend | None = None) -> str:
    """The current champion's model location, or ``""`` when nothing was promoted yet."""
    backend = backend or open_backend(config)
    version = backend.alias_version(CHAMPION)
    return backend.version_model_uri(version) if version is not None else ""


@dataclasses.dataclass(frozen=True)
class Champion:
    """The champion a candidate is compared with: ``model_uri`` is ``""`` when there is none to compare.

    ``note`` is empty, or says why the registered champion was left out (it does not load, or does not fit
    the examples: other tasks, or features that are not theirs).
    """

    model_uri: str = ""
    note: str = ""


def champion_to_beat(
    config: RegistryConfig, candidate_model_uri: str, backend: RegistryBackend | None = None
) -> Champion:
    """The champion a candidate must beat; none when nothing was promoted or it holds the same model files.

    A champion that does not fit the examples (see :func:`check_champion_schema`) or does not load
    (see :func:`check_loadable`) is left out with a note, or raises :class:`BrokenChampionError` when
    ``config.on_broken_champion`` is ``stop``. Example::

        champion = champion_to_beat(RegistryConfig(work_dir="work_dir"), "work_dir/pipeline_root/.../model")
        champion.model_uri, champion.note     # ("/.../mlartifacts/.../model", "")
    """
    backend = backend or open_backend(config)
    version = backend.alias_version(CHAMPION)
    if version is None:
        return Champion()
    champion = backend.version_model_uri(version)
    candidate_digest = model_digest(candidate_model_uri)
    try:
        if model_digest(champion) == candidate_digest:
            logger.info("the champion holds this very model: nothing to compare it against")
            return Champion()
        check_champion_schema(champion, candidate_model_uri)
        check_loadable(champion)
    except (FileNotFoundError, InvalidValueError, ModelNotLoadableError) as error:
        return broken_champion(config, version, error)
    return Champion(model_uri=champion)


def check_champion_schema(champion_model_uri: str, candidate_model_uri: str) -> None:
    """Refuse a champion the evaluation would refuse: other tasks than the examples', or features not among theirs
    (:func:`components.evaluation.evaluate.require_champion_schema`, an ``InvalidValueError``).

    The examples' feature spec is the candidate's: the evaluation requires the candidate to be trained on these
    very examples (:func:`~components.evaluation.evaluate.check_lineage`). A candidate without one is left to
    the evaluation to refuse.
    """
    from components.evaluation.evaluate import require_champion_schema

    spec_path = f"{candidate_model_uri.rstrip('/')}/{FEATURE_SPEC_FILE}"
    if path_exists(spec_path):
        require_champion_schema(champion_model_uri, read_json(spec_path))


def broken_champion(config: RegistryConfig, version: str, error: Exception) -> Champion:
    """Apply ``on_broken_champion`` to an unusable champion version: a note, or :class:`BrokenChampionError`."""
    problem = f"the {CHAMPION} alias of {config.model_name} points at version {version}, which cannot be used: {error}"
    if config.on_broken_champion == "stop":
        raise BrokenChampionError(
            f"{problem} (on_broken_champion is 'stop': move the alias to a working version, "
            "or set RANKER_ON_BROKEN_CHAMPION=continue to run without the champion comparison)"
        )
    note = f"{problem}; this run is judged without the champion comparison"
    logger.warning("%s", note)
    return Champion(note=note)


def open_backend(config: RegistryConfig) -> RegistryBackend:
    """The backend the configuration names."""
    if config.backend == "vertex":
        from components.registry.vertex import VertexRegistry

        return VertexRegistry(config)
    from components.registry.mlflow_store import MlflowRegistry

    return MlflowRegistry(config)


def flatten_metrics(data: Any, prefix: str = "") -> dict[str, float]:
    """Every number in a nested JSON document, keyed by its ``/``-joined path.

    Example::

        flatten_metrics({"ndcg": {"search": {"click": 0.61}}, "blessed": True})
        # {"ndcg/search/click": 0.61}
        flatten_metrics({"rows": [{"model": "mmoe", "task": "click", "value": 0.6}]})
        # {"rows/mmoe/click/value": 0.6}   (a row of a table is named by its text fields)
    """
    if isinstance(data, bool) or data is None:
        return {}
    if isinstance(data, int | float):
        return {prefix: float(data)} if prefix else {}
    items: list[tuple[str, Any]] = []
    if isinstance(data, Mapping):
        items = [(str(key), value) for key, value in data.items()]
    elif isinstance(data, list):
        items = [(_row_name(value, index), value) for index, value in enumerate(data)]
    flat: dict[str, float] = {}
    for key, value in items:
        flat.update(flatten_metrics(value, f"{prefix}/{key}" if prefix else key))
    return flat


def headline_metrics(blessing: Mapping[str, Any]) -> dict[str, float]:
    """The blessing's numbers without its per-module table: lift, intervals, p-values, held-out module.

    Example::

        headline_metrics({"blessed": True, "lift": 0.12, "lift_ci": [0.01, 0.2], "modules": {...}})
        # {"blessed": 1.0, "lift": 0.12, "lift_ci/0": 0.01, "lift_ci/1": 0.2}
    """
    compact = {key: value for key, value in blessing.items() if key not in _NOT_HEADLINE}
    return {"blessed": float(blessing.get("blessed") is True), **flatten_metrics(compact)}


def _row_name(row: Any, index: int) -> str:
    """A list item's key: the row's text fields joined (``mmoe/search/click``), else its index."""
    if isinstance(row, Mapping):
        names = [str(value) for value in row.values() if isinstance(value, str) and value]
        if names:
            return "/".join(names)
    return str(index)


def code_version() -> str:
    """The git commit of the installed code, else ``RANKER_CODE_VERSION`` (set when the image is built)."""
    source_dir = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=source_dir, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return commit or os.environ.get("RANKER_CODE_VERSION", "unknown")
